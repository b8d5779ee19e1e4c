"""Writes mini_nvidia.pkl: a tiny snapshot in the exact pickle layout of stylegan2-ada-pytorch's
network-snapshot-*.pkl (protocol 4; torch_utils.persistence objects; tensors as _rebuild_parameter(
_rebuild_tensor_v2(_load_from_bytes(<legacy torch save>), ...)); numpy scalars; dnnlib EasyDict), without
needing torch: the globals are stand-in functions registered under the real names. Used by the fuzz test.
Run: python3 test/io/data/make_mini_pkl.py"""
import collections, io, pickle, struct, sys, types
import numpy as np

def fake(mod, name, kind="func"):
    parts = mod.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    m = sys.modules[mod]
    if kind == "func":
        def f(*a): pass
        obj = f
    else:
        obj = type(name, (dict,) if kind == "dict" else (), {})
    obj.__module__, obj.__qualname__, obj.__name__ = mod, name, name
    setattr(m, name, obj)
    return obj

rebuild_v2 = fake("torch._utils", "_rebuild_tensor_v2")
rebuild_param = fake("torch._utils", "_rebuild_parameter")
load_from_bytes = fake("torch.storage", "_load_from_bytes")
reconstruct = fake("torch_utils.persistence", "_reconstruct_persistent_obj")
FloatStorage = fake("torch", "FloatStorage", "class")
EasyDict = fake("dnnlib.util", "EasyDict", "dict")

class R:
    def __init__(self, f, *args): self.f, self.args = f, args
    def __reduce__(self): return (self.f, self.args)

class StorageId:
    def __init__(self, key, n): self.key, self.n = key, n

def legacy_storage_bytes(arr, key):
    b = io.BytesIO()
    for v in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(v, b, protocol=2)
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, obj.key, "cpu", obj.n, None) if isinstance(obj, StorageId) else None
    P(b, protocol=2).dump(StorageId(key, arr.size))
    pickle.dump([key], b, protocol=2)
    b.write(struct.pack("<q", arr.size))
    b.write(arr.astype("<f4").tobytes())
    return b.getvalue()

rng = np.random.RandomState(0)
counter = [100]
def param(*shape, buffer=False):
    a = rng.randn(*shape).astype(np.float32)
    counter[0] += 1
    stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    t = R(rebuild_v2, R(load_from_bytes, legacy_storage_bytes(a, str(counter[0]))), 0, tuple(shape), stride, False, collections.OrderedDict())
    return t if buffer else R(rebuild_param, t, True, collections.OrderedDict())

def module(cls, params=(), buffers=(), children=(), nonpersistent=(), **attrs):
    state = {"training": False, "_parameters": collections.OrderedDict(params), "_buffers": collections.OrderedDict(buffers),
             "_non_persistent_buffers_set": set(nonpersistent), "_backward_hooks": collections.OrderedDict(),
             "_modules": collections.OrderedDict(children), **attrs}
    meta = {"type": "class", "version": 6, "module_src": "import os\nos.system('echo never run')\n", "class_name": cls, "state": state}
    return R(reconstruct, meta)

gain = np.float64(0.125)
fc0 = module("FullyConnectedLayer", [("weight", param(8, 8)), ("bias", param(8))], weight_gain=gain, activation="lrelu",
             _init_args=(8, 8), _init_kwargs={"lr_multiplier": 0.01})
mapping = module("MappingNetwork", buffers=[("w_avg", param(8, buffer=True))], children=[("fc0", fc0)], z_dim=8, num_ws=4)
affine = module("FullyConnectedLayer", [("weight", param(4, 8)), ("bias", param(4))])
conv1 = module("SynthesisLayer", [("weight", param(4, 4, 3, 3)), ("noise_strength", param(1)), ("bias", param(4))],
               [("resample_filter", param(4, 4, buffer=True)), ("noise_const", param(4, 4, buffer=True))],
               [("affine", affine)], nonpersistent=["resample_filter"])
b4 = module("SynthesisBlock", [("const", param(4, 4, 4))], children=[("conv1", conv1)])
synthesis = module("SynthesisNetwork", children=[("b4", b4)], img_resolution=4)
kwargs = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 4, "img_channels": 3,
          "mapping_kwargs": EasyDict(num_layers=1), "synthesis_kwargs": EasyDict(channel_base=64, conv_clamp=256)}
g = module("Generator", children=[("synthesis", synthesis), ("mapping", mapping)], z_dim=8, _init_args=(), _init_kwargs=kwargs)
snap = {"training_set_kwargs": {"resolution": 4}, "G": None, "D": None, "G_ema": g, "augment_pipe": None,
        "progress": np.arange(3, dtype=np.int64)}
with open(sys.argv[1] if len(sys.argv) > 1 else "test/io/data/mini_nvidia.pkl", "wb") as f:
    pickle.dump(snap, f, protocol=4)

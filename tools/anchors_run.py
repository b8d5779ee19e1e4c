"""Runs one of the anchor scripts (../shared/anchors/*.py, tools/anchors_extra.py) without torchvision.

openai/CLIP's clip/clip.py imports torchvision.transforms at the top for its preprocessing, which the
anchors never call; Debian's python3-torchvision would pull in ffmpeg and Vulkan. Stand-ins take its place.

  /usr/bin/python3 tools/anchors_run.py SCRIPT.py ARGS...
"""
import runpy, sys, types

try:
    import torchvision  # noqa: F401
except ImportError:
    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    for name in ["Compose", "Resize", "CenterCrop", "ToTensor", "Normalize"]:
        setattr(tr, name, lambda *a, _n=name, **k: (_ for _ in ()).throw(RuntimeError(f"{_n}: no torchvision")))
    tr.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    tv.transforms = tr
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tr

script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")

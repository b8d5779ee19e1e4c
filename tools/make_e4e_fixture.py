"""
Reference fixture for the e4e encoder (test/fixtures/e4e/), made by the official encoder4editing code.

Run with /usr/bin/python3 (torch 1.13), from the repository root:
    git -C <bare clone of omertov/encoder4editing> archive HEAD models | tar -x -C /tmp/e4e_ref
    /usr/bin/python3 tools/make_e4e_fixture.py /tmp/e4e_ref

The official files are only read from that folder (never copied into this repository). The architecture
is the real Encoder4Editing(50, 'ir_se') -- 24 IR-SE units, taps after units 6, 20 and 23, the feature
pyramid, one GradualStyleBlock per W+ layer, progressive deltas added to w0 -- with its channel widths
scaled down so that the fixture stays small: the official module is imported and only its width constants
are swapped (64/128/256/512 -> 16/16/24/24), through the names the module looks up at construction
(get_blocks, Conv2d, BatchNorm2d, PReLU, nn.Conv2d, EqualLinear; GradualStyleBlock.out_c afterwards).
The stylegan_size is 32 (8 W+ layers: 3 coarse, 4 middle, 1 fine) and the input 64x64.

The decoder is rosinality's Generator (e4e's model.py, executed with a small channel table), random init; only its
state dict goes into the checkpoint (the generator has its own parity fixtures). The rosinality CUDA ops
are not built: a stub package gives the two modules Generator's constructor needs.

Writes:
  e4e.pt      {'state_dict': encoder.* + decoder.*, 'latent_avg': [8, 24], 'opts': dict}, as e4e's coach saves
  input.npy   [1, 3, 64, 64] the encoder's input in [-1, 1]
  codes.npy   [1, 8, 24]  net.encoder(x)
  wplus.npy   [1, 8, 24]  net.encoder(x) + latent_avg (what pSp.forward feeds the decoder)
"""
import os
import sys
import types

import numpy as np
import torch
from torch import nn

ref = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else '/tmp/e4e_ref')
out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'e4e')
os.makedirs(out_dir, exist_ok=True)

# Stub for models.stylegan2.op (the CUDA extension): the constructors only need FusedLeakyReLU's bias.
op = types.ModuleType('models.stylegan2.op')


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))


def _not_built(*args, **kwargs):
    raise RuntimeError('the fixture never runs the decoder')


op.FusedLeakyReLU = FusedLeakyReLU
op.fused_leaky_relu = _not_built
op.upfirdn2d = _not_built
sys.modules['models.stylegan2.op'] = op
sys.path.insert(0, ref)

from models.encoders import helpers, psp_encoders  # noqa: E402
from models.stylegan2 import model as sg2  # noqa: E402

WIDTH = {64: 16, 128: 16, 256: 24, 512: 24}
D = WIDTH[512]
STYLEGAN_SIZE = 32
w = lambda c: WIDTH.get(c, c)  # noqa: E731


def small_blocks(num_layers):
    assert num_layers == 50
    return [
        helpers.get_block(in_channel=w(64), depth=w(64), num_units=3),
        helpers.get_block(in_channel=w(64), depth=w(128), num_units=4),
        helpers.get_block(in_channel=w(128), depth=w(256), num_units=14),
        helpers.get_block(in_channel=w(256), depth=w(512), num_units=3),
    ]


def conv(in_c, out_c, *args, **kwargs):
    return nn.Conv2d(w(in_c), w(out_c), *args, **kwargs)


psp_encoders.get_blocks = small_blocks
psp_encoders.EqualLinear = lambda i, o, *a, **k: sg2.EqualLinear(w(i), w(o), *a, **k)
psp_encoders.Conv2d = conv
psp_encoders.BatchNorm2d = lambda c, *a, **k: nn.BatchNorm2d(w(c), *a, **k)
psp_encoders.PReLU = lambda c, *a, **k: nn.PReLU(w(c), *a, **k)
psp_encoders.nn = types.SimpleNamespace(**{**vars(nn), 'Conv2d': conv})


class Opts:
    stylegan_size = STYLEGAN_SIZE


torch.manual_seed(0)
encoder = psp_encoders.Encoder4Editing(50, 'ir_se', Opts()).eval()
for style in encoder.styles:
    style.out_c = w(style.out_c)  # GradualStyleBlock keeps its width for x.view(-1, out_c)

# Random weights everywhere, including what default init leaves trivial (BN statistics, biases, PReLU).
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for name, t in encoder.state_dict().items():
        if name.endswith('num_batches_tracked'):
            continue
        if name.endswith('running_var') or (name.endswith('.weight') and t.ndim == 1 and 'res_layer.2' not in name and 'input_layer.2' not in name):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)  # BN scale and variance in [0.5, 1.5)
        elif name.endswith('running_mean') or name.endswith('.bias'):
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        elif t.ndim == 1:  # PReLU slopes
            t.copy_(torch.rand(t.shape, generator=g) * 0.5)
        elif t.ndim == 4:
            fan_in = t.shape[1] * t.shape[2] * t.shape[3]
            t.copy_(torch.randn(t.shape, generator=g) * (1.0 / fan_in) ** 0.5)
        else:  # EqualLinear: randn, scaled by 1/sqrt(in) at run time
            t.copy_(torch.randn(t.shape, generator=g))

# The decoder: rosinality's Generator with a small channel table.
src = open(os.path.join(ref, 'models', 'stylegan2', 'model.py')).read()
assert 'self.channels = {\n            4: 512,' in src
namespace = {}
exec(  # the same class body, with the channel table of the fixture
    compile(
        src.replace('4: 512,\n            8: 512,\n            16: 512,\n            32: 512,', '4: 16,\n            8: 16,\n            16: 16,\n            32: 8,'),
        'model.py',
        'exec',
    ),
    namespace,
)
decoder = namespace['Generator'](STYLEGAN_SIZE, D, 2, channel_multiplier=2)

latent_avg = (torch.randn(D, generator=g) * 0.5).repeat(encoder.style_count, 1)  # [L, D], as pSp repeats it
state = {f'encoder.{k}': v for k, v in encoder.state_dict().items()}
state.update({f'decoder.{k}': v for k, v in decoder.state_dict().items()})
opts = {
    'encoder_type': 'Encoder4Editing',
    'stylegan_size': STYLEGAN_SIZE,
    'start_from_latent_avg': True,
    'checkpoint_path': None,
    'progressive_steps': [0, 20000, 22000],
    'lpips_lambda': 0.8,
    'device': 'cuda:0',
}
torch.save({'state_dict': state, 'latent_avg': latent_avg, 'opts': opts}, os.path.join(out_dir, 'e4e.pt'))

x = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
with torch.no_grad():
    codes = encoder(x)
wplus = codes + latent_avg.repeat(codes.shape[0], 1, 1)
np.save(os.path.join(out_dir, 'input.npy'), x.numpy().astype(np.float32))
np.save(os.path.join(out_dir, 'codes.npy'), codes.numpy().astype(np.float32))
np.save(os.path.join(out_dir, 'wplus.npy'), wplus.numpy().astype(np.float32))
print('codes', tuple(codes.shape), 'max |codes|', float(codes.abs().max()), 'std', float(codes.std()))

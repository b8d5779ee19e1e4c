import { float32ToHalf, type Tensor } from '../../src/io/tensor.js';
import { pickleTorch, saveTorch } from '../../src/io/torch-write.js';

/** Deterministic xorshift32, so every fuzz failure reproduces from its seed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

export function half(shape: number[], f: (i: number) => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'float16', shape, data: Uint16Array.from({ length: n }, (_, i) => float32ToHalf(f(i))) };
}

const CODE = `class Model(Module):
  __parameters__ = ["proj", ]
  __buffers__ = []
  proj : Tensor
  training : bool
  block : __torch__.m.___torch_mangle_1.Block
  def forward(self: __torch__.m.Model, x: Tensor) -> Tensor:
    return torch.matmul(x, self.proj)
class Helper(object):
  state : Tensor
`;
const MANGLED = `class Block(Module):
  __parameters__ = ["weight", "bias", ]
  __buffers__ = ["running_mean", ]
  weight : Tensor
  bias : Tensor
  running_mean : Tensor
  attn_mask : Tensor
`;

/**
 * A small archive in the layout of OpenAI's TorchScript CLIP: fp16 tensors, a mangled submodule class,
 * a tensor attribute that is neither parameter nor buffer, a non-module object, code and constants.
 */
export function writeMiniScript(file: string): void {
  const block = {
    __class__: '__torch__.m.___torch_mangle_1.Block',
    attn_mask: half([2, 2], (i) => -i),
    weight: half([3, 2], (i) => i / 4),
    running_mean: half([3], (i) => i + 0.5),
    bias: half([3], (i) => -i),
    training: false,
  };
  const model = {
    __class__: '__torch__.m.Model',
    proj: half([2, 3], (i) => i * 0.125),
    training: false,
    helper: { __class__: '__torch__.m.Helper', state: half([1], () => 7) },
    block,
  };
  saveTorch(file, model, {
    root: 'mini',
    records: {
      'code/__torch__/m.py': CODE,
      'code/__torch__/m/___torch_mangle_1.py': MANGLED,
      'constants.pkl': pickleTorch([1, 2.5, 'x']).pickle,
    },
  });
}

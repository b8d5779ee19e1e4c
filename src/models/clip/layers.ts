/**
 * Transformer pieces shared by CLIP's two towers. Layer norm is lowered to ONNX's fused
 * LayerNormalization (opset 17+) for speed, while its gradient is written in primitives, like every other
 * rule. Attention is plain multi-head scaled dot-product attention, batch-first ([B, L, W]).
 */
import { type Node, ShapeError, type Value } from '../../graph/graph.js';
import { linear, quickGelu } from '../../ops/composite/nn.js';
import { add, div, mul, sqrt, sub } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import { A, apply, type Op } from '../../ops/op.js';
import { mean, softmax } from '../../ops/reduce.js';
import { reshape, sliceAxis, transpose } from '../../ops/shape.js';

/** x̂ = (x − μ)/σ over the last axis and 1/σ, rebuilt from primitives for the backward pass. */
function normalized(x: Value, eps: number): { xhat: Value; rstd: Value } {
  const mu = mean(x, -1, true);
  const xc = sub(x, mu);
  const rstd = div(1, sqrt(add(mean(mul(xc, xc), -1, true), eps)));
  return { xhat: mul(xc, rstd), rstd };
}

const layerNormOp: Op = {
  name: 'layer_norm',
  infer([x, w, b]) {
    const d = x.shape[x.rank - 1];
    if (w.rank !== 1 || b.rank !== 1 || w.shape[0] !== d || b.shape[0] !== d)
      throw new ShapeError(`layer norm weight/bias must be [${d}]`);
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  lower: (e, n: Node) =>
    e.emit(
      'LayerNormalization',
      n.inputs.map((v) => e.name(v)),
      [e.name(n.outputs[0])],
      {
        axis: A.int(-1),
        epsilon: A.float(n.attrs.eps as number),
      },
    ),
  vjp(n, [g]) {
    if (!g) return [null, null, null];
    const [x, w] = n.inputs;
    const { xhat, rstd } = normalized(x, n.attrs.eps as number);
    const gxh = mul(g, w);
    // dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ
    const gx = mul(sub(sub(gxh, mean(gxh, -1, true)), mul(xhat, mean(mul(gxh, xhat), -1, true))), rstd);
    // Weight and bias cotangents keep the broadcast shape; autodiff sums them back to [D].
    return [gx, mul(g, xhat), g];
  },
};

/** torch.nn.LayerNorm over the last axis (biased variance), as one fused ONNX node. */
export function layerNorm(x: Value, weight: Value, bias: Value, eps = 1e-5): Value {
  return apply(layerNormOp, [x, weight, bias], { eps });
}

/** The tensors of one residual attention block, already on the graph. */
export interface BlockWeights {
  ln1: [Value, Value];
  /** [3W, W] with the query rows pre-scaled by 1/√head_dim, and [3W]. */
  inProj: [Value, Value];
  outProj: [Value, Value];
  ln2: [Value, Value];
  fc: [Value, Value];
  proj: [Value, Value];
}

/**
 * Multi-head attention of the positions `xq` [B, Q, W] over `x` [B, L, W], both layer-normed; xq === x
 * is self-attention with one fused QKV projection. `mask` is additive, [L, L] (or [B, 1, Q, L]).
 */
function attention(xq: Value, x: Value, heads: number, w: BlockWeights, mask?: Value): Value {
  const [b, l, width] = x.shape;
  const nq = xq.shape[1];
  if (width % heads !== 0) throw new ShapeError(`width ${width} is not divisible by ${heads} heads`);
  const d = width / heads;
  const [W, bias] = w.inProj;
  // [B, n, k·W] projections -> [k, B, H, n, D] -> k tensors [B, H, n, D]
  const split = (y: Value, n: number, k: number) => {
    const t = transpose(reshape(y, [b, n, k, heads, d]), [2, 0, 3, 1, 4]);
    return Array.from({ length: k }, (_, i) => reshape(sliceAxis(t, 0, i, i + 1), [b, heads, n, d]));
  };
  // rows [i·W, j·W) of the packed q, k, v projection
  const rows = (i: number, j: number) =>
    [sliceAxis(W, 0, i * width, j * width), sliceAxis(bias, 0, i * width, j * width)] as const;
  const [q, k, v] =
    xq === x
      ? split(linear(x, W, bias), l, 3)
      : [...split(linear(xq, ...rows(0, 1)), nq, 1), ...split(linear(x, ...rows(1, 3)), l, 2)];
  let scores = matmul(q, transpose(k, [0, 1, 3, 2])); // [B, H, Q, L]; q is pre-scaled through the weights
  if (mask) scores = add(scores, mask);
  const ctx = matmul(softmax(scores, -1), v); // [B, H, Q, D]
  const merged = reshape(transpose(ctx, [0, 2, 1, 3]), [b, nq, width]); // [B, Q, W]
  return linear(merged, w.outProj[0], w.outProj[1]);
}

/**
 * CLIP's ResidualAttentionBlock: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with QuickGELU. With `at`
 * (rows of x, [B, Q, W]) only those positions come out: every other position's output of the last
 * block is never read, and keys and values are all that the rest contributes.
 */
export function residualBlock(x: Value, heads: number, w: BlockWeights, mask?: Value, at?: Value): Value {
  const kv = layerNorm(x, ...w.ln1);
  const q = at ? layerNorm(at, ...w.ln1) : kv;
  const h = add(at ?? x, attention(q, kv, heads, w, mask));
  const m = quickGelu(linear(layerNorm(h, ...w.ln2), w.fc[0], w.fc[1]));
  return add(h, linear(m, w.proj[0], w.proj[1]));
}

/**
 * CLIP's training objective (Radford et al. 2021, figure 3): the symmetric cross-entropy over the cosine
 * similarities of a batch of matching image–text pairs, scaled by the learned temperature exp(logit_scale).
 * Pair i is the positive for row i of logits_per_image and for row i of logits_per_text; every other
 * entry in the batch is a negative.
 */
import { type Node, ShapeError, type Value } from '../graph/graph.js';
import { add, div, exp, mul, sqrt, sub } from '../ops/elementwise.js';
import { matmul, mT } from '../ops/matmul.js';
import { A, apply, type Op } from '../ops/op.js';
import { mean, softmax, sum } from '../ops/reduce.js';
import { expand, reshape } from '../ops/shape.js';

/**
 * log Σ exp(x) over the last axis (kept as size 1), lowered to ONNX's ReduceLogSumExp, which subtracts
 * the row maximum first: logits reach ±100, and exp(100) overflows float32. Its gradient is the softmax
 * (also computed max-subtracted), so the cross-entropy stays finite however confident the model gets.
 */
const logSumExpOp: Op = {
  name: 'log_sum_exp',
  infer([x]) {
    if (x.rank < 1) throw new ShapeError('log_sum_exp needs a tensor of rank >= 1');
    return [{ shape: [...x.shape.slice(0, -1), 1], dtype: x.dtype }];
  },
  lower: (e, n: Node) =>
    e.emit('ReduceLogSumExp', [e.name(n.inputs[0]), e.ints([n.inputs[0].rank - 1])], [e.name(n.outputs[0])], {
      keepdims: A.int(1),
    }),
  vjp(n, [g]) {
    if (!g) return [null];
    const x = n.inputs[0];
    return [mul(expand(g, x.shape), softmax(x, -1))];
  },
};

/** log Σ_j exp(x[..., j]), shape [..., 1]. */
export function logSumExp(x: Value): Value {
  return apply(logSumExpOp, [x]);
}

/** x / ‖x‖ along the last axis (CLIP's `features / features.norm(dim=1, keepdim=True)`). */
export function l2Normalize(x: Value): Value {
  return div(x, sqrt(sum(mul(x, x), -1, true)));
}

/**
 * torch.nn.functional.cross_entropy(logits, arange(N)) for square logits [N, N]: the mean over rows of
 * log Σ_j exp(logits[i, j]) − logits[i, i]. The diagonal is read through a constant identity mask.
 */
export function crossEntropyDiagonal(logits: Value): Value {
  const [n, m] = logits.shape;
  if (logits.rank !== 2 || n !== m)
    throw new ShapeError(`contrastive logits must be square, got [${logits.shape}]`);
  const eye = logits.dtype === 'float64' ? new Float64Array(n * n) : new Float32Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  const positives = sum(mul(logits, logits.graph.const(eye, [n, n], `eye_${n}`)), -1, true); // [N, 1]
  return mean(sub(logSumExp(logits), positives));
}

export interface ContrastiveOutputs {
  /** (CE(logits_per_image) + CE(logits_per_text)) / 2, a scalar. */
  loss: Value;
  /** exp(logit_scale) · cos(image_i, text_j), [B, B]. */
  logitsPerImage: Value;
}

/**
 * CLIP's forward and loss: `logit_scale` is the stored log-temperature (a scalar input); the features
 * are the towers' unnormalized outputs [B, E].
 */
export function contrastiveLoss(
  imageFeatures: Value,
  textFeatures: Value,
  logitScale: Value,
): ContrastiveOutputs {
  if (imageFeatures.rank !== 2 || textFeatures.rank !== 2 || imageFeatures.shape[0] !== textFeatures.shape[0])
    throw new ShapeError(
      `contrastive loss needs [B, E] image and text features, got [${imageFeatures.shape}] and [${textFeatures.shape}]`,
    );
  const cos = matmul(l2Normalize(imageFeatures), mT(l2Normalize(textFeatures))); // [B, B]
  const logitsPerImage = mul(cos, exp(reshape(logitScale, [1, 1]))); // [] -> [1, 1]
  const perImage = crossEntropyDiagonal(logitsPerImage);
  const perText = crossEntropyDiagonal(mT(logitsPerImage)); // logits_per_text = logits_per_imageᵀ
  const loss = div(add(perImage, perText), 2);
  return { loss, logitsPerImage };
}

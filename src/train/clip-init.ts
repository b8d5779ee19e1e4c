/**
 * A fresh CLIP ViT in OpenAI's state-dict layout, for training from scratch. The architecture is given
 * the way `build_model` reads it back from the weights (so `loadClip` infers the same model): heads are
 * width / 64, the context is 77 and the vocabulary the BPE tokenizer's 49408 tokens.
 *
 * Initialization follows OpenAI's `CLIP.initialize_parameters`: token embedding N(0, 0.02²), positions
 * N(0, 0.01²), attention in-projections N(0, 1/W), out-projections and MLP outputs N(0, 1/(2·L·W)), MLP
 * inputs N(0, 1/(2W)), the text projection N(0, 1/W), logit_scale ln(1/0.07). OpenAI applies the block
 * scheme to the text tower only and leaves the vision blocks at torch's defaults; here both towers use
 * it (small models train faster from it). The vision stem is as `VisionTransformer.__init__`: class and
 * position embeddings and the projection N(0, 1/W), the patch conv torch's default U(±1/√fan_in).
 * Biases start at zero and layer norms at (1, 0).
 */
import type { Tensor } from '../io/tensor.js';
import { type ClipConfig, expectedShapes } from '../models/clip/model.js';
import { CONTEXT_LENGTH } from '../models/clip/tokenizer.js';
import { MT19937 } from '../util/random.js';

/** The architecture flags of `styleclip train clip` (everything else follows from them). */
export interface ClipArchitecture {
  embedDim: number;
  imageResolution: number;
  visionPatchSize: number;
  visionWidth: number;
  visionLayers: number;
  textWidth: number;
  textLayers: number;
}

export class ClipArchitectureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClipArchitectureError';
  }
}

/** The full config, checked the way the checkpoint will be read back. */
export function clipConfig(a: ClipArchitecture): ClipConfig {
  const positive = Object.entries(a).filter(([, v]) => !(Number.isInteger(v) && v >= 1));
  if (positive.length)
    throw new ClipArchitectureError(`${positive.map(([k]) => k).join(', ')} must be whole numbers ≥ 1`);
  if (a.imageResolution % a.visionPatchSize !== 0)
    throw new ClipArchitectureError(
      `the image resolution ${a.imageResolution} is not a multiple of the patch size ${a.visionPatchSize}`,
    );
  for (const [what, w] of [
    ['vision', a.visionWidth],
    ['text', a.textWidth],
  ] as const)
    if (w % 64 !== 0)
      throw new ClipArchitectureError(
        `the ${what} width ${w} must be a multiple of 64: OpenAI's layout stores no head count, and loaders (build_model, loadClip) take heads = width / 64`,
      );
  return {
    ...a,
    visionHeads: a.visionWidth / 64,
    textHeads: a.textWidth / 64,
    contextLength: CONTEXT_LENGTH,
    vocabSize: 49408,
  };
}

/** A freshly initialized state dict (float32, OpenAI keys) for `config`, reproducible from `seed`. */
export function initClipStateDict(config: ClipConfig, seed: number): Map<string, Tensor> {
  // Box-Muller over the Mersenne Twister: reproducible from the seed and fast enough for millions of
  // draws (numpy's exact stream, with its correctly rounded log, is ~10x slower and not needed here).
  const mt = new MT19937(seed >>> 0);
  const unit = () => ((mt.nextUint32() >>> 5) * 67108864 + (mt.nextUint32() >>> 6)) / 9007199254740992;
  const sd = new Map<string, Tensor>();
  const normal = (n: number, std: number) => {
    const d = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - unit())) * std;
      const a = 2 * Math.PI * unit();
      d[i] = r * Math.cos(a);
      if (i + 1 < n) d[i + 1] = r * Math.sin(a);
    }
    return d;
  };
  const uniform = (n: number, bound: number) => {
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = (2 * unit() - 1) * bound;
    return d;
  };
  const tower = (key: string) =>
    key.startsWith('visual.')
      ? { width: config.visionWidth, layers: config.visionLayers }
      : { width: config.textWidth, layers: config.textLayers };
  for (const [key, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const { width, layers } = tower(key);
    const attnStd = width ** -0.5;
    const projStd = attnStd * (2 * layers) ** -0.5;
    let data: Float32Array;
    if (key === 'logit_scale') data = Float32Array.of(Math.log(1 / 0.07));
    else if (key === 'token_embedding.weight') data = normal(n, 0.02);
    else if (key === 'positional_embedding') data = normal(n, 0.01);
    else if (key === 'visual.conv1.weight') data = uniform(n, (3 * config.visionPatchSize ** 2) ** -0.5);
    else if (/^visual\.(class_embedding|positional_embedding|proj)$/.test(key) || key === 'text_projection')
      data = normal(n, attnStd);
    else if (key.endsWith('attn.in_proj_weight')) data = normal(n, attnStd);
    else if (key.endsWith('attn.out_proj.weight') || key.endsWith('mlp.c_proj.weight'))
      data = normal(n, projStd);
    else if (key.endsWith('mlp.c_fc.weight')) data = normal(n, (2 * width) ** -0.5);
    else if (/ln_\w+\.weight$/.test(key)) data = new Float32Array(n).fill(1);
    else if (key.endsWith('bias')) data = new Float32Array(n);
    else throw new ClipArchitectureError(`no initialization rule for "${key}"`);
    sd.set(key, { dtype: 'float32', shape: [...shape], data });
  }
  return sd;
}

/**
 * CLIP ViT (OpenAI's clip/model.py) as graph-building code. Every hyper-parameter is read from the
 * weights' shapes, as `build_model` does; weights are widened to float32 once and become ONNX
 * initializers (shared by reference, never copied, until serialization).
 *
 * Layout: OpenAI's state-dict names (`visual.transformer.resblocks.0.attn.in_proj_weight`, ...). Hugging
 * Face checkpoints are renamed into this layout by `hf.ts` before they get here.
 */
import { createHash } from 'node:crypto';
import { type Graph, ShapeError, type Value } from '../../graph/graph.js';
import { type Tensor, toFloat32 } from '../../io/tensor.js';
import { conv2d } from '../../ops/conv.js';
import { add, div, mul, sqrt, sub } from '../../ops/elementwise.js';
import { matmul, mT } from '../../ops/matmul.js';
import { sum } from '../../ops/reduce.js';
import { concat, expand, gather, reshape, slice, sliceAxis, transpose } from '../../ops/shape.js';
import { type BlockWeights, layerNorm, residualBlock } from './layers.js';

export interface ClipConfig {
  /** Joint embedding size (text_projection's columns); 512 for ViT-B/32. */
  embedDim: number;
  /** Input side in pixels: patch size × grid; 224 for ViT-B/32. */
  imageResolution: number;
  visionLayers: number;
  visionWidth: number;
  /** width / 64, as build_model. */
  visionHeads: number;
  visionPatchSize: number;
  /** Token positions; 77 for every released model. */
  contextLength: number;
  vocabSize: number;
  textWidth: number;
  textHeads: number;
  textLayers: number;
}

export class ClipWeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClipWeightsError';
  }
}

export type StateDict = ReadonlyMap<string, Tensor>;

interface HostWeight {
  shape: number[];
  data: Float32Array;
}

function shapeOf(sd: StateDict, key: string): number[] {
  const t = sd.get(key);
  if (!t) throw new ClipWeightsError(`not a CLIP ViT checkpoint: missing "${key}"`);
  return t.shape;
}

function countBlocks(sd: StateDict, prefix: string): number {
  const ids = new Set<number>();
  for (const k of sd.keys()) {
    const m = k.startsWith(prefix) ? /^(\d+)\./.exec(k.slice(prefix.length)) : null;
    if (m) ids.add(Number(m[1]));
  }
  for (let i = 0; i < ids.size; i++)
    if (!ids.has(i))
      throw new ClipWeightsError(`"${prefix}${i}.*" is missing (blocks must be numbered 0..n-1)`);
  return ids.size;
}

/** build_model's inference of the architecture from the checkpoint (ViT models only). */
export function inferClipConfig(sd: StateDict): ClipConfig {
  if ([...sd.keys()].some((k) => k.startsWith('visual.layer1.')))
    throw new ClipWeightsError(
      'ResNet CLIP models (RN50, ...) are not supported; use a ViT model such as ViT-B/32',
    );
  const conv = shapeOf(sd, 'visual.conv1.weight'); // [W, 3, P, P]
  const visionWidth = conv[0];
  const visionPatchSize = conv[3];
  const grid = Math.round(Math.sqrt(shapeOf(sd, 'visual.positional_embedding')[0] - 1));
  const textWidth = shapeOf(sd, 'ln_final.weight')[0];
  const config: ClipConfig = {
    embedDim: shapeOf(sd, 'text_projection')[1],
    imageResolution: visionPatchSize * grid,
    visionLayers: countBlocks(sd, 'visual.transformer.resblocks.'),
    visionWidth,
    visionHeads: Math.floor(visionWidth / 64),
    visionPatchSize,
    contextLength: shapeOf(sd, 'positional_embedding')[0],
    vocabSize: shapeOf(sd, 'token_embedding.weight')[0],
    textWidth,
    textHeads: Math.floor(textWidth / 64),
    textLayers: countBlocks(sd, 'transformer.resblocks.'),
  };
  if (config.visionHeads < 1 || config.textHeads < 1)
    throw new ClipWeightsError(`widths ${visionWidth}/${textWidth} give no attention heads (width / 64)`);
  return config;
}

/** OpenAI ViT-B/32's hyper-parameters, for building a full-size model with random weights (benchmarks). */
export const VIT_B32: Readonly<ClipConfig> = Object.freeze({
  embedDim: 512,
  imageResolution: 224,
  visionLayers: 12,
  visionWidth: 768,
  visionHeads: 12,
  visionPatchSize: 32,
  contextLength: 77,
  vocabSize: 49408,
  textWidth: 512,
  textHeads: 8,
  textLayers: 12,
});

/** Every tensor the model reads, with its expected shape. */
export function expectedShapes(c: ClipConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const block = (prefix: string, w: number) => {
    m.set(`${prefix}.attn.in_proj_weight`, [3 * w, w]);
    m.set(`${prefix}.attn.in_proj_bias`, [3 * w]);
    m.set(`${prefix}.attn.out_proj.weight`, [w, w]);
    m.set(`${prefix}.attn.out_proj.bias`, [w]);
    for (const ln of ['ln_1', 'ln_2']) {
      m.set(`${prefix}.${ln}.weight`, [w]);
      m.set(`${prefix}.${ln}.bias`, [w]);
    }
    m.set(`${prefix}.mlp.c_fc.weight`, [4 * w, w]);
    m.set(`${prefix}.mlp.c_fc.bias`, [4 * w]);
    m.set(`${prefix}.mlp.c_proj.weight`, [w, 4 * w]);
    m.set(`${prefix}.mlp.c_proj.bias`, [w]);
  };
  const vw = c.visionWidth;
  const grid = c.imageResolution / c.visionPatchSize;
  m.set('visual.conv1.weight', [vw, 3, c.visionPatchSize, c.visionPatchSize]);
  m.set('visual.class_embedding', [vw]);
  m.set('visual.positional_embedding', [grid * grid + 1, vw]);
  for (const ln of ['ln_pre', 'ln_post']) {
    m.set(`visual.${ln}.weight`, [vw]);
    m.set(`visual.${ln}.bias`, [vw]);
  }
  for (let i = 0; i < c.visionLayers; i++) block(`visual.transformer.resblocks.${i}`, vw);
  m.set('visual.proj', [vw, c.embedDim]);
  const tw = c.textWidth;
  m.set('token_embedding.weight', [c.vocabSize, tw]);
  m.set('positional_embedding', [c.contextLength, tw]);
  for (let i = 0; i < c.textLayers; i++) block(`transformer.resblocks.${i}`, tw);
  m.set('ln_final.weight', [tw]);
  m.set('ln_final.bias', [tw]);
  m.set('text_projection', [tw, c.embedDim]);
  m.set('logit_scale', []);
  return m;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

export interface ClipModelOptions {
  /** Identifies the weights in caches (e.g. the checkpoint file's SHA-256); hashed from the weights if absent. */
  hash?: string;
}

/** CLIP's pixel normalization (torchvision Normalize after ToTensor), per RGB channel. */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** The state dict key that marks a CLIP trained on normalized pixels (see ClipModel.inputNormalization). */
export const INPUT_NORMALIZATION_KEY = 'input_normalization';

/** The mark's value for CLIP's own preprocessing constants (CLIP_MEAN; CLIP_STD), float32 [2, 3]. */
export function clipNormalizationTensor(): Tensor {
  return { dtype: 'float32', shape: [2, 3], data: Float32Array.from([...CLIP_MEAN, ...CLIP_STD]) };
}

function readInputNormalization(sd: StateDict): ClipModel['inputNormalization'] {
  const t = sd.get(INPUT_NORMALIZATION_KEY);
  if (!t) return null;
  if (!sameShape(t.shape, [2, 3]))
    throw new ClipWeightsError(
      `"${INPUT_NORMALIZATION_KEY}" has shape [${t.shape}], expected [2, 3] (mean; std)`,
    );
  const v = [...toFloat32(t).data];
  if (!v.every(Number.isFinite) || v.slice(3).some((s) => s <= 0))
    throw new ClipWeightsError(
      `"${INPUT_NORMALIZATION_KEY}" needs finite means and positive stds, got [${v}]`,
    );
  return { mean: v.slice(0, 3), std: v.slice(3) };
}

/** CLIP ViT weights in float32 plus graph builders for both towers. */
export class ClipModel {
  readonly config: ClipConfig;
  /** The learned temperature as stored (a log): logits are exp(logitScale) · cos. */
  readonly logitScale: number;
  /**
   * CLIP's pixel normalization that the CLIP loss applies to [-1, 1] images, when the file asks for it (key
   * `input_normalization`, [2, 3]: mean and std per RGB channel, written by `train clip`). OpenAI's files
   * lack it, and the loss then feeds [-1, 1] pixels as they are, as StyleCLIP's CLIPLoss does; a CLIP trained
   * here saw normalized pixels only, and scores raw ones far worse (world hair colour 79 % instead of 99 %).
   */
  readonly inputNormalization: { mean: number[]; std: number[] } | null;
  private readonly weights = new Map<string, HostWeight>();
  private readonly graphConsts = new WeakMap<Graph, Map<string, Value>>();
  /** Graphs whose weights are inputs (weightsAsInputs). */
  private readonly trainingGraphs = new WeakSet<Graph>();
  private hashValue?: string;

  private constructor(
    config: ClipConfig,
    weights: Map<string, HostWeight>,
    inputNormalization: ClipModel['inputNormalization'],
    hash?: string,
  ) {
    this.config = config;
    this.weights = weights;
    this.inputNormalization = inputNormalization;
    this.logitScale = weights.get('logit_scale')!.data[0];
    this.hashValue = hash;
  }

  /** From an OpenAI-layout state dict (fp16 or fp32; computed in float32). Unused keys are ignored. */
  static fromStateDict(sd: StateDict, options: ClipModelOptions = {}): ClipModel {
    const config = inferClipConfig(sd);
    const weights = new Map<string, HostWeight>();
    for (const [key, shape] of expectedShapes(config)) {
      const t = sd.get(key);
      if (!t) throw new ClipWeightsError(`missing "${key}" (expected shape [${shape}])`);
      if (!sameShape(t.shape, shape))
        throw new ClipWeightsError(`"${key}" has shape [${t.shape}], expected [${shape}]`);
      weights.set(key, { shape: [...shape], data: toFloat32(t).data });
    }
    // torch's MultiheadAttention scales q after the projection; folding 1/√d into the q rows is the same map.
    for (const prefix of ['visual.transformer.resblocks.', 'transformer.resblocks.']) {
      const visual = prefix.startsWith('visual');
      const layers = visual ? config.visionLayers : config.textLayers;
      const width = visual ? config.visionWidth : config.textWidth;
      const heads = visual ? config.visionHeads : config.textHeads;
      const scale = (width / heads) ** -0.5;
      for (let i = 0; i < layers; i++) {
        for (const [name, rows] of [
          ['in_proj_weight', width * width],
          ['in_proj_bias', width],
        ] as const) {
          const src = weights.get(`${prefix}${i}.attn.${name}`)!;
          const data = Float32Array.from(src.data);
          for (let j = 0; j < rows; j++) data[j] *= scale;
          weights.set(`${prefix}${i}.attn.${name}:scaled`, { shape: src.shape, data });
        }
      }
    }
    return new ClipModel(config, weights, readInputNormalization(sd), options.hash);
  }

  /** A content hash of the weights (or the one given at construction); keys text-embedding caches. */
  get hash(): string {
    if (!this.hashValue) {
      const h = createHash('sha256');
      for (const [k, w] of [...this.weights].sort(([a], [b]) => (a < b ? -1 : 1))) {
        h.update(`${k}[${w.shape}]`);
        h.update(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength));
      }
      this.hashValue = h.digest('hex');
    }
    return this.hashValue;
  }

  /** The float32 values of one tensor (OpenAI names). */
  tensor(key: string): HostWeight {
    const w = this.weights.get(key);
    if (!w) throw new ClipWeightsError(`no tensor "${key}"`);
    return w;
  }

  /** The weight as a constant of `g`, one initializer per graph however often it is used. */
  weight(g: Graph, key: string): Value {
    let consts = this.graphConsts.get(g);
    if (!consts) this.graphConsts.set(g, (consts = new Map()));
    let v = consts.get(key);
    if (!v) {
      // A weight read on a training graph must be one of its inputs, or it would silently stay frozen.
      if (this.trainingGraphs.has(g))
        throw new ClipWeightsError(`"${key}" is read but not bound by weightsAsInputs; bind it there`);
      const w = this.tensor(key);
      v = g.const(w.data, w.shape, `clip.${key.replace(':', '_')}`);
      consts.set(key, v);
    }
    return v;
  }

  /**
   * Makes every tensor of the model an input of `g`, named by its OpenAI key, so that a training graph
   * can differentiate with respect to the weights; the builders then read these inputs in place of
   * constants. The 1/√head_dim that inference folds into the query rows is applied in the graph here, so
   * gradients reach the stored (unscaled) tensors. Call it before building anything CLIP on `g`.
   */
  weightsAsInputs(g: Graph): Map<string, Value> {
    if (this.graphConsts.has(g))
      throw new ShapeError('weightsAsInputs: this graph already holds CLIP weights as constants');
    const c = this.config;
    const bound = new Map<string, Value>();
    const inputs = new Map<string, Value>();
    for (const [key, shape] of expectedShapes(c)) {
      const v = g.input(key, shape);
      inputs.set(key, v);
      bound.set(key, v);
    }
    for (const [prefix, layers, width, heads] of [
      ['visual.transformer.resblocks.', c.visionLayers, c.visionWidth, c.visionHeads],
      ['transformer.resblocks.', c.textLayers, c.textWidth, c.textHeads],
    ] as const) {
      // [3W]: 1/√d for the query rows, 1 for the key and value rows
      const rowScale = new Float32Array(3 * width).fill(1).fill((width / heads) ** -0.5, 0, width);
      const s = g.const(rowScale, [3 * width], `clip.${prefix}q_scale`);
      const s2 = reshape(s, [3 * width, 1]); // [3W] -> [3W, 1], one factor per weight row
      for (let i = 0; i < layers; i++) {
        const k = `${prefix}${i}.attn.in_proj_`;
        bound.set(`${k}weight:scaled`, mul(inputs.get(`${k}weight`)!, s2));
        bound.set(`${k}bias:scaled`, mul(inputs.get(`${k}bias`)!, s));
      }
    }
    this.graphConsts.set(g, bound);
    this.trainingGraphs.add(g);
    return inputs;
  }

  private block(g: Graph, prefix: string): BlockWeights {
    const w = (k: string) => this.weight(g, `${prefix}.${k}`);
    return {
      ln1: [w('ln_1.weight'), w('ln_1.bias')],
      inProj: [w('attn.in_proj_weight:scaled'), w('attn.in_proj_bias:scaled')],
      outProj: [w('attn.out_proj.weight'), w('attn.out_proj.bias')],
      ln2: [w('ln_2.weight'), w('ln_2.bias')],
      fc: [w('mlp.c_fc.weight'), w('mlp.c_fc.bias')],
      proj: [w('mlp.c_proj.weight'), w('mlp.c_proj.bias')],
    };
  }

  /** encode_image: [B, 3, R, R] (already CLIP-normalized) → [B, embed], unnormalized. */
  encodeImage(image: Value): Value {
    const c = this.config;
    const g = image.graph;
    const r = c.imageResolution;
    if (image.rank !== 4 || image.shape[1] !== 3 || image.shape[2] !== r || image.shape[3] !== r)
      throw new ShapeError(`CLIP encode_image needs [B, 3, ${r}, ${r}], got [${image.shape}]`);
    const b = image.shape[0];
    const w = (k: string) => this.weight(g, `visual.${k}`);
    const width = c.visionWidth;
    const p = c.visionPatchSize;
    const grid = r / p;
    let x = conv2d(image, w('conv1.weight'), { stride: p }); // [B, W, grid, grid]
    x = transpose(reshape(x, [b, width, grid * grid]), [0, 2, 1]); // [B, grid², W]
    const cls = expand(reshape(w('class_embedding'), [1, 1, width]), [b, 1, width]); // [W] -> [B, 1, W]
    x = add(concat([cls, x], 1), w('positional_embedding')); // [B, grid² + 1, W]
    x = layerNorm(x, w('ln_pre.weight'), w('ln_pre.bias'));
    const last = c.visionLayers - 1;
    for (let i = 0; i < last; i++)
      x = residualBlock(x, c.visionHeads, this.block(g, `visual.transformer.resblocks.${i}`));
    // only the class token is pooled, so the last block runs its queries and MLP for that token alone
    const block = this.block(g, `visual.transformer.resblocks.${last}`);
    x = residualBlock(x, c.visionHeads, block, undefined, sliceAxis(x, 1, 0, 1)); // [B, 1, W]
    const pooled = reshape(x, [b, width]); // [B, 1, W] -> [B, W]
    return matmul(layerNorm(pooled, w('ln_post.weight'), w('ln_post.bias')), w('proj')); // [B, E]
  }

  /**
   * encode_text on a context trimmed to `tokens.shape[1]` positions (≤ the model's context).
   * `tokens` [T, L] holds token ids (int32 or int64); `eot` [T] the flat index t·L + argmax(tokens[t]) of
   * each row's end token (see `eotIndices`). The causal mask makes positions after the end token
   * irrelevant, so any L past the longest prompt gives the same features.
   */
  encodeText(tokens: Value, eot: Value): Value {
    const c = this.config;
    const l = tokens.shape[1];
    if (tokens.rank !== 2 || l > c.contextLength || l < 1)
      throw new ShapeError(
        `CLIP encode_text needs tokens [T, L ≤ ${c.contextLength}], got [${tokens.shape}]`,
      );
    const x = gather(this.weight(tokens.graph, 'token_embedding.weight'), tokens, 0); // [T, L, W]
    return this.encodeTextEmbeddings(x, eot);
  }

  /**
   * encode_text from token embeddings [T, L, W] (rows of token_embedding.weight, looked up on the host
   * by `ClipEncoder` so the 49408-row table stays out of the graph); positions are added here.
   */
  encodeTextEmbeddings(tokenEmbeddings: Value, eot: Value): Value {
    const c = this.config;
    const g = tokenEmbeddings.graph;
    const [t, l, width] = tokenEmbeddings.shape;
    if (tokenEmbeddings.rank !== 3 || l > c.contextLength || width !== c.textWidth)
      throw new ShapeError(
        `CLIP text embeddings must be [T, L ≤ ${c.contextLength}, ${c.textWidth}], got [${tokenEmbeddings.shape}]`,
      );
    if (eot.rank !== 1 || eot.shape[0] !== t) throw new ShapeError(`eot indices must be [${t}]`);
    const pos = slice(this.weight(g, 'positional_embedding'), [0, 0], [l, width]); // [L, W]
    let x = add(tokenEmbeddings, pos);
    const mask = new Float32Array(l * l);
    for (let i = 0; i < l; i++) for (let j = i + 1; j < l; j++) mask[i * l + j] = Number.NEGATIVE_INFINITY;
    const maskV = g.const(mask, [l, l], `clip.causal_mask_${l}`);
    const last = c.textLayers - 1;
    for (let i = 0; i < last; i++)
      x = residualBlock(x, c.textHeads, this.block(g, `transformer.resblocks.${i}`), maskV);
    // Only the end tokens are read, so the last block runs its queries and MLP for them alone, each
    // with its own row of the causal mask.
    const rowStart = g.const(
      BigInt64Array.from({ length: t }, (_, r) => BigInt(r * l)),
      [t],
      'row_start',
    );
    const eotMask = reshape(gather(maskV, sub(eot, rowStart), 0), [t, 1, 1, l]); // [T, L] -> [T, 1, 1, L]
    const atEot = reshape(gather(reshape(x, [t * l, width]), eot, 0), [t, 1, width]); // [T·L, W] -> [T, 1, W]
    x = residualBlock(x, c.textHeads, this.block(g, `transformer.resblocks.${last}`), eotMask, atEot);
    const picked = reshape(x, [t, width]); // [T, 1, W] -> [T, W]
    const y = layerNorm(picked, this.weight(g, 'ln_final.weight'), this.weight(g, 'ln_final.bias'));
    return matmul(y, this.weight(g, 'text_projection')); // [T, E]
  }

  /** CLIP's forward: logits_per_image [B, T] = exp(logit_scale) · cos(image, text). */
  logitsPerImage(imageFeatures: Value, textFeatures: Value): Value {
    const scale = Math.exp(this.logitScale);
    return mul(matmul(l2Normalize(imageFeatures), mT(l2Normalize(textFeatures))), scale);
  }
}

/** x / ‖x‖ along the last axis. */
function l2Normalize(x: Value): Value {
  return div(x, sqrt(sum(mul(x, x), -1, true)));
}

/**
 * Flat end-token positions for `encodeText`: for row t of [T, stride] ids, t·L + argmax(ids) (the
 * first maximum, as torch's argmax on CLIP tokens where the end token 49407 is the largest id).
 */
export function eotIndices(tokens: Int32Array, stride: number, trimmed: number = stride): BigInt64Array {
  const rows = tokens.length / stride;
  const out = new BigInt64Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 1; j < stride; j++) if (tokens[r * stride + j] > tokens[r * stride + best]) best = j;
    if (best >= trimmed)
      throw new ShapeError(`row ${r}: end token at ${best} lies past the trimmed context ${trimmed}`);
    out[r] = BigInt(r * trimmed + best);
  }
  return out;
}

/** The shortest context that keeps every row's end token: 1 + the largest argmax. */
export function trimmedLength(tokens: Int32Array, stride: number): number {
  let len = 1;
  for (let r = 0; r < tokens.length / stride; r++) {
    let best = 0;
    for (let j = 1; j < stride; j++) if (tokens[r * stride + j] > tokens[r * stride + best]) best = j;
    len = Math.max(len, best + 1);
  }
  return len;
}

/** Rows of [T, stride] ids cut to their first `len` columns, as int64 for the graph. */
export function trimTokens(tokens: Int32Array, stride: number, len: number): BigInt64Array {
  const rows = tokens.length / stride;
  const out = new BigInt64Array(rows * len);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < len; j++) out[r * len + j] = BigInt(tokens[r * stride + j]);
  return out;
}

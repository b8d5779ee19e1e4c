/**
 * One compiled training step of CLIP: both towers on a batch of B image–text pairs, the contrastive loss,
 * and the gradient of the loss with respect to every weight (the weights are graph inputs, so the same
 * session serves every step). One session per (batch, text length); texts run on a context trimmed to
 * the batch's longest caption, rounded up, which gives the same features as the full 77 positions (the
 * causal mask hides every position after a caption's end token from it).
 */
import { grad } from '../autodiff/grad.js';
import { Graph, ShapeError, topoSort, type Value } from '../graph/graph.js';
import { normalizeRows } from '../models/clip/encoder.js';
import { type ClipModel, eotIndices, trimmedLength, trimTokens } from '../models/clip/model.js';
import { CONTEXT_LENGTH, tokenize } from '../models/clip/tokenizer.js';
import { compile, type Executable, type HostTensor } from '../runtime/session.js';
import { contrastiveLoss } from './clip-loss.js';

export const TABLE = 'token_embedding.weight';

/** Text contexts are rounded up to a multiple of this, so batches of similar captions share a session. */
export const CONTEXT_BUCKET = 8;

export interface StepResult {
  loss: number;
  /** logits_per_image [B, B] of this batch (before the update). */
  logits: Float32Array;
  /** d loss / d weight, by OpenAI key; the arrays belong to the caller. */
  grads: Map<string, Float32Array>;
}

export class ClipStep {
  private readonly sessions = new Map<string, Promise<Executable>>();
  private readonly shapes: Map<string, number[]>;
  /** The token table's gradient, reused: only the rows of the last batch's tokens are non-zero. */
  private tableGrad?: Float32Array;
  private touched: number[] = [];

  /** The token-table rows the last run's gradient may be non-zero on (its batch's distinct tokens). */
  get lastRows(): readonly number[] {
    return this.touched;
  }

  constructor(
    readonly model: ClipModel,
    /** Compute gradients (false: loss and logits only, for validation). */
    readonly withGrads = true,
  ) {
    const g = new Graph();
    this.shapes = new Map([...model.weightsAsInputs(g)].map(([k, v]) => [k, [...v.shape]]));
  }

  /** Every weight's key and shape, in the order of `expectedShapes`. */
  get weightShapes(): ReadonlyMap<string, number[]> {
    return this.shapes;
  }

  /** The context a batch of [B, 77] token rows runs with. */
  contextFor(tokens: Int32Array, stride: number): number {
    const need = trimmedLength(tokens, stride);
    return Math.min(this.model.config.contextLength, Math.ceil(need / CONTEXT_BUCKET) * CONTEXT_BUCKET);
  }

  private session(batch: number, length: number): Promise<Executable> {
    const key = `${batch}x${length}`;
    let s = this.sessions.get(key);
    if (!s) {
      const m = this.model;
      const r = m.config.imageResolution;
      const g = new Graph();
      const weights = m.weightsAsInputs(g);
      const image = g.input('image', [batch, 3, r, r]);
      const embeddings = g.input('token_embeddings', [batch, length, m.config.textWidth]);
      const eot = g.input('eot', [batch], 'int64');
      const { loss, logitsPerImage } = contrastiveLoss(
        m.encodeImage(image),
        m.encodeTextEmbeddings(embeddings, eot),
        weights.get('logit_scale')!,
      );
      const outputs: Record<string, Value> = { loss, logits: logitsPerImage };
      if (this.withGrads) {
        const wrt = [...weights].filter(([k]) => k !== TABLE);
        grad(loss, [...wrt.map(([, v]) => v), embeddings]).forEach((gv, i) => {
          outputs[i < wrt.length ? `grad:${wrt[i][0]}` : 'grad:token_embeddings'] = gv;
        });
      }
      s = compile(outputs, { inputs: usedInputs(Object.values(outputs)) });
      this.sessions.set(key, s);
    }
    return s;
  }

  /**
   * Runs the step on `images` [B, 3, R, R] (CLIP-normalized) and `tokens` [B, stride] (CLIP token ids,
   * zero-padded, as `tokenize` gives them) with the weights in `params` (OpenAI keys). The token
   * embedding's rows are looked up here and their gradients summed back here, so the 49408-row table
   * never enters the graph (a dense scatter of it cost more than the text tower). The gradient arrays
   * are valid until the next run.
   */
  async run(
    params: ReadonlyMap<string, Float32Array>,
    images: Float32Array,
    tokens: Int32Array,
    stride = 77,
  ): Promise<StepResult> {
    const b = tokens.length / stride;
    const { imageResolution: r, textWidth: w, vocabSize } = this.model.config;
    if (!Number.isInteger(b) || b < 1 || images.length !== b * 3 * r * r)
      throw new ShapeError(
        `a CLIP step needs images [B, 3, ${r}, ${r}] and tokens [B, ${stride}] for one B, got ${images.length} pixels and ${tokens.length} ids`,
      );
    const length = this.contextFor(tokens, stride);
    const exe = await this.session(b, length);
    const table = params.get(TABLE);
    if (!table) throw new ShapeError(`no weights for "${TABLE}"`);
    const ids = trimTokens(tokens, stride, length);
    const rows = new Float32Array(b * length * w);
    for (let k = 0; k < ids.length; k++) {
      const id = Number(ids[k]);
      if (!(id >= 0 && id < vocabSize))
        throw new ShapeError(`token id ${id} is outside the vocabulary of ${vocabSize}`);
      rows.set(table.subarray(id * w, (id + 1) * w), k * w); // [B·L, W] rows of [V, W]
    }
    const feeds: Record<string, HostTensor> = {
      image: { shape: [b, 3, r, r], data: images },
      token_embeddings: { shape: [b, length, w], data: rows },
      eot: { shape: [b], data: eotIndices(tokens, stride, length) },
    };
    for (const k of exe.inputs.map((x) => x.name)) {
      if (k in feeds) continue;
      const data = params.get(k);
      if (!data) throw new ShapeError(`no weights for "${k}"`);
      feeds[k] = { shape: this.shapes.get(k)!, data };
    }
    const out = await exe.run(feeds);
    const grads = new Map<string, Float32Array>();
    if (this.withGrads) {
      for (const k of this.shapes.keys())
        if (k !== TABLE) grads.set(k, out[`grad:${k}`].data as Float32Array);
      grads.set(
        TABLE,
        this.scatterRows(table.length, ids, out['grad:token_embeddings'].data as Float32Array, w),
      );
    }
    return { loss: (out.loss.data as Float32Array)[0], logits: out.logits.data as Float32Array, grads };
  }

  /** d loss / d token_embedding.weight: each position's row gradient summed into its token's row. */
  private scatterRows(size: number, ids: BigInt64Array, rowGrads: Float32Array, w: number): Float32Array {
    if (!this.tableGrad || this.tableGrad.length !== size) this.tableGrad = new Float32Array(size);
    const g = this.tableGrad;
    for (const id of this.touched) g.fill(0, id * w, (id + 1) * w);
    this.touched = [...new Set(Array.from(ids, Number))];
    for (let k = 0; k < ids.length; k++) {
      const o = Number(ids[k]) * w;
      for (let j = 0; j < w; j++) g[o + j] += rowGrads[k * w + j];
    }
    return g;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await releaseShared(s);
    this.sessions.clear();
  }
}

/**
 * Sessions are shared by content hash (two trainers of one architecture hold the same one), so a session
 * another holder already released is not an error here.
 */
async function releaseShared(s: Promise<Executable>): Promise<void> {
  try {
    await (await s).release();
  } catch (e) {
    if (!/already disposed|released/i.test((e as Error).message)) throw e;
  }
}

/** The graph inputs that `outputs` read (a weight-input graph declares every weight; a tower reads half). */
function usedInputs(outputs: readonly Value[]): Value[] {
  const seen = new Set<Value>();
  for (const n of topoSort(outputs)) for (const x of n.inputs) if (x.kind === 'input') seen.add(x);
  for (const y of outputs) if (y.kind === 'input') seen.add(y);
  return [...seen];
}

/**
 * Normalized features of images and texts with weights that change between calls (a model in training):
 * the weights are inputs here too, so evaluating during training compiles once.
 */
export class ClipFeatures {
  private image?: Promise<{ exe: Executable; keys: string[] }>;
  private readonly texts = new Map<number, Promise<{ exe: Executable; keys: string[] }>>();

  constructor(
    readonly model: ClipModel,
    /** Rows per run; the last chunk is padded. */
    readonly chunk = 64,
  ) {}

  private build(make: (g: Graph) => Value): Promise<{ exe: Executable; keys: string[] }> {
    const g = new Graph();
    this.model.weightsAsInputs(g);
    const features = make(g);
    const inputs = usedInputs([features]);
    return compile({ features }, { inputs }).then((exe) => ({
      exe,
      keys: inputs.map((x) => x.name!).filter((k) => !RESERVED.has(k)),
    }));
  }

  private feeds(
    keys: string[],
    params: ReadonlyMap<string, Float32Array>,
    shapes: ReadonlyMap<string, number[]>,
  ) {
    const feeds: Record<string, HostTensor> = {};
    for (const k of keys) feeds[k] = { shape: shapes.get(k)!, data: params.get(k)! };
    return feeds;
  }

  /** [n, 3, R, R] CLIP-normalized pixels → [n, E] unit rows. */
  async encodeImages(
    params: ReadonlyMap<string, Float32Array>,
    shapes: ReadonlyMap<string, number[]>,
    pixels: Float32Array,
    n: number,
  ): Promise<Float32Array> {
    const r = this.model.config.imageResolution;
    const e = this.model.config.embedDim;
    const c = this.chunk;
    this.image ??= this.build((g) => this.model.encodeImage(g.input('image', [c, 3, r, r])));
    const { exe, keys } = await this.image;
    const out = new Float32Array(n * e);
    const px = 3 * r * r;
    for (let s = 0; s < n; s += c) {
      const m = Math.min(c, n - s);
      const batch = new Float32Array(c * px);
      batch.set(pixels.subarray(s * px, (s + m) * px));
      const res = await exe.run({
        ...this.feeds(keys, params, shapes),
        image: { shape: [c, 3, r, r], data: batch },
      });
      out.set((res.features.data as Float32Array).subarray(0, m * e), s * e);
    }
    return normalizeRows(out, e);
  }

  /** Texts → [n, E] unit rows (the real BPE tokenizer; over-long texts are cut to the context). */
  async encodeTexts(
    params: ReadonlyMap<string, Float32Array>,
    shapes: ReadonlyMap<string, number[]>,
    texts: readonly string[],
  ): Promise<Float32Array> {
    const e = this.model.config.embedDim;
    const c = this.chunk;
    const out = new Float32Array(texts.length * e);
    for (let s = 0; s < texts.length; s += c) {
      const m = Math.min(c, texts.length - s);
      const rows = [...texts.slice(s, s + m), ...Array<string>(c - m).fill('')];
      const tokens = tokenize(rows, { truncate: true });
      const len = Math.min(
        this.model.config.contextLength,
        Math.ceil(trimmedLength(tokens, CONTEXT_LENGTH) / CONTEXT_BUCKET) * CONTEXT_BUCKET,
      );
      let entry = this.texts.get(len);
      if (!entry) {
        entry = this.build((g) =>
          this.model.encodeText(g.input('tokens', [c, len], 'int64'), g.input('eot', [c], 'int64')),
        );
        this.texts.set(len, entry);
      }
      const { exe, keys } = await entry;
      const res = await exe.run({
        ...this.feeds(keys, params, shapes),
        tokens: { shape: [c, len], data: trimTokens(tokens, CONTEXT_LENGTH, len) },
        eot: { shape: [c], data: eotIndices(tokens, CONTEXT_LENGTH, len) },
      });
      out.set((res.features.data as Float32Array).subarray(0, m * e), s * e);
    }
    return normalizeRows(out, e);
  }

  async release(): Promise<void> {
    for (const p of [this.image, ...this.texts.values()]) if (p) await releaseShared(p.then((e) => e.exe));
    this.image = undefined;
    this.texts.clear();
  }
}

const RESERVED = new Set(['image', 'tokens', 'eot']);

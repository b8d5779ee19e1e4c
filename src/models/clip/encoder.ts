/**
 * Compiled CLIP encoders over host arrays: images [B, 3, R, R] and texts. Text features are cached by
 * (model hash, text); prompt ensembles average normalized template embeddings as CLIP's
 * `zeroshot_classifier`, and `textDirection` is StyleCLIP's GetDt.
 *
 * Texts run with the context trimmed to the longest prompt in the batch (rounded up to a multiple of 8):
 * under the causal mask a position only sees earlier ones, so nothing after a row's end token reaches its
 * features (test/models/clip checks trimmed against full-context results). Each (rows, length) shape is one
 * compiled session.
 */
import { Graph } from '../../graph/graph.js';
import { compile, type Executable } from '../../runtime/session.js';
import type { ClipModel } from './model.js';
import { expandTemplates, IMAGENET_TEMPLATES } from './templates.js';
import { CONTEXT_LENGTH, tokenize } from './tokenizer.js';

/** Row counts are rounded up to this, so similar batches share a session. */
const ROW_BUCKET = 16;
/**
 * Trimmed context lengths are rounded up to this: a server that sees many different prompts compiles at
 * most ten text sessions per row count instead of one per prompt length (each holds its own copy of the
 * text encoder's weights).
 */
const LEN_BUCKET = 8;
/** The most rows one text session runs at once. */
const MAX_ROWS = 256;
/** Cached text features kept in memory (all models together): 250 prompts of 80 templates. */
let cacheLimit = 20_000;

/** Least recently used first: a hit moves its entry to the end. */
const textCache = new Map<string, Float32Array>();

/** Sets how many text features the cache keeps (tests shrink it); returns the previous limit. */
export function setTextCacheLimit(n: number): number {
  const old = cacheLimit;
  cacheLimit = Math.max(1, Math.floor(n));
  while (textCache.size > cacheLimit) textCache.delete(textCache.keys().next().value as string);
  return old;
}

function cachePut(key: string, v: Float32Array): void {
  textCache.delete(key);
  while (textCache.size >= cacheLimit) textCache.delete(textCache.keys().next().value as string);
  textCache.set(key, v);
}

/**
 * Δt of two texts whose prompt ensembles (nearly) coincide, e.g. the same word twice: its direction is
 * noise (or 0/0 = NaN), so no edit can follow it.
 */
export class ZeroDirectionError extends Error {
  constructor(
    readonly target: string,
    readonly neutral: string,
    readonly norm: number,
  ) {
    super(
      `the target text "${target}" and the neutral text "${neutral}" mean the same to CLIP ` +
        `(|Δt| = ${norm.toExponential(1)}), so there is no direction to edit along; change one of them`,
    );
    this.name = 'ZeroDirectionError';
  }
}

/** Below this ‖ensemble(target) − ensemble(neutral)‖ (of unit vectors, so in [0, 2]), Δt is refused. */
export const MIN_DIRECTION_NORM = 1e-4;

/** Row-wise x / ‖x‖ of a [rows, dim] array (computed in float64). */
export function normalizeRows(x: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[r * dim + j] ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) out[r * dim + j] = x[r * dim + j] * inv;
  }
  return out;
}

export class ClipEncoder {
  private readonly imageSessions = new Map<number, Promise<Executable>>();
  private readonly textSessions = new Map<string, Promise<Executable>>();

  constructor(readonly model: ClipModel) {}

  get embedDim(): number {
    return this.model.config.embedDim;
  }

  private imageSession(batch: number): Promise<Executable> {
    let s = this.imageSessions.get(batch);
    if (!s) {
      const r = this.model.config.imageResolution;
      const g = new Graph();
      const features = this.model.encodeImage(g.input('image', [batch, 3, r, r]));
      s = compile({ features });
      this.imageSessions.set(batch, s);
    }
    return s;
  }

  /** encode_image of CLIP-normalized images [B, 3, R, R] → unnormalized [B, E]. */
  async encodeImages(images: Float32Array, batch: number): Promise<Float32Array> {
    const r = this.model.config.imageResolution;
    const exe = await this.imageSession(batch);
    const out = await exe.run({ image: { shape: [batch, 3, r, r], data: images } });
    return out.features.data as Float32Array;
  }

  private textSession(rows: number, len: number): Promise<Executable> {
    const key = `${rows}x${len}`;
    let s = this.textSessions.get(key);
    if (!s) {
      const g = new Graph();
      const x = g.input('token_embeddings', [rows, len, this.model.config.textWidth]);
      const eot = g.input('eot', [rows], 'int64');
      s = compile({ features: this.model.encodeTextEmbeddings(x, eot) });
      this.textSessions.set(key, s);
    }
    return s;
  }

  /**
   * encode_text of token rows [T, ctx] (clip.tokenize output) → unnormalized [T, E], uncached. The context
   * is cut to the longest row (its end token is the row's largest id, as CLIP's argmax assumes).
   */
  async encodeTokens(tokens: Int32Array, ctx = CONTEXT_LENGTH): Promise<Float32Array> {
    const t = tokens.length / ctx;
    const e = this.embedDim;
    const out = new Float32Array(t * e);
    const eots = new Int32Array(t);
    for (let r = 0; r < t; r++) {
      let best = 0;
      for (let j = 1; j < ctx; j++) if (tokens[r * ctx + j] > tokens[r * ctx + best]) best = j;
      eots[r] = best;
    }
    const table = this.model.tensor('token_embedding.weight').data;
    const w = this.model.config.textWidth;
    for (let start = 0; start < t; start += MAX_ROWS) {
      const n = Math.min(MAX_ROWS, t - start);
      const rows = Math.min(MAX_ROWS, Math.ceil(n / ROW_BUCKET) * ROW_BUCKET);
      let len = 1;
      for (let r = 0; r < n; r++) len = Math.max(len, eots[start + r] + 1);
      len = Math.min(ctx, Math.ceil(len / LEN_BUCKET) * LEN_BUCKET);
      // Host-side embedding lookup: [rows, len, W]; padding rows stay zero and point at position 0.
      const x = new Float32Array(rows * len * w);
      const eot = new BigInt64Array(rows);
      for (let r = 0; r < n; r++) {
        for (let j = 0; j < len; j++) {
          const id = tokens[(start + r) * ctx + j];
          x.set(table.subarray(id * w, id * w + w), (r * len + j) * w);
        }
        eot[r] = BigInt(r * len + eots[start + r]);
      }
      for (let r = n; r < rows; r++) eot[r] = BigInt(r * len);
      const exe = await this.textSession(rows, len);
      const res = await exe.run({
        token_embeddings: { shape: [rows, len, w], data: x },
        eot: { shape: [rows], data: eot },
      });
      out.set((res.features.data as Float32Array).subarray(0, n * e), start * e);
    }
    return out;
  }

  /** encode_text of strings → unnormalized [T, E], cached by (model hash, text). */
  async encodeTexts(texts: readonly string[]): Promise<Float32Array> {
    const e = this.embedDim;
    const hash = this.model.hash;
    const out = new Float32Array(texts.length * e);
    // This call's features are held here: inserting the missing ones may evict entries that were hits a
    // moment ago (the cache is full after ~250 distinct prompt ensembles), and another call may run
    // between the awaits.
    const found = new Map<string, Float32Array>();
    const missing: string[] = [];
    for (const s of new Set(texts)) {
      const key = `${hash}\0${s}`;
      const hit = textCache.get(key);
      if (hit) {
        found.set(s, hit);
        cachePut(key, hit); // now the most recently used
      } else missing.push(s);
    }
    if (missing.length > 0) {
      const feats = await this.encodeTokens(
        tokenize(missing, { contextLength: this.model.config.contextLength }),
        this.model.config.contextLength,
      );
      missing.forEach((s, i) => {
        const v = feats.slice(i * e, (i + 1) * e);
        found.set(s, v);
        cachePut(`${hash}\0${s}`, v);
      });
    }
    texts.forEach((s, i) => {
      out.set(found.get(s)!, i * e);
    });
    return out;
  }

  /**
   * zeroshot_classifier: for each class, the mean of its normalized template embeddings, normalized.
   * Returns [C, E] rows (the reference's weights transposed). All prompts run as one batch.
   */
  async promptEnsemble(
    classnames: readonly string[],
    templates: readonly string[] = IMAGENET_TEMPLATES,
  ): Promise<Float32Array> {
    const e = this.embedDim;
    const prompts = classnames.flatMap((c) => expandTemplates(c, templates));
    const feats = normalizeRows(await this.encodeTexts(prompts), e);
    const out = new Float32Array(classnames.length * e);
    const acc = new Float64Array(e);
    for (let c = 0; c < classnames.length; c++) {
      acc.fill(0);
      for (let k = 0; k < templates.length; k++)
        for (let j = 0; j < e; j++) acc[j] += feats[(c * templates.length + k) * e + j];
      let s = 0;
      for (let j = 0; j < e; j++) s += acc[j] ** 2;
      const inv = 1 / Math.sqrt(s); // the mean's 1/n cancels in the normalization
      for (let j = 0; j < e; j++) out[c * e + j] = acc[j] * inv;
    }
    return out;
  }

  /**
   * GetDt([target, neutral]): normalize(ensemble(target) − ensemble(neutral)), [E]. Throws
   * ZeroDirectionError when the two ensembles (nearly) coincide.
   */
  async textDirection(
    target: string,
    neutral: string,
    templates: readonly string[] = IMAGENET_TEMPLATES,
  ): Promise<Float32Array> {
    const e = this.embedDim;
    const w = await this.promptEnsemble([target, neutral], templates);
    const d = new Float64Array(e);
    let s = 0;
    for (let j = 0; j < e; j++) {
      d[j] = w[j] - w[e + j];
      s += d[j] ** 2;
    }
    const norm = Math.sqrt(s);
    if (!(norm >= MIN_DIRECTION_NORM)) throw new ZeroDirectionError(target, neutral, norm);
    return Float32Array.from(d, (v) => v / norm);
  }

  /** Releases the compiled sessions. */
  async release(): Promise<void> {
    const all = [...this.imageSessions.values(), ...this.textSessions.values()];
    this.imageSessions.clear();
    this.textSessions.clear();
    for (const s of all) await (await s).release();
  }
}

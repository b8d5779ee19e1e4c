/**
 * The semantic benchmark: do text edits on the world do what the text says, and leave the rest alone?
 *
 * For a method and a prompt naming one attribute value (family f = v), over seeds whose unedited image the
 * classifier does NOT already read as v:
 *   success       the classifier reads f = v on the edited image
 *   preservation  the share of the other families (visible on both images) that the classifier reads the
 *                 same before and after
 *   CLIP gain     cos(E_img(edited), E_txt(prompt)) − cos(E_img(original), E_txt(prompt))
 *   L2            ‖s_edit − s‖ over every StyleSpace channel (global directions), ‖w_edit − w‖ over W+
 *                 (mapper, optimization)
 * The classifier only measures; no method sees it. Starts: W+ of the official sampling, ψ = 0.7.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  applyBoundary,
  GlobalEditor,
  renderStyles,
  sampleStyleStats,
  stylesFromWplus,
  wplusFromSeed,
} from '../edit/global.js';
import { loadFs3 } from '../edit/global-io.js';
import { MapperApplier } from '../edit/mapper/apply.js';
import { loadMapper } from '../edit/mapper/checkpoint.js';
import { LatentOptimizer, promptFeatures, runOptimization } from '../edit/optimize.js';
import { cachedStyleStats } from '../edit/stats-cache.js';
import { ClipEncoder } from '../models/clip/encoder.js';
import { loadClip } from '../models/clip/load.js';
import type { ClipModel } from '../models/clip/model.js';
import { StyleGAN2 } from '../models/stylegan2/index.js';
import { FAMILY_NAMES, type Family, type Labels } from './attributes.js';
import { AttributeClassifier } from './classifier.js';
import { ClipImageFeatures } from './fid.js';
import { mapperSlug, WORLD_FILES, worldDir } from './models.js';

export type Method = 'global' | 'mapper' | 'optimization';
export const METHODS: readonly Method[] = ['global', 'mapper', 'optimization'];

export interface SemanticPrompt {
  /** The text given to the method. */
  prompt: string;
  family: Family;
  value: string;
  kind: 'colour' | 'structural';
  /** The mapper's short name: models/world/mappers/<slug>.pt. */
  mapper: string;
}

/** Four colour edits and four structural ones (the paper's: hair colour, grey hair, smile, mohawk, bob cut, glasses), and two more. */
export const SEMANTIC_PROMPTS: readonly SemanticPrompt[] = [
  {
    prompt: 'a face with purple hair',
    family: 'hairColor',
    value: 'purple',
    kind: 'colour',
    mapper: 'purple hair',
  },
  {
    prompt: 'a face with grey hair',
    family: 'hairColor',
    value: 'grey',
    kind: 'colour',
    mapper: 'grey hair',
  },
  {
    prompt: 'a face with blue hair',
    family: 'hairColor',
    value: 'blue',
    kind: 'colour',
    mapper: 'blue hair',
  },
  {
    prompt: 'a face with blonde hair',
    family: 'hairColor',
    value: 'blonde',
    kind: 'colour',
    mapper: 'blonde hair',
  },
  {
    prompt: 'a face with a smile',
    family: 'expression',
    value: 'smiling',
    kind: 'structural',
    mapper: 'smiling',
  },
  {
    prompt: 'a face with a mohawk',
    family: 'hairstyle',
    value: 'mohawk',
    kind: 'structural',
    mapper: 'mohawk hairstyle',
  },
  {
    prompt: 'a face with glasses',
    family: 'glasses',
    value: 'glasses',
    kind: 'structural',
    mapper: 'glasses',
  },
  {
    prompt: 'a face with a bob cut',
    family: 'hairstyle',
    value: 'bob cut',
    kind: 'structural',
    mapper: 'bob cut',
  },
  {
    prompt: 'a face with a surprised look',
    family: 'expression',
    value: 'surprised',
    kind: 'structural',
    mapper: 'surprised',
  },
  { prompt: 'a face with an afro', family: 'hairstyle', value: 'afro', kind: 'structural', mapper: 'afro' },
];

/** What the paper's targets ask of each method (README, issue 15). */
export const TARGETS: Record<Method, { colour: number; structural: number; preservation?: number }> = {
  global: { colour: 0.8, structural: 0.6, preservation: 0.9 },
  mapper: { colour: 0.85, structural: 0.85 },
  optimization: { colour: 0.9, structural: 0.9 },
};

export interface SemanticOptions {
  seeds: readonly number[];
  /** Global directions: α (strength) and β (disentanglement threshold); neutral text. */
  alpha: number;
  beta: number;
  neutral: string;
  /** Channel statistics samples for global directions. */
  statsSamples: number;
  /** Latent optimization steps and λ_L2. */
  optSteps: number;
  optL2: number;
  psi: number;
  /** Stop a prompt after this many edited seeds (seeds whose original already has the target do not count). */
  limit?: number;
  /** Keep channel statistics in the user's cache folder, per generator file content (as `global edit`). */
  cacheStats?: boolean;
  /** Keep the before/after images of the first this-many edited seeds (for pictures of what happened). */
  keepImages?: number;
}

export const SEMANTIC_DEFAULTS: SemanticOptions = {
  seeds: Array.from({ length: 50 }, (_, i) => i),
  alpha: 4,
  beta: 0.1,
  neutral: 'a face',
  statsSamples: 20_000,
  optSteps: 100,
  optL2: 0.008,
  psi: 0.7,
};

/** The files each method needs, relative to the world folder. */
export function requiredFiles(
  method: Method,
  prompts: readonly SemanticPrompt[] = SEMANTIC_PROMPTS,
): string[] {
  const base = [WORLD_FILES.generator[0], WORLD_FILES.clip[0], WORLD_FILES.classifier[0]];
  if (method === 'global') return [...base, WORLD_FILES.fs3[0]];
  if (method === 'mapper')
    return [...base, ...prompts.map((p) => join('mappers', `${mapperSlug(p.mapper)}.pt`))];
  return base;
}

/** Required files that are not in `dir` (models/world by default). */
export function missingFiles(
  method: Method,
  prompts?: readonly SemanticPrompt[],
  dir = worldDir(),
): string[] {
  return requiredFiles(method, prompts).filter((f) => !existsSync(join(dir, f)));
}

export interface PromptResult {
  method: Method;
  prompt: string;
  kind: 'colour' | 'structural';
  /** Seeds whose original lacked the target (the ones edited and counted). */
  edited: number;
  successes: number;
  success: number;
  preservation: number;
  clipGain: number;
  l2: number;
  /** Per edited seed: whether it succeeded, and the families that changed. */
  details: { seed: number; success: boolean; changed: Family[]; before: Labels; after: Labels }[];
  /** Before and after images [3, S, S] of the first `keepImages` edited seeds, in `details` order. */
  images: { original: Float32Array; edited: Float32Array }[];
}

/** The world's models, loaded once for all methods. */
export class WorldBench {
  /** Image features as the CLIP loss computes them (clipInput: the CLIP file's own normalization), made on first use. */
  private imageFeatures?: ClipImageFeatures;
  private textCache = new Map<string, Float32Array>();
  readonly encoder: ClipEncoder;

  private constructor(
    readonly dir: string,
    readonly G: StyleGAN2,
    readonly clip: ClipModel,
    readonly classifier: AttributeClassifier,
  ) {
    this.encoder = new ClipEncoder(clip);
  }

  static load(dir = worldDir()): WorldBench {
    const G = StyleGAN2.load(join(dir, WORLD_FILES.generator[0]));
    const clip = loadClip(join(dir, WORLD_FILES.clip[0]));
    const classifier = AttributeClassifier.load(join(dir, WORLD_FILES.classifier[0]));
    return new WorldBench(dir, G, clip, classifier);
  }

  /** The classifier's labels of generator images [n, 3, S, S] (clamped to [-1, 1], pooled to its size). */
  async classify(images: Float32Array, n: number): Promise<Labels[]> {
    const S = this.G.config.size;
    const s = this.classifier.config.size;
    if (S % s !== 0)
      throw new RangeError(
        `the generator's ${S}² images do not pool to the classifier's ${s}² by a whole factor`,
      );
    const k = S / s;
    const x = new Float32Array(n * 3 * s * s);
    for (let p = 0; p < n * 3; p++)
      for (let y = 0; y < s; y++)
        for (let xx = 0; xx < s; xx++) {
          let acc = 0;
          for (let dy = 0; dy < k; dy++)
            for (let dx = 0; dx < k; dx++)
              acc += Math.min(1, Math.max(-1, images[p * S * S + (y * k + dy) * S + xx * k + dx]));
          x[p * s * s + y * s + xx] = acc / (k * k);
        }
    return (await this.classifier.predict(x, n)).labels;
  }

  private async textFeatures(prompt: string): Promise<Float32Array> {
    let t = this.textCache.get(prompt);
    if (!t) {
      t = (await this.encoder.encodeTexts([prompt])).slice();
      this.textCache.set(prompt, t);
    }
    return t;
  }

  /** cos(E_img(image), E_txt(prompt)) for one generator image [1, 3, S, S], preprocessed as the CLIP loss does. */
  async clipScore(image: Float32Array, prompt: string): Promise<number> {
    this.imageFeatures ??= new ClipImageFeatures(this.clip, this.G.config.size);
    const f = await this.imageFeatures.run(image, 1);
    const t = await this.textFeatures(prompt);
    let dot = 0;
    let nf = 0;
    let nt = 0;
    for (let i = 0; i < f.length; i++) {
      dot += f[i] * t[i];
      nf += f[i] * f[i];
      nt += t[i] * t[i];
    }
    return dot / Math.sqrt(nf * nt);
  }

  /**
   * Runs one method on one prompt over `seeds`. `edit` returns the edited image and the L2 distance of the
   * edit for a seed's W+ latent.
   */
  private async measure(
    method: Method,
    p: SemanticPrompt,
    seeds: readonly number[],
    psi: number,
    limit: number | undefined,
    keepImages: number,
    edit: (wplus: Float32Array) => Promise<{ original: Float32Array; edited: Float32Array; l2: number }>,
  ): Promise<PromptResult> {
    const details: PromptResult['details'] = [];
    const images: PromptResult['images'] = [];
    let kept = 0;
    let same = 0;
    let gain = 0;
    let l2 = 0;
    for (const seed of seeds) {
      if (limit !== undefined && details.length >= limit) break;
      const w = await wplusFromSeed(this.G.weights, seed, psi);
      const r = await edit(w);
      const [before] = await this.classify(r.original, 1);
      if (before[p.family] === p.value) continue; // already has it: nothing to measure
      const [after] = await this.classify(r.edited, 1);
      const changed: Family[] = [];
      for (const f of FAMILY_NAMES) {
        if (f === p.family) continue;
        // Eyes behind sunglasses cannot be read: not counted when either image has sunglasses.
        if (f === 'eyes' && (before.glasses === 'sunglasses' || after.glasses === 'sunglasses')) continue;
        kept++;
        if (before[f] === after[f]) same++;
        else changed.push(f);
      }
      gain += (await this.clipScore(r.edited, p.prompt)) - (await this.clipScore(r.original, p.prompt));
      l2 += r.l2;
      details.push({ seed, success: after[p.family] === p.value, changed, before, after });
      if (images.length < keepImages) images.push({ original: r.original.slice(), edited: r.edited.slice() });
    }
    const n = details.length;
    const successes = details.filter((d) => d.success).length;
    return {
      method,
      prompt: p.prompt,
      kind: p.kind,
      edited: n,
      successes,
      success: n ? successes / n : Number.NaN,
      preservation: kept ? same / kept : Number.NaN,
      clipGain: n ? gain / n : Number.NaN,
      l2: n ? l2 / n : Number.NaN,
      details,
      images,
    };
  }

  /** Global directions (StyleSpace): s + α·Δs with Δs from fs3 and the text direction. */
  async globalDirections(prompts: readonly SemanticPrompt[], o: SemanticOptions): Promise<PromptResult[]> {
    const W = this.G.weights;
    const fs3 = loadFs3(join(this.dir, WORLD_FILES.fs3[0]), W.config, this.clip.config.embedDim);
    const compute = async () => (await sampleStyleStats(W, { samples: o.statsSamples })).stats;
    const stats =
      (o.cacheStats ?? true)
        ? (
            await cachedStyleStats(
              join(this.dir, WORLD_FILES.generator[0]),
              W.config,
              o.statsSamples,
              compute,
            )
          ).stats
        : await compute();
    const editor = new GlobalEditor(W, this.encoder, fs3.data, stats);
    const out: PromptResult[] = [];
    for (const p of prompts) {
      const boundary = editor.boundary(await editor.direction(p.prompt, o.neutral), o.beta);
      out.push(
        await this.measure('global', p, o.seeds, o.psi, o.limit, o.keepImages ?? 0, async (w) => {
          const codes = await stylesFromWplus(W, w, 1);
          const original = await renderStyles(W, codes, 1);
          const edited = await renderStyles(W, applyBoundary(codes, boundary.delta, [o.alpha]), 1);
          let ss = 0;
          for (const d of boundary.delta) for (const v of d) ss += (o.alpha * v) ** 2;
          return { original, edited, l2: Math.sqrt(ss) };
        }),
      );
    }
    return out;
  }

  /** Latent mappers: w + 0.1·M_t(w), one trained mapper per prompt. Prompts without a mapper are skipped. */
  async mappers(prompts: readonly SemanticPrompt[], o: SemanticOptions): Promise<PromptResult[]> {
    const out: PromptResult[] = [];
    for (const p of prompts) {
      const file = join(this.dir, 'mappers', `${mapperSlug(p.mapper)}.pt`);
      if (!existsSync(file)) continue;
      const ap = await MapperApplier.create(loadMapper(file).weights, this.G.weights, { before: true });
      out.push(
        await this.measure('mapper', p, o.seeds, o.psi, o.limit, o.keepImages ?? 0, async (w) => {
          const r = await ap.run(w);
          let ss = 0;
          for (let i = 0; i < w.length; i++) ss += (r.edited[i] - w[i]) ** 2;
          return { original: r.before!, edited: r.image!, l2: Math.sqrt(ss) };
        }),
      );
    }
    return out;
  }

  /** Latent optimization in W+: CLIP loss + λ_L2‖w − w_s‖², `optSteps` Adam steps. */
  async optimization(prompts: readonly SemanticPrompt[], o: SemanticOptions): Promise<PromptResult[]> {
    const opt = await LatentOptimizer.create(
      { generator: this.G.weights, clip: this.clip },
      { steps: o.optSteps, l2Lambda: o.optL2 },
    );
    const out: PromptResult[] = [];
    for (const p of prompts) {
      const text = await promptFeatures(this.clip, p.prompt);
      out.push(
        await this.measure('optimization', p, o.seeds, o.psi, o.limit, o.keepImages ?? 0, async (w) => {
          const original = (await this.G.synthesize(w)).data as Float32Array;
          const r = await runOptimization(await opt.start(w, text));
          let ss = 0;
          for (let i = 0; i < w.length; i++) ss += (r.latent.data[i] - w[i]) ** 2;
          return { original, edited: r.final!.image, l2: Math.sqrt(ss) };
        }),
      );
    }
    await opt.release();
    return out;
  }

  run(method: Method, prompts: readonly SemanticPrompt[], o: SemanticOptions): Promise<PromptResult[]> {
    if (method === 'global') return this.globalDirections(prompts, o);
    if (method === 'mapper') return this.mappers(prompts, o);
    return this.optimization(prompts, o);
  }
}

const pct = (x: number) => (Number.isNaN(x) ? '–' : `${(100 * x).toFixed(0)} %`);
const fixed = (x: number, d: number) => (Number.isNaN(x) ? '–' : x.toFixed(d));

/** A Markdown table of one method's results, with the target it is held to. */
export function resultTable(method: Method, results: readonly PromptResult[]): string {
  const t = TARGETS[method];
  const lines = [
    `${method} (targets: success ≥ ${pct(t.colour)} colour, ≥ ${pct(t.structural)} structural${t.preservation ? `, preservation ≥ ${pct(t.preservation)}` : ''})`,
    '',
    `| prompt | kind | edited | success | preservation | CLIP gain | L2 (${method === 'global' ? 'S' : 'W+'}) |`,
    '|---|---|---:|---:|---:|---:|---:|',
    ...results.map(
      (r) =>
        `| ${r.prompt} | ${r.kind} | ${r.edited} | ${pct(r.success)} | ${pct(r.preservation)} | ${fixed(r.clipGain, 3)} | ${fixed(r.l2, 2)} |`,
    ),
  ];
  return lines.join('\n');
}

/**
 * What the server edits with: the loaded models, the gallery of latents, and the three StyleCLIP methods as
 * calls that take a gallery image and return PNGs. The HTTP layer (http.ts) validates and routes; this file
 * knows nothing about HTTP.
 *
 * Every engine call goes through one EngineLane, so renders never overlap (ONNX Runtime already uses every
 * core) and interactive renders overtake the steps of a running optimization.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, extname, join, resolve } from 'node:path';
import sharp from 'sharp';
import {
  type Boundary,
  GlobalEditor,
  globalBoundary,
  renderStyles,
  type StyleCodes,
  type StyleStats,
  sampleStyleStats,
  stylesFromWplus,
} from '../edit/global.js';
import { loadFs3, loadStyleStats } from '../edit/global-io.js';
import { MapperApplier } from '../edit/mapper/apply.js';
import { loadMapper } from '../edit/mapper/checkpoint.js';
import type { MapperWeights } from '../edit/mapper/model.js';
import { LatentOptimizer, type OptimizeConfig } from '../edit/optimize.js';
import { toUint8 } from '../io/image.js';
import { loadArcFace } from '../models/arcface/load.js';
import type { ArcFaceModel } from '../models/arcface/model.js';
import { ClipEncoder, ZeroDirectionError } from '../models/clip/encoder.js';
import { loadClip } from '../models/clip/load.js';
import type { ClipModel } from '../models/clip/model.js';
import { TextTooLongError, tokenize } from '../models/clip/tokenizer.js';
import { StyleGAN2, seededZ } from '../models/stylegan2/generator.js';
import { type LatentSet, readLatents } from '../models/stylegan2/latents.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import { type GeneratorWeights, makeConfig } from '../models/stylegan2/weights.js';
import { worldModelPath } from '../world/models.js';
import type { JobContext } from './jobs.js';
import { EngineLane } from './lane.js';
import type { GlobalEditRequest, MapperApplyRequest, OptimizeRequest } from './schema.js';

/** A request the client can fix: answered with this HTTP status and the message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface StudioModels {
  generator: GeneratorWeights;
  clip: ClipModel;
  /** [rows, E] over every non-toRGB StyleSpace channel (see loadFs3); global directions need it. */
  fs3?: Float32Array | null;
  /** StyleSpace channel statistics; computed from `statsSamples` samples when absent. */
  stats?: StyleStats | null;
  arcface?: ArcFaceModel | null;
  mappers?: Map<string, MapperWeights>;
  /** Gallery latents, W+ [N, L, D]. */
  latents?: LatentSet | null;
  /** Whether photo uploads are FFHQ-aligned unless the request says (default true). */
  photoAlign?: boolean;
}

export interface StudioOptions {
  /** Random seeds shown when there is no latents file (default 12). */
  seeds?: number;
  /** Preview render size for dragging (default 256; ignored when the generator is not larger). */
  previewSize?: number;
  /** Samples for the channel statistics when none are given (official: 100,000; default 2,000). */
  statsSamples?: number;
  /** zlib level of the PNGs (default 1: fast; the images are the payload). */
  pngLevel?: number;
}

export interface FileOptions {
  generator: string;
  clip: string;
  fs3?: string;
  stats?: string;
  arcface?: string;
  /** IR-SE units per stage, when the weights cannot tell (the fixture: 1,1,2,1). */
  arcfaceUnits?: number[];
  /** A directory of mapper .pt files, or one file. */
  mappers?: string;
  latents?: string;
}

export interface GalleryItem {
  id: string;
  label: string;
  source: 'latents' | 'seed' | 'upload';
}

export interface RenderedImage {
  /** data:image/png;base64,… */
  png: string;
  size: number;
}

/** Loads every file the server was started with; a bad file is an error that names it. */
export function loadModels(files: FileOptions, log: (s: string) => void = () => {}): StudioModels {
  const generator = loadGenerator(files.generator);
  log(`generator: ${files.generator} (${generator.config.size}², ${generator.source})`);
  const clip = loadClip(files.clip);
  log(`CLIP: ${files.clip}`);
  const fs3 = files.fs3 ? loadFs3(files.fs3, generator.config, clip.config.embedDim).data : null;
  if (files.fs3) log(`fs3: ${files.fs3}`);
  const stats = files.stats ? loadStyleStats(files.stats, generator.config) : null;
  const arcface = files.arcface ? loadArcFace(files.arcface, { stageUnits: files.arcfaceUnits }) : null;
  if (files.arcface) log(`ArcFace: ${files.arcface}`);
  const mappers = new Map<string, MapperWeights>();
  if (files.mappers) {
    const list = statSync(files.mappers).isDirectory()
      ? readdirSync(files.mappers)
          .filter((f) => /\.(pt|pth)$/i.test(f))
          .sort()
          .map((f) => join(files.mappers!, f))
      : [files.mappers];
    for (const f of list) {
      const name = basename(f).replace(/\.(pt|pth)$/i, '');
      try {
        mappers.set(name, loadMapper(f, { withDecoder: false }).weights);
        log(`mapper: ${name}`);
      } catch (e) {
        log(`skipping mapper ${f}: ${(e as Error).message}`);
      }
    }
    if (!mappers.size) log(`no mapper loaded from ${files.mappers}`);
  }
  const latents = files.latents
    ? readLatents(files.latents, generator.config.nLatent, generator.config.styleDim)
    : null;
  // The world's cartoon faces are not photos (face-api finds no face in them): with the world generator an
  // upload is used as it is unless the request asks for alignment.
  const world = worldModelPath('generator');
  const photoAlign = !(world && resolve(files.generator) === resolve(world));
  return { generator, clip, fs3, stats, arcface, mappers, latents, photoAlign };
}

/**
 * The weights of the first layers only, up to `size`²: synthesis stops there and the image is the toRGB skip
 * sum at that resolution, a faithful low-resolution preview at a fraction of the cost.
 */
export function previewWeights(w: GeneratorWeights, size: number): GeneratorWeights {
  const cfg = w.config;
  const logS = Math.log2(size);
  const channels = Object.fromEntries(Object.entries(cfg.channels).filter(([r]) => Number(r) <= size));
  const config = makeConfig(size, cfg.styleDim, cfg.nMlp, channels);
  return {
    ...w,
    config,
    convs: w.convs.slice(0, 2 * logS - 3),
    toRGBs: w.toRGBs.slice(0, logS - 1),
  };
}

const LRU = 64;

export class Studio {
  readonly lane = new EngineLane();
  readonly sg: StyleGAN2;
  readonly clipEncoder: ClipEncoder;
  private readonly gallery = new Map<string, { item: GalleryItem; wplus: Float32Array | null }>();
  private readonly codes = new Map<string, StyleCodes>();
  private readonly originals = new Map<string, RenderedImage>();
  private readonly uploads: string[] = [];
  private stats: StyleStats | null;
  private editor: GlobalEditor | null = null;
  private readonly preview: GeneratorWeights | null;
  private readonly appliers = new Map<string, Promise<MapperApplier>>();
  private readonly optimizers = new Map<string, Promise<LatentOptimizer>>();
  private uploadCount = 0;
  private readonly directions = new Map<string, Float32Array>();

  constructor(
    readonly models: StudioModels,
    readonly options: StudioOptions = {},
  ) {
    this.sg = new StyleGAN2(models.generator);
    this.clipEncoder = new ClipEncoder(models.clip);
    this.stats = models.stats ?? null;
    const ps = options.previewSize ?? 256;
    this.preview = models.generator.config.size > ps ? previewWeights(models.generator, ps) : null;
    const lat = models.latents;
    if (lat && lat.count > 0) {
      for (let i = 0; i < lat.count; i++)
        this.gallery.set(`latents:${i}`, {
          item: { id: `latents:${i}`, label: `${basename(lat.source)} #${i}`, source: 'latents' },
          wplus: lat.gather([i]),
        });
    } else
      for (let s = 0; s < (options.seeds ?? 12); s++)
        this.gallery.set(`seed:${s}`, {
          item: { id: `seed:${s}`, label: `seed ${s}`, source: 'seed' },
          wplus: null,
        });
  }

  get config() {
    return this.models.generator.config;
  }

  info() {
    const c = this.config;
    return {
      generator: {
        size: c.size,
        nLatent: c.nLatent,
        styleDim: c.styleDim,
        source: this.models.generator.source,
      },
      previewSize: this.preview?.config.size ?? null,
      clip: { embedDim: this.models.clip.config.embedDim },
      global: Boolean(this.models.fs3),
      arcface: Boolean(this.models.arcface),
      mappers: [...(this.models.mappers?.keys() ?? [])],
      photoAlign: this.photoAlign,
    };
  }

  /** Whether a photo upload is FFHQ-aligned when its request does not say (loadModels decides; default true). */
  get photoAlign(): boolean {
    return this.models.photoAlign ?? true;
  }

  list(): GalleryItem[] {
    return [...this.gallery.values()].map((g) => g.item);
  }

  /** W+ [1, L, D] of a gallery image; `seed:N` works for any N (official sampling, ψ 0.7 on 8 rows). */
  async wplus(id: string): Promise<Float32Array> {
    const entry = this.gallery.get(id);
    if (entry?.wplus) return entry.wplus;
    const m = /^seed:(\d+)$/.exec(id);
    if (!m) throw new ApiError(404, `no image "${id}" in the gallery (GET /api/gallery lists them)`);
    if (Number(m[1]) > 0xffffffff)
      throw new ApiError(400, `image: seeds go from 0 to 4294967295, not ${m[1]}`);
    const D = this.config.styleDim;
    const w = await this.lane.run('interactive', () => this.sg.mapping(seededZ(Number(m[1]), 1, D)));
    const wplus = await this.lane.run('interactive', () =>
      this.sg.toWPlus(w, [1, D], { psi: 0.7, cutoff: Math.min(8, this.config.nLatent) }),
    );
    if (entry) entry.wplus = wplus;
    return wplus;
  }

  private async stylesOf(id: string): Promise<StyleCodes> {
    let s = this.codes.get(id);
    if (!s) {
      const wplus = await this.wplus(id);
      s = await this.lane.run('interactive', () => stylesFromWplus(this.models.generator, wplus, 1));
      remember(this.codes, id, s);
    }
    return s;
  }

  /** RGB PNG of a [1, 3, S, S] image in the generator's range, as a data URL. */
  async png(img: Float32Array, size: number): Promise<RenderedImage> {
    const u8 = toUint8({ dtype: 'float32', shape: [1, 3, size, size], data: img });
    const buf = await sharp(u8.data, { raw: { width: size, height: size, channels: 3 } })
      .png({ compressionLevel: this.options.pngLevel ?? 1, adaptiveFiltering: false })
      .toBuffer();
    return { png: `data:image/png;base64,${buf.toString('base64')}`, size };
  }

  /** The unedited image (cached). */
  async original(id: string): Promise<RenderedImage> {
    const hit = this.originals.get(id);
    if (hit) return hit;
    const codes = await this.stylesOf(id);
    const img = await this.lane.run('interactive', () => renderStyles(this.models.generator, codes, 1));
    const out = await this.png(img, this.config.size);
    remember(this.originals, id, out);
    return out;
  }

  // --- global directions -----------------------------------------------------------------------------

  private async channelStats(): Promise<StyleStats> {
    if (!this.stats) {
      const samples = this.options.statsSamples ?? 2000;
      const r = await this.lane.run('interactive', () =>
        sampleStyleStats(this.models.generator, { samples, batch: Math.min(samples, 250) }),
      );
      this.stats = r.stats;
    }
    return this.stats;
  }

  /** Computes the channel statistics now (the server does it at start so the first edit is fast). */
  async warmUp(): Promise<void> {
    if (this.models.fs3) await this.channelStats();
  }

  private async globalEditor(): Promise<GlobalEditor> {
    if (!this.models.fs3)
      throw new ApiError(409, 'global directions need an fs3 file: start the server with --fs3 fs3.npy');
    if (!this.editor)
      this.editor = new GlobalEditor(
        this.models.generator,
        this.clipEncoder,
        this.models.fs3,
        await this.channelStats(),
      );
    return this.editor;
  }

  /** Each text fits CLIP's context; an error names its field, as every 400 does (`prompt: …`). */
  private checkText(fields: Record<string, string>): void {
    for (const [field, text] of Object.entries(fields))
      try {
        tokenize([text], { contextLength: this.models.clip.config.contextLength });
      } catch (e) {
        if (e instanceof TextTooLongError)
          throw new ApiError(
            400,
            `${field}: ${e.message.replace(/; shorten it or truncate it$/, '; shorten it')}`,
          );
        throw e;
      }
  }

  async boundary(target: string, neutral: string, beta: number): Promise<Boundary> {
    const ed = await this.globalEditor();
    this.checkText({ target, neutral });
    // A known direction needs no engine call, so the channel count never waits behind a render. The
    // directions are kept here (LRU), not in the editor, whose own cache would grow with every new text.
    const key = `${target}\0${neutral}`;
    let dt = this.directions.get(key);
    if (!dt) {
      try {
        dt = await this.lane.run('interactive', () => this.clipEncoder.textDirection(target, neutral));
      } catch (e) {
        if (e instanceof ZeroDirectionError) throw new ApiError(400, `target: ${e.message}`);
        throw e;
      }
      remember(this.directions, key, dt);
    }
    return globalBoundary(ed.fs3, dt, ed.stats.std, this.config, beta);
  }

  async globalEdit(r: GlobalEditRequest, signal?: AbortSignal) {
    const t0 = performance.now();
    const b = await this.boundary(r.target, r.neutral, r.beta);
    const codes = await this.stylesOf(r.image);
    const useP = r.preview && this.preview ? this.preview : this.models.generator;
    const n = useP.config.styleDims.length;
    const moved = codes.slice(0, n).map((s, i) => {
      const out = new Float32Array(s.length);
      const a = Math.fround(r.alpha);
      for (let j = 0; j < s.length; j++) out[j] = s[j] + Math.fround(a * b.delta[i][j]);
      return out;
    });
    if (signal?.aborted) throw new ApiError(499, 'the client went away');
    const img = await this.lane.run('interactive', async () => {
      if (signal?.aborted) throw new ApiError(499, 'the client went away');
      return renderStyles(useP, moved, 1);
    });
    const t1 = performance.now();
    const after = await this.png(img, useP.config.size);
    return {
      numChannels: b.numChannels,
      image: after.png,
      size: after.size,
      preview: useP !== this.models.generator,
      before: r.before ? (await this.original(r.image)).png : undefined,
      timing: { renderMs: Math.round(t1 - t0), totalMs: Math.round(performance.now() - t0) },
    };
  }

  // --- mappers -----------------------------------------------------------------------------------------

  private applier(name: string): Promise<MapperApplier> {
    const w = this.models.mappers?.get(name);
    if (!w)
      throw new ApiError(404, `no mapper "${name}" (loaded: ${this.info().mappers.join(', ') || 'none'})`);
    let a = this.appliers.get(name);
    if (!a) {
      a = MapperApplier.create(w, this.models.generator, { batch: 1 });
      a.catch(() => this.appliers.delete(name));
      this.appliers.set(name, a);
    }
    return a;
  }

  async mapperApply(r: MapperApplyRequest) {
    const applier = this.applier(r.mapper);
    const wplus = await this.wplus(r.image);
    const out = await this.lane.run('interactive', async () => (await applier).run(wplus, r.strength));
    const after = await this.png(out.image!, this.config.size);
    return {
      image: after.png,
      size: after.size,
      before: r.before ? (await this.original(r.image)).png : undefined,
    };
  }

  // --- latent optimization -----------------------------------------------------------------------------

  /**
   * Checks what a job needs before it is queued, so a bad request is a 4xx, not a failed job; returns the
   * request with its defaults filled in (edit mode without an image starts from seed:0, as the CLI does).
   */
  validateOptimize(body: OptimizeRequest): OptimizeRequest {
    const r = body.mode === 'edit' && !body.image ? { ...body, image: 'seed:0' } : body;
    if (r.mode === 'free' && r.idLambda > 0)
      throw new ApiError(
        400,
        'idLambda: the ID loss applies in edit mode only (free mode has no image to keep)',
      );
    if (r.mode === 'free' && body.image)
      throw new ApiError(
        400,
        'image: free mode starts from the mean latent; leave image out or use mode "edit"',
      );
    if (r.mode === 'edit' && r.idLambda > 0 && !this.models.arcface)
      throw new ApiError(
        409,
        'idLambda > 0 needs ArcFace weights: start the server with --arcface model_ir_se50.pth',
      );
    if (r.image && !this.gallery.has(r.image) && !/^seed:/.test(r.image))
      throw new ApiError(404, `no image "${r.image}" in the gallery`);
    this.checkText({ prompt: r.prompt });
    return r;
  }

  private optimizer(cfg: OptimizeConfig): Promise<LatentOptimizer> {
    const useId = cfg.mode === 'edit' && (cfg.idLambda ?? 0) > 0;
    const key = JSON.stringify(cfg);
    let o = this.optimizers.get(key);
    if (!o) {
      o = LatentOptimizer.create(
        {
          generator: this.models.generator,
          clip: this.models.clip,
          arcface: useId ? (this.models.arcface ?? undefined) : undefined,
        },
        cfg,
      );
      o.catch(() => this.optimizers.delete(key));
      this.optimizers.set(key, o);
    }
    return o;
  }

  /** The body of an optimization job: steps interleave with interactive renders on the lane. */
  async optimize(r: OptimizeRequest, ctx: JobContext): Promise<Record<string, unknown>> {
    const cfg: OptimizeConfig = {
      mode: r.mode,
      space: r.space,
      steps: r.steps,
      lr: r.lr,
      l2Lambda: r.l2Lambda,
      idLambda: r.idLambda,
    };
    const bg = <T>(fn: () => Promise<T>) => this.lane.run('background', fn);
    const opt = await bg(() => this.optimizer(cfg));
    const features = await bg(() => this.clipEncoder.encodeTexts([r.prompt]));
    const init =
      r.mode === 'free' || !r.image
        ? await this.sg.toWPlus(await this.sg.meanLatent(), [1, this.config.styleDim])
        : await this.wplus(r.image);
    const run = await bg(() => opt.start(init, features.slice()));
    const size = this.config.size;
    const every = r.imageEvery ?? Math.max(1, Math.round(r.steps / 10));
    const image = async (img: Float32Array) => (await this.png(img, size)).png;
    while (run.stepsDone < r.steps && !ctx.cancelled) {
      const s = await bg(() => run.step());
      // s.image is G of the latent this step started from: the result of s.step steps.
      const show = s.step === 0 || (every > 0 && s.step % every === 0);
      ctx.emit({
        type: 'progress',
        step: s.step + 1,
        steps: r.steps,
        loss: s.loss,
        clip: s.clip,
        l2: s.l2,
        id: s.id,
        lr: s.lr,
        ...(show ? { image: await image(s.image), imageStep: s.step } : {}),
      });
    }
    // A cancelled job keeps what it reached, as the CLI does on Ctrl-C: its image, and its W+ in the gallery.
    const stopped = ctx.cancelled;
    const final = await bg(() => run.evaluate());
    // A W+ result joins the gallery, so it can be edited further (global directions, mappers).
    let added: GalleryItem | null = null;
    if (run.wplus && run.stepsDone > 0) {
      const item: GalleryItem = {
        id: `upload:opt${++this.uploadCount}:0`,
        label: `optimized${stopped ? ` (${run.stepsDone} of ${r.steps} steps)` : ''}: ${r.prompt}`,
        source: 'upload',
      };
      this.gallery.set(item.id, { item, wplus: run.wplus.slice() });
      this.trackUpload(item.id.split(':')[1]);
      added = item;
    }
    return {
      steps: run.stepsDone,
      stopped,
      added,
      image: await image(final.image),
      losses: { loss: final.loss, clip: final.clip, l2: final.l2, id: final.id },
    };
  }

  // --- uploads ------------------------------------------------------------------------------------------

  /** Adds the latents of an uploaded .npy/.pt file to the gallery. */
  addUpload(name: string, bytes: Uint8Array, maxImages: number): GalleryItem[] {
    const dir = mkdtempSync(join(tmpdir(), 'styleclip-upload-'));
    const file = join(dir, `upload${extname(name).toLowerCase()}`);
    let lat: LatentSet;
    try {
      writeFileSync(file, bytes);
      lat = readLatents(file, this.config.nLatent, this.config.styleDim);
    } catch (e) {
      const msg = (e as Error).message.replaceAll(file, name);
      throw new ApiError(400, `could not read ${name}: ${msg}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    if (lat.count > maxImages)
      throw new ApiError(413, `${name} holds ${lat.count} latents; the limit is ${maxImages}`);
    const uid = `u${++this.uploadCount}`;
    const items: GalleryItem[] = [];
    for (let i = 0; i < lat.count; i++) {
      const item: GalleryItem = { id: `upload:${uid}:${i}`, label: `${name} #${i}`, source: 'upload' };
      this.gallery.set(item.id, { item, wplus: lat.gather([i]) });
      items.push(item);
    }
    this.trackUpload(uid);
    return items;
  }

  /** Keeps the gallery bounded: the oldest upload (or optimization result) goes when there are more than 16. */
  private trackUpload(uid: string): void {
    this.uploads.push(uid);
    if (this.uploads.length > 16) {
      const old = this.uploads.shift()!;
      for (const k of [...this.gallery.keys()])
        if (k.startsWith(`upload:${old}:`)) {
          this.gallery.delete(k);
          this.codes.delete(k);
          this.originals.delete(k);
        }
    }
  }
}

function remember<V>(m: Map<string, V>, k: string, v: V): void {
  m.delete(k);
  m.set(k, v);
  if (m.size > LRU) m.delete(m.keys().next().value as string);
}

/**
 * Training a mapper for one prompt (mapper/training/coach.py): batches of W+ latents, one graph run per
 * step for the losses and every parameter's gradient, Ranger (or Adam) on the host, validation on the test
 * latents every `valInterval` steps with the best checkpoint kept, periodic checkpoints, image grids of
 * [x; x_hat] and a JSON-lines metrics log.
 *
 * Differences from the reference, on purpose: steps are counted 1..N (the reference runs N+1 updates,
 * 0..N); validation uses at most `valSamples` test latents in batches of `batch` (the reference: 201
 * batches of 1); and every periodic checkpoint also stores the optimizer state, the step, the best
 * validation loss and the data seed (`train_state`), so `resume` continues to the same numbers.
 *
 * Layout of `outDir`: checkpoints/iteration_N.pt (official layout + train_state), checkpoints/best_model.pt
 * (official layout), checkpoints/best_mapper.pt (mapper only), logs/metrics.jsonl,
 * logs/images_train/NNNNN.jpg, logs/images_val/NNNNN.jpg.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../io/atomic.js';
import { writeImage } from '../../io/image.js';
import { isTensor, type Tensor } from '../../io/tensor.js';
import type { LatentSet } from '../../models/stylegan2/latents.js';
import { Adam, type OptimizerStateJSON, optimizerFromState, type Param, Ranger } from '../optim.js';
import { type Opts, rosinalityStateDict, saveMapper } from './checkpoint.js';
import { BatchOrder } from './data.js';
import { type Lambdas, type LossModels, type LossValues, MapperObjective, MapperTargets } from './loss.js';
import { MapperError, type MapperWeights } from './model.js';

export interface TrainOptions {
  outDir: string;
  /** The text prompt (opts.description). */
  prompt: string;
  steps: number;
  batch: number;
  /**
   * Run the batch in chunks of this size (same losses and gradients, less memory). Default: the whole
   * batch up to 256², else 1.
   */
  microBatch?: number;
  lr: number;
  optim: 'ranger' | 'adam';
  lambdas: Lambdas;
  valInterval: number;
  saveInterval: number;
  /** Train image grids every N steps (and at step 1). */
  imageInterval: number;
  /** Train metrics every N steps (and at step 1). */
  logInterval: number;
  /** At most this many test latents per validation. */
  valSamples: number;
  /** Seeds the batch order (and the sampled datasets, chosen by the caller). */
  seed: number;
  /** Extra official opts to record (paths, sizes). */
  opts?: Opts;
}

export interface TrainData {
  train: LatentSet;
  test: LatentSet;
}

interface TrainStateFile {
  format: 'styleclip-ts/mapper-train/1';
  step: number;
  seed: number;
  best_val_loss: number | null;
  optimizer: unknown;
  train_count: number;
  batch: number;
}

export interface StepInfo {
  step: number;
  losses: LossValues;
  val?: LossValues;
  seconds: number;
}

const pad5 = (n: number) => String(n).padStart(5, '0');

/** Optimizer state with Float32 tensors instead of number arrays, for torch files (and back). */
function stateToTensors(json: OptimizerStateJSON, shapes: Map<string, number[]>): unknown {
  const state: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(json.state)) {
    const shape = shapes.get(name) ?? [s.expAvg.length];
    const t = (a: number[]): Tensor => ({ dtype: 'float32', shape, data: Float32Array.from(a) });
    state[name] = {
      step: s.step,
      exp_avg: t(s.expAvg),
      exp_avg_sq: t(s.expAvgSq),
      ...(s.slow ? { slow: t(s.slow) } : {}),
    };
  }
  return { kind: json.kind, options: json.options, state };
}

function stateFromTensors(v: unknown): OptimizerStateJSON {
  const o = v as { kind: 'adam' | 'ranger'; options: never; state: Record<string, Record<string, unknown>> };
  if (!o || (o.kind !== 'adam' && o.kind !== 'ranger'))
    throw new MapperError('checkpoint has no optimizer state');
  const arr = (t: unknown) => {
    if (!isTensor(t)) throw new MapperError('optimizer state holds a non-tensor');
    return Array.from(t.data as Float32Array);
  };
  const state: OptimizerStateJSON['state'] = {};
  for (const [name, s] of Object.entries(o.state)) {
    state[name] = {
      step: Number(s.step),
      expAvg: arr(s.exp_avg),
      expAvgSq: arr(s.exp_avg_sq),
      ...(s.slow !== undefined ? { slow: arr(s.slow) } : {}),
    };
  }
  const options = { ...(o.options as Record<string, unknown>) };
  if (Array.isArray(options.betas)) options.betas = options.betas.map(Number);
  return { kind: o.kind, options, state } as OptimizerStateJSON;
}

export class MapperTrainer {
  step = 0;
  bestValLoss: number | null = null;
  private objective!: MapperObjective;
  private validator: MapperObjective | null = null;
  private targets!: MapperTargets;
  /** ID target features per latent index: G(w) depends on w only, so it is rendered once per latent. */
  private readonly targetCache = {
    train: new Map<number, Float32Array>(),
    test: new Map<number, Float32Array>(),
  };
  private optimizer: Adam | Ranger;
  private readonly params: Param[];
  private readonly order: BatchOrder;
  private readonly decoder: Map<string, Tensor> | null;

  private constructor(
    readonly weights: MapperWeights,
    readonly models: LossModels & { decoderTensors?: Map<string, Tensor> },
    readonly data: TrainData,
    readonly options: TrainOptions,
  ) {
    const o = options;
    if (!(o.batch >= 1)) throw new MapperError('the batch size must be at least 1');
    this.optimizer = o.optim === 'adam' ? new Adam({ lr: o.lr }) : new Ranger({ lr: o.lr });
    this.params = [...weights.params].map(([name, p]) => ({
      name,
      data: p.data,
      grad: new Float32Array(p.data.length),
      shape: p.shape,
    }));
    this.order = new BatchOrder(data.train.count, o.batch, o.seed);
    let dec: Map<string, Tensor> | null = models.decoderTensors ?? null;
    if (!dec) {
      try {
        dec = rosinalityStateDict(models.generator);
      } catch {
        dec = null; // e.g. NVIDIA conv_clamp: checkpoints are then mapper-only
      }
    }
    this.decoder = dec;
  }

  /** Compiles the training graph; `resume` restores step, optimizer state and best loss from a checkpoint. */
  static async create(
    weights: MapperWeights,
    models: LossModels & { decoderTensors?: Map<string, Tensor> },
    data: TrainData,
    options: TrainOptions,
    resume?: unknown,
  ): Promise<MapperTrainer> {
    const t = new MapperTrainer(weights, models, data, options);
    if (resume !== undefined && resume !== null) t.restore(resume);
    t.objective = await MapperObjective.create(weights, models, {
      batch: options.batch,
      microBatch: t.microBatch(options.batch),
      lambdas: options.lambdas,
      targets: true,
    });
    t.targets = await MapperTargets.create(models, { microBatch: 1, features: options.lambdas.id > 0 });
    mkdirSync(join(options.outDir, 'checkpoints'), { recursive: true });
    mkdirSync(join(options.outDir, 'logs', 'images_train'), { recursive: true });
    mkdirSync(join(options.outDir, 'logs', 'images_val'), { recursive: true });
    t.trimMetrics();
    return t;
  }

  private restore(v: unknown): void {
    const s = v as TrainStateFile;
    if (s?.format !== 'styleclip-ts/mapper-train/1')
      throw new MapperError(
        'this checkpoint has no training state to resume from (use an iteration_N.pt written by `styleclip mapper train`)',
      );
    if (Number(s.batch) !== this.options.batch)
      throw new MapperError(`the checkpoint was trained with batch ${s.batch}, not ${this.options.batch}`);
    if (Number(s.train_count) !== this.data.train.count)
      throw new MapperError(
        `the checkpoint was trained on ${s.train_count} latents, this run has ${this.data.train.count}: use the same training latents`,
      );
    if (Number(s.seed) !== this.options.seed)
      throw new MapperError(`the checkpoint used seed ${s.seed}, not ${this.options.seed}`);
    const json = stateFromTensors(s.optimizer);
    if (json.kind !== this.options.optim)
      throw new MapperError(`the checkpoint was trained with ${json.kind}, not ${this.options.optim}`);
    this.optimizer = optimizerFromState(json);
    this.optimizer.lr = this.options.lr;
    this.step = Number(s.step);
    this.bestValLoss =
      s.best_val_loss === null || s.best_val_loss === undefined ? null : Number(s.best_val_loss);
  }

  private get metricsFile(): string {
    return join(this.options.outDir, 'logs', 'metrics.jsonl');
  }

  /** On resume, drop metrics logged after the checkpoint's step (they will be logged again). */
  private trimMetrics(): void {
    const f = this.metricsFile;
    if (!existsSync(f)) return;
    const keep = readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => {
        if (!l.trim()) return false;
        try {
          return (JSON.parse(l) as { step: number }).step <= this.step;
        } catch {
          return false;
        }
      });
    writeFileSync(f, keep.map((l) => `${l}\n`).join(''));
  }

  private log(record: Record<string, unknown>): void {
    appendFileSync(this.metricsFile, `${JSON.stringify(record)}\n`);
  }

  private async grid(file: string, x: Float32Array, xHat: Float32Array, n: number): Promise<void> {
    const s = this.models.generator.config.size;
    const data = new Float32Array(2 * n * 3 * s * s);
    data.set(x.subarray(0, n * 3 * s * s));
    data.set(xHat.subarray(0, n * 3 * s * s), n * 3 * s * s);
    await writeImage(file, { dtype: 'float32', shape: [2 * n, 3, s, s], data }, { cols: n, quality: 90 });
  }

  private renders = 0;
  /** Latents rendered for ID targets or grids during training steps (each latent once, plus grids). */
  get trainRenders(): number {
    return this.renders;
  }

  /** The trainer's default micro-batch: the whole batch up to 256², else 1 (see TrainOptions.microBatch). */
  private microBatch(batch: number): number {
    const m = this.options.microBatch ?? (this.models.generator.config.size <= 256 ? batch : 1);
    return batch % m === 0 ? m : 1;
  }

  /**
   * The ID target features of latents `idx` (from the cache, or rendered now and cached), and x = G(w)
   * when `images` asks for it (for grids).
   */
  private async targetsFor(
    split: 'train' | 'test',
    idx: readonly number[],
    w: Float32Array,
    images: boolean,
  ): Promise<{ features?: Float32Array; x?: Float32Array }> {
    const cache = this.targetCache[split];
    const withFeatures = this.options.lambdas.id > 0;
    let x: Float32Array | undefined;
    if (images || (withFeatures && idx.some((i) => !cache.has(i)))) {
      if (split === 'train') this.renders += idx.length;
      const r = await this.targets.compute(w);
      x = r.x;
      const d = r.features.length / idx.length;
      if (withFeatures)
        idx.forEach((i, k) => {
          cache.set(i, r.features.slice(k * d, (k + 1) * d));
        });
    }
    if (!withFeatures) return { x };
    const d = cache.get(idx[0])!.length;
    const features = new Float32Array(idx.length * d);
    idx.forEach((i, k) => {
      features.set(cache.get(i)!, k * d);
    });
    return { features, x };
  }

  /** One optimizer step on batch `this.step`; returns the losses measured before the update. */
  async trainStep(): Promise<StepInfo> {
    const t0 = performance.now();
    const o = this.options;
    const idx = this.order.indices(this.step);
    const w = this.data.train.gather(idx);
    const images = (this.step + 1) % o.imageInterval === 0 || this.step === 0;
    const target = await this.targetsFor('train', idx, w, images);
    const r = await this.objective.run(this.weights.params, w, target.features);
    for (const p of this.params) {
      const gr = r.grads.get(p.name);
      if (!gr) throw new MapperError(`no gradient for ${p.name}`);
      p.grad = gr;
    }
    this.optimizer.step(this.params);
    this.step++;
    const info: StepInfo = { step: this.step, losses: r.losses, seconds: (performance.now() - t0) / 1000 };
    if (this.step % o.logInterval === 0 || this.step === 1)
      this.log({ split: 'train', step: this.step, ...r.losses, seconds: info.seconds });
    if (images)
      await this.grid(
        join(o.outDir, 'logs', 'images_train', `${pad5(this.step)}.jpg`),
        target.x!,
        r.xHat,
        o.batch,
      );
    return info;
  }

  /** Mean losses over (at most `valSamples`) test latents; writes a grid of the first batch. */
  async validate(): Promise<LossValues> {
    const o = this.options;
    const test = this.data.test;
    const b = Math.min(o.batch, test.count);
    this.validator ??= await MapperObjective.create(this.weights, this.models, {
      batch: b,
      microBatch: this.microBatch(b),
      lambdas: o.lambdas,
      grads: false,
      targets: true,
    });
    const batches = Math.max(1, Math.floor(Math.min(o.valSamples, test.count) / b));
    const sum: LossValues = { loss: 0, loss_id: 0, loss_clip: 0, loss_l2_latent: 0 };
    for (let k = 0; k < batches; k++) {
      const idx = Array.from({ length: b }, (_, i) => k * b + i);
      const w = test.gather(idx);
      const target = await this.targetsFor('test', idx, w, k === 0);
      const r = await this.validator.run(this.weights.params, w, target.features);
      for (const key of Object.keys(sum) as (keyof LossValues)[]) sum[key] += r.losses[key];
      if (k === 0)
        await this.grid(join(o.outDir, 'logs', 'images_val', `${pad5(this.step)}.jpg`), target.x!, r.xHat, b);
    }
    for (const key of Object.keys(sum) as (keyof LossValues)[]) sum[key] /= batches;
    this.log({ split: 'test', step: this.step, ...sum, samples: batches * b });
    return sum;
  }

  private opts(): Opts {
    const o = this.options;
    return {
      ...o.opts,
      description: o.prompt,
      batch_size: o.batch,
      learning_rate: o.lr,
      optim_name: o.optim,
      id_lambda: o.lambdas.id,
      clip_lambda: o.lambdas.clip,
      latent_l2_lambda: o.lambdas.l2,
      stylegan_size: this.models.generator.config.size,
      max_steps: o.steps,
      val_interval: o.valInterval,
      save_interval: o.saveInterval,
      image_interval: o.imageInterval,
      board_interval: o.logInterval,
      exp_dir: o.outDir,
    };
  }

  /** The resume state stored in periodic checkpoints. */
  trainState(): TrainStateFile {
    const shapes = new Map(this.params.map((p) => [p.name, [...p.shape]]));
    return {
      format: 'styleclip-ts/mapper-train/1',
      step: this.step,
      seed: this.options.seed,
      best_val_loss: this.bestValLoss,
      optimizer: stateToTensors(this.optimizer.toJSON(), shapes),
      train_count: this.data.train.count,
      batch: this.options.batch,
    };
  }

  /** Writes checkpoints/iteration_N.pt (official layout + resume state); returns its path. */
  saveIteration(): string {
    const file = join(this.options.outDir, 'checkpoints', `iteration_${this.step}.pt`);
    saveMapper(file, this.weights, {
      opts: this.opts(),
      decoder: this.decoder ?? undefined,
      trainState: this.trainState(),
    });
    return file;
  }

  private saveBest(val: LossValues): void {
    const dir = join(this.options.outDir, 'checkpoints');
    saveMapper(join(dir, 'best_model.pt'), this.weights, {
      opts: this.opts(),
      decoder: this.decoder ?? undefined,
    });
    saveMapper(join(dir, 'best_mapper.pt'), this.weights, { opts: this.opts() });
    writeFileAtomic(
      join(dir, 'best.json'),
      new TextEncoder().encode(`${JSON.stringify({ step: this.step, ...val }, null, 1)}\n`),
    );
  }

  /**
   * Trains until `options.steps`. `shouldStop` is polled after every step (Ctrl-C): the trainer then
   * writes a checkpoint of the current step and returns. A crash loses at most the steps since the last
   * periodic checkpoint.
   */
  async train(
    hooks: { onStep?: (info: StepInfo) => void; shouldStop?: () => boolean } = {},
  ): Promise<{ step: number; interrupted: boolean; lastCheckpoint: string | null }> {
    const o = this.options;
    let last: string | null = null;
    while (this.step < o.steps) {
      const info = await this.trainStep();
      if (this.step % o.valInterval === 0 || this.step === o.steps) {
        const val = await this.validate();
        info.val = val;
        if (this.bestValLoss === null || val.loss < this.bestValLoss) {
          this.bestValLoss = val.loss;
          this.saveBest(val);
        }
      }
      if (this.step % o.saveInterval === 0 || this.step === o.steps) last = this.saveIteration();
      hooks.onStep?.(info);
      if (this.step < o.steps && hooks.shouldStop?.()) {
        last = this.saveIteration();
        return { step: this.step, interrupted: true, lastCheckpoint: last };
      }
    }
    return { step: this.step, interrupted: false, lastCheckpoint: last };
  }
}

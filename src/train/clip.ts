/**
 * Training CLIP by contrastive learning (Radford et al. 2021), one visible iteration at a time:
 *
 *   images, captions ← the next batch of pairs (a fresh permutation each epoch)
 *   loss, ∇ ← ClipStep (both towers, the symmetric cross-entropy, every weight's gradient)
 *   lr ← warm-up then cosine decay;  AdamW step;  logit_scale clamped to [0, ln 100]
 *
 * Weights live here as float32 arrays under OpenAI's state-dict keys; checkpoints are torch zip files
 * `{state_dict, optimizer, train_state}` that `loadClip` reads as a model (it unwraps `state_dict`), and
 * `model.pt` is the bare state dict (`clip.pt` in OpenAI's key layout).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BatchOrder } from '../edit/mapper/data.js';
import type { Param } from '../edit/optim.js';
import { saveSafetensors } from '../io/safetensors.js';
import { type Tensor, toFloat32 } from '../io/tensor.js';
import { loadTorch } from '../io/torch.js';
import { saveTorch } from '../io/torch-write.js';
import { openAIToHF } from '../models/clip/hf.js';
import {
  type ClipConfig,
  type ClipModel,
  clipNormalizationTensor,
  INPUT_NORMALIZATION_KEY,
} from '../models/clip/model.js';
import { tokenize } from '../models/clip/tokenizer.js';
import type { ClipDataset, ClipSample } from './clip-data.js';
import { AdamW, warmupCosineLr } from './clip-optim.js';
import { ClipFeatures, ClipStep, TABLE } from './clip-step.js';

const LN_100 = Math.fround(Math.log(100));

/** CLIP keeps exp(logit_scale) ≤ 100: the stored log-temperature is clamped to [0, ln 100] after each step. */
export function clampLogitScale(logitScale: Float32Array): void {
  logitScale[0] = Math.min(Math.max(logitScale[0], 0), LN_100);
}

export class ClipTrainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClipTrainError';
  }
}

export interface ClipTrainOptions {
  /** Checkpoints go to outDir/checkpoints, metrics to outDir/logs/metrics.jsonl. */
  outDir: string;
  /** Optimizer steps in all; the cosine decay ends at zero after the last. */
  steps: number;
  batch: number;
  lr: number;
  /** Linear warm-up steps. */
  warmup: number;
  /** AdamW's decoupled weight decay (matrices only). */
  weightDecay: number;
  betas?: [number, number];
  eps?: number;
  /** Seeds the batch order. */
  seed: number;
  /** Write a resumable checkpoint every N steps (0: only at the end and on interruption). */
  saveEvery: number;
  /** Keep only the newest N checkpoints this run wrote (0 or absent: keep all). */
  keep?: number;
  /** Append a train record to the metrics log every N steps (and at step 1). */
  logEvery: number;
  /** Run `evaluate` every N steps (and at the end); 0 for never. */
  evalEvery: number;
  /** Held-out measurements (zero-shot accuracy, ...) with the current weights; logged as split "eval". */
  evaluate?: (features: CurrentFeatures) => Promise<Record<string, number>>;
}

/** Encoders of the model as it is now, for evaluation hooks. */
export interface CurrentFeatures {
  readonly config: ClipConfig;
  /** [n, 3, R, R] CLIP-normalized pixels → [n, E] unit rows. */
  images(pixels: Float32Array, n: number): Promise<Float32Array>;
  /** → [n, E] unit rows. */
  texts(texts: readonly string[]): Promise<Float32Array>;
}

export interface ClipStepInfo {
  step: number;
  epoch: number;
  /** The batch's loss before the update. */
  loss: number;
  lr: number;
  /** exp(logit_scale) after the update. */
  scale: number;
  /** In-batch top-1 retrieval accuracy, image → text and text → image (before the update). */
  accImageToText: number;
  accTextToImage: number;
  seconds: number;
}

interface TrainState {
  format: 'styleclip-ts/clip-train/1';
  step: number;
  seed: number;
  batch: number;
  steps: number;
  dataset_length: number;
}

/** Top-1 accuracy of the diagonal over rows of [B, B] logits (and over columns when `columns`). */
function diagonalAccuracy(logits: Float32Array, b: number, columns: boolean): number {
  let hits = 0;
  for (let i = 0; i < b; i++) {
    let best = 0;
    for (let j = 1; j < b; j++) {
      const v = columns ? logits[j * b + i] : logits[i * b + j];
      const w = columns ? logits[best * b + i] : logits[i * b + best];
      if (v > w) best = j;
    }
    if (best === i) hits++;
  }
  return hits / b;
}

export class ClipTrainer {
  step = 0;
  readonly params: Param[];
  readonly model: ClipModel;
  private readonly stepper: ClipStep;
  private readonly optimizer: AdamW;
  private readonly order: BatchOrder;
  private features?: ClipFeatures;
  private prefetched?: { step: number; batch: Promise<{ images: Float32Array; tokens: Int32Array }> };

  constructor(
    model: ClipModel,
    readonly data: ClipDataset,
    readonly options: ClipTrainOptions,
  ) {
    const o = options;
    if (!(Number.isInteger(o.batch) && o.batch >= 2))
      throw new ClipTrainError('the batch must hold at least 2 pairs (each pair is the others’ negative)');
    if (data.length < o.batch)
      throw new ClipTrainError(`the dataset has ${data.length} pairs, fewer than one batch of ${o.batch}`);
    if (!(Number.isInteger(o.steps) && o.steps >= 1)) throw new ClipTrainError('steps must be at least 1');
    this.model = model;
    this.stepper = new ClipStep(model);
    this.params = [...this.stepper.weightShapes].map(([name, shape]) => {
      const data = Float32Array.from(model.tensor(name).data);
      return { name, data, grad: new Float32Array(0), shape };
    });
    this.optimizer = new AdamW({ lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weightDecay });
    this.order = new BatchOrder(data.length, o.batch, o.seed);
    mkdirSync(join(o.outDir, 'checkpoints'), { recursive: true });
    mkdirSync(join(o.outDir, 'logs'), { recursive: true });
  }

  get epoch(): number {
    return Math.floor(this.step / this.order.perEpoch);
  }

  /** The token embedding table: its unread rows are decayed lazily (see AdamW.step). */
  private get table(): Param {
    return this.params.find((p) => p.name === TABLE)!;
  }

  /** Every weight current (the table's idle rows decayed): before anything reads them all. */
  private current(): void {
    this.optimizer.materialize(this.table);
  }

  private get weights(): Map<string, Float32Array> {
    return new Map(this.params.map((p) => [p.name, p.data]));
  }

  private get shapes(): Map<string, number[]> {
    return new Map(this.params.map((p) => [p.name, [...p.shape]]));
  }

  /** The images and tokens of batch `step`, fetched concurrently. */
  private async fetch(step: number): Promise<{ images: Float32Array; tokens: Int32Array }> {
    const idx = this.order.indices(step);
    const epoch = Math.floor(step / this.order.perEpoch);
    const r = this.model.config.imageResolution;
    const px = 3 * r * r;
    const samples: ClipSample[] = await Promise.all(idx.map((i) => this.data.get(i, epoch)));
    const images = new Float32Array(idx.length * px);
    samples.forEach((s, k) => {
      if (s.image.length !== px)
        throw new ClipTrainError(
          `sample ${idx[k]} has ${s.image.length} values; the model takes [3, ${r}, ${r}] = ${px}`,
        );
      images.set(s.image, k * px);
    });
    // Captions longer than the context are cut (OpenAI's tokenize(truncate=True)).
    return {
      images,
      tokens: tokenize(
        samples.map((s) => s.caption),
        { truncate: true },
      ),
    };
  }

  private batchFor(step: number) {
    const hit = this.prefetched?.step === step ? this.prefetched.batch : this.fetch(step);
    this.prefetched = undefined;
    return hit;
  }

  /** One optimizer step; the next batch is fetched while the graph runs. */
  async trainStep(): Promise<ClipStepInfo> {
    const t0 = performance.now();
    const o = this.options;
    const { images, tokens } = await this.batchFor(this.step);
    this.optimizer.materialize(this.table, new Set(tokens)); // the rows this batch reads
    const running = this.stepper.run(this.weights, images, tokens);
    if (this.step + 1 < o.steps) {
      const next = this.step + 1;
      const batch = this.fetch(next);
      batch.catch(() => {}); // reported when awaited
      this.prefetched = { step: next, batch };
    }
    const r = await running;
    if (!Number.isFinite(r.loss))
      throw new ClipTrainError(
        `the loss is ${r.loss} at step ${this.step + 1}; lower --lr or raise --warmup`,
      );
    for (const p of this.params) p.grad = r.grads.get(p.name)!;
    const lr = warmupCosineLr(this.step, o.steps, o.lr, o.warmup);
    this.optimizer.lr = lr;
    const rowSize = this.model.config.textWidth;
    this.optimizer.step(this.params, new Map([[TABLE, { rowSize, rows: this.stepper.lastRows }]]));
    const scale = this.params.find((p) => p.name === 'logit_scale')!.data;
    clampLogitScale(scale);
    for (const p of this.params) p.grad = new Float32Array(0);
    const epoch = this.epoch;
    this.step++;
    const b = o.batch;
    const info: ClipStepInfo = {
      step: this.step,
      epoch,
      loss: r.loss,
      lr,
      scale: Math.exp(scale[0]),
      accImageToText: diagonalAccuracy(r.logits, b, false),
      accTextToImage: diagonalAccuracy(r.logits, b, true),
      seconds: (performance.now() - t0) / 1000,
    };
    if (this.step % o.logEvery === 0 || this.step === 1) this.log({ split: 'train', ...info });
    return info;
  }

  /** Runs the evaluation hook with the current weights and logs its numbers. */
  async evaluate(): Promise<Record<string, number> | null> {
    if (!this.options.evaluate) return null;
    this.features ??= new ClipFeatures(this.model);
    this.current();
    const f = this.features;
    const weights = this.weights;
    const shapes = this.shapes;
    const res = await this.options.evaluate({
      config: this.model.config,
      images: (pixels, n) => f.encodeImages(weights, shapes, pixels, n),
      texts: (texts) => f.encodeTexts(weights, shapes, texts),
    });
    this.log({ split: 'eval', step: this.step, ...res });
    return res;
  }

  private get metricsFile(): string {
    return join(this.options.outDir, 'logs', 'metrics.jsonl');
  }

  private log(record: Record<string, unknown>): void {
    appendFileSync(this.metricsFile, `${JSON.stringify(record)}\n`);
  }

  /** On resume, drop metric lines logged after the checkpoint's step (they will be logged again). */
  private trimMetrics(): void {
    const f = this.metricsFile;
    if (!existsSync(f)) return;
    const keep = readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => {
        try {
          return l.trim() !== '' && (JSON.parse(l) as { step: number }).step <= this.step;
        } catch {
          return false;
        }
      });
    writeFileSync(f, keep.map((l) => `${l}\n`).join(''));
  }

  /** The weights as an OpenAI-layout state dict (float32 copies). */
  stateDict(): Map<string, Tensor> {
    this.current();
    const sd = new Map<string, Tensor>(
      this.params.map((p) => [
        p.name,
        { dtype: 'float32', shape: [...p.shape], data: Float32Array.from(p.data) },
      ]),
    );
    // Every dataset here feeds CLIP-normalized pixels; the mark makes the CLIP loss feed them so too.
    sd.set(INPUT_NORMALIZATION_KEY, clipNormalizationTensor());
    return sd;
  }

  private trainState(): TrainState {
    const o = this.options;
    return {
      format: 'styleclip-ts/clip-train/1',
      step: this.step,
      seed: o.seed,
      batch: o.batch,
      steps: o.steps,
      dataset_length: this.data.length,
    };
  }

  /** torch.optim's state_dict layout, keyed by parameter name instead of index. */
  private optimizerState(): unknown {
    const state: Record<string, unknown> = {};
    for (const p of this.params) {
      const s = this.optimizer.states.get(p.name);
      if (!s) continue;
      const t = (data: Float32Array): Tensor => ({ dtype: 'float32', shape: [...p.shape], data });
      state[p.name] = { step: s.step, exp_avg: t(s.expAvg), exp_avg_sq: t(s.expAvgSq) };
    }
    const o = this.optimizer;
    return {
      state,
      param_groups: [{ lr: o.lr, betas: [...o.betas], eps: o.eps, weight_decay: o.weightDecay }],
    };
  }

  /** A resumable checkpoint (loadClip reads it as a model too); returns its path. */
  saveCheckpoint(
    file = join(this.options.outDir, 'checkpoints', `clip_${String(this.step).padStart(6, '0')}.pt`),
  ): string {
    saveTorch(file, {
      state_dict: this.stateDict(),
      optimizer: this.optimizerState(),
      train_state: this.trainState(),
    });
    return file;
  }

  /** The bare model: a torch zip state dict (OpenAI keys), or Hugging Face safetensors for `.safetensors`. */
  saveModel(file: string): void {
    if (file.endsWith('.safetensors')) saveSafetensors(file, openAIToHF(this.stateDict()), { format: 'pt' });
    else saveTorch(file, this.stateDict());
  }

  /** Restores weights, optimizer moments and the step from a checkpoint written by `saveCheckpoint`. */
  resume(file: string): void {
    const ck = loadTorch(file);
    const st = (ck.value as { train_state?: Partial<TrainState> })?.train_state;
    if (st?.format !== 'styleclip-ts/clip-train/1')
      throw new ClipTrainError(
        `${file} holds no CLIP training state (use a checkpoints/clip_N.pt written by \`styleclip train clip\`; to start from plain weights use --init)`,
      );
    const o = this.options;
    if (Number(st.batch) !== o.batch)
      throw new ClipTrainError(`the checkpoint was trained with batch ${st.batch}, not ${o.batch}`);
    if (Number(st.seed) !== o.seed)
      throw new ClipTrainError(`the checkpoint used seed ${st.seed}, not ${o.seed}`);
    if (Number(st.dataset_length) !== this.data.length)
      throw new ClipTrainError(
        `the checkpoint was trained on ${st.dataset_length} pairs, this dataset has ${this.data.length}: use the same data`,
      );
    const tensors = ck.tensors;
    for (const p of this.params) {
      const w = tensors.get(`state_dict.${p.name}`);
      if (!w) throw new ClipTrainError(`${file}: missing state_dict.${p.name}`);
      const data = toFloat32(w).data;
      if (data.length !== p.data.length)
        throw new ClipTrainError(
          `${file}: state_dict.${p.name} has ${data.length} values, the model ${p.data.length}`,
        );
      p.data.set(data);
      const m = tensors.get(`optimizer.state.${p.name}.exp_avg`);
      const v = tensors.get(`optimizer.state.${p.name}.exp_avg_sq`);
      const stepOf = (ck.value as { optimizer: { state: Record<string, { step: number }> } }).optimizer.state[
        p.name
      ]?.step;
      if (m && v && stepOf !== undefined)
        this.optimizer.states.set(p.name, {
          step: Number(stepOf),
          expAvg: Float32Array.from(toFloat32(m).data),
          expAvgSq: Float32Array.from(toFloat32(v).data),
        });
    }
    this.step = Number(st.step);
    this.trimMetrics();
  }

  /**
   * Steps until `options.steps` or until `shouldStop` says so (checked after each step); checkpoints
   * every `saveEvery` steps and at the end (also when stopped), evaluates every `evalEvery` steps and at
   * the end, and writes the bare model to outDir/clip.pt when the run completes.
   */
  async train(
    hooks: {
      onStep?: (info: ClipStepInfo) => void;
      onEval?: (res: Record<string, number>) => void;
      shouldStop?: () => boolean;
    } = {},
  ): Promise<{ step: number; interrupted: boolean; lastCheckpoint: string; model?: string }> {
    const o = this.options;
    let lastCheckpoint = '';
    const saved: string[] = [];
    while (this.step < o.steps) {
      const info = await this.trainStep();
      hooks.onStep?.(info);
      const done = this.step >= o.steps;
      const stop = !done && (hooks.shouldStop?.() ?? false);
      if ((o.evalEvery > 0 && this.step % o.evalEvery === 0) || (done && o.evalEvery > 0)) {
        const res = await this.evaluate();
        if (res) hooks.onEval?.(res);
      }
      if ((o.saveEvery > 0 && this.step % o.saveEvery === 0) || done || stop) {
        lastCheckpoint = this.saveCheckpoint();
        saved.push(lastCheckpoint);
        // each holds the weights and both moments (~12 bytes a weight): keep the newest few
        while (o.keep && saved.length > o.keep) rmSync(saved.shift()!, { force: true });
      }
      if (stop) return { step: this.step, interrupted: true, lastCheckpoint };
    }
    const model = join(o.outDir, 'clip.pt');
    this.saveModel(model);
    return { step: this.step, interrupted: false, lastCheckpoint, model };
  }

  async release(): Promise<void> {
    await this.stepper.release();
    await this.features?.release();
  }
}

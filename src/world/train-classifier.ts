/**
 * Training the attribute classifier on an endless stream of freshly drawn faces: batch t holds the faces of
 * seeds TRAIN_BASE + t·B .. + B-1, so a resumed run sees exactly the data an uninterrupted one would, and no
 * image is seen twice. Held-out faces come from another seed range (HELD_OUT_BASE + i).
 *
 * One visible iteration: draw the batch (the next one is drawn while the graph runs), one graph run for
 * loss and gradients, Adam on the host. Learning rate: `lr` for the first 75 % of the steps, then lr/10.
 *
 * Layout of `outDir`: checkpoint.safetensors (float32 weights, Adam moments, step; rewritten atomically
 * every `saveEvery` steps and at the end), log.jsonl (loss per `logEvery` steps, held-out accuracy per
 * evaluation), classifier.safetensors (the float16 release file, written at the end).
 */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Adam, type OptimizerStateJSON, type Param as OptParam } from '../edit/optim.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../io/tensor.js';
import { MT19937 } from '../util/random.js';
import { FAMILY_NAMES, type Face, type Family, sampleFace } from './attributes.js';
import {
  AttributeClassifier,
  accuracy,
  type ClassifierConfig,
  ClassifierError,
  type ClassifierParams,
  ClassifierStep,
  DEFAULT_CLASSIFIER,
  initClassifier,
  saveClassifier,
} from './classifier.js';
import { renderFaces, toSignedNCHW } from './render.js';

export const TRAIN_BASE = 100_000_000;
export const HELD_OUT_BASE = 4_000_000_000;

export interface ClassifierTrainOptions {
  outDir: string;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  saveEvery: number;
  logEvery: number;
  /** Held-out faces measured at the end (and every `evalEvery` steps, when > 0). */
  evalCount: number;
  evalEvery: number;
  threads?: number;
  config?: ClassifierConfig;
  /**
   * Degrade each training face a little (see `degrade`), so that the classifier also reads a generator's
   * softer, noisier images. Off by default (the shipped classifier was trained without it).
   */
  augment?: boolean;
}

export type FamilyAccuracy = Record<Family, number>;

/** Faces and their NCHW [-1, 1] pixels for seeds `base .. base + n - 1`. */
export async function drawBatch(
  base: number,
  n: number,
  size: number,
): Promise<{ faces: Face[]; x: Float32Array }> {
  const faces = Array.from({ length: n }, (_, i) => sampleFace(base + i));
  const rgb = await renderFaces(faces, size, 2);
  return { faces, x: toSignedNCHW(rgb, n, size) };
}

/**
 * A generator's images are softer and noisier than the drawings: with probability 1/2 a 3×3 box blur mixed
 * in by a random amount, then Gaussian noise of σ up to 0.06, each drawn from `seed` (deterministic per
 * batch). In place on NCHW [-1, 1] images.
 */
export function degrade(x: Float32Array, n: number, size: number, seed: number): void {
  const mt = new MT19937(seed >>> 0);
  const u = () => (mt.nextUint32() >>> 5) / 134217728;
  const gauss = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  const hw = size * size;
  const tmp = new Float32Array(hw);
  for (let i = 0; i < n; i++) {
    const blur = u() < 0.5 ? u() : 0;
    const sigma = 0.06 * u();
    for (let c = 0; c < 3; c++) {
      const plane = x.subarray((i * 3 + c) * hw, (i * 3 + c + 1) * hw);
      if (blur > 0) {
        for (let y = 0; y < size; y++)
          for (let xx = 0; xx < size; xx++) {
            let acc = 0;
            for (let dy = -1; dy <= 1; dy++)
              for (let dx = -1; dx <= 1; dx++) {
                const yy = Math.min(size - 1, Math.max(0, y + dy));
                const xc = Math.min(size - 1, Math.max(0, xx + dx));
                acc += plane[yy * size + xc];
              }
            tmp[y * size + xx] = acc / 9;
          }
        for (let p = 0; p < hw; p++) plane[p] += blur * (tmp[p] - plane[p]);
      }
      if (sigma > 0)
        for (let p = 0; p < hw; p++) plane[p] = Math.min(1, Math.max(-1, plane[p] + sigma * gauss()));
    }
  }
}

/** Held-out accuracy per family (visible faces only), in batches of `batch`. */
export async function evaluateClassifier(
  clf: AttributeClassifier,
  count: number,
  batch = 100,
  base = HELD_OUT_BASE,
): Promise<FamilyAccuracy> {
  const totals = Object.fromEntries(FAMILY_NAMES.map((f) => [f, { correct: 0, total: 0 }])) as Record<
    Family,
    { correct: number; total: number }
  >;
  for (let i = 0; i < count; i += batch) {
    const n = Math.min(batch, count - i);
    const { faces, x } = await drawBatch(base + i, n, clf.config.size);
    const { labels } = await clf.predict(x, n);
    const a = accuracy(
      labels,
      faces.map((f) => f.labels),
    );
    for (const f of FAMILY_NAMES) {
      totals[f].correct += a[f].correct;
      totals[f].total += a[f].total;
    }
  }
  return Object.fromEntries(
    FAMILY_NAMES.map((f) => [f, totals[f].correct / Math.max(1, totals[f].total)]),
  ) as FamilyAccuracy;
}

interface CheckpointState {
  step: number;
  params: ClassifierParams;
  adam: Adam;
}

function saveCheckpoint(file: string, o: ClassifierTrainOptions, st: CheckpointState): void {
  const tensors = new Map<string, Tensor>();
  for (const [k, p] of st.params)
    tensors.set(`param.${k}`, { dtype: 'float32', shape: p.shape, data: p.data });
  const json = st.adam.toJSON();
  for (const [k, s] of Object.entries(json.state)) {
    const shape = st.params.get(k)!.shape;
    tensors.set(`adam.m.${k}`, { dtype: 'float32', shape, data: Float32Array.from(s.expAvg) });
    tensors.set(`adam.v.${k}`, { dtype: 'float32', shape, data: Float32Array.from(s.expAvgSq) });
  }
  const adamSteps = Object.fromEntries(Object.entries(json.state).map(([k, s]) => [k, s.step]));
  saveSafetensors(file, tensors, {
    format: 'styleclip-ts/world-classifier-train/1',
    step: String(st.step),
    augment: String(!!o.augment),
    seed: String(o.seed),
    batch: String(o.batch),
    adam_steps: JSON.stringify(adamSteps),
  });
}

function loadCheckpoint(file: string, o: ClassifierTrainOptions, config: ClassifierConfig): CheckpointState {
  const { tensors, metadata } = loadSafetensors(file);
  if (metadata.format !== 'styleclip-ts/world-classifier-train/1')
    throw new ClassifierError(`${file} is not a classifier training checkpoint`);
  // Checkpoints from before the flag existed were trained without it.
  if ((metadata.augment ?? 'false') !== String(!!o.augment))
    throw new ClassifierError(
      `${file} was trained ${metadata.augment === 'true' ? 'with' : 'without'} --augment; resume it the same way, or use another --out-dir`,
    );
  if (Number(metadata.seed) !== o.seed || Number(metadata.batch) !== o.batch)
    throw new ClassifierError(
      `${file} was trained with seed ${metadata.seed} and batch ${metadata.batch}, this run asks for seed ${o.seed} and batch ${o.batch}: use the same, or another --out-dir`,
    );
  const params = initClassifier(config, o.seed);
  const state: OptimizerStateJSON['state'] = {};
  const adamSteps = JSON.parse(metadata.adam_steps) as Record<string, number>;
  for (const [k, p] of params) {
    const t = tensors.get(`param.${k}`);
    if (!t || t.shape.join() !== p.shape.join())
      throw new ClassifierError(`${file}: param.${k} missing or of another shape than [${p.shape}]`);
    p.data.set(t.data as Float32Array);
    const m = tensors.get(`adam.m.${k}`);
    const v = tensors.get(`adam.v.${k}`);
    if (m && v)
      state[k] = {
        step: adamSteps[k] ?? 0,
        expAvg: Array.from(m.data as Float32Array),
        expAvgSq: Array.from(v.data as Float32Array),
      };
  }
  const adam = Adam.fromState({ kind: 'adam', options: { lr: o.lr, betas: [0.9, 0.999], eps: 1e-8 }, state });
  return { step: Number(metadata.step), params, adam };
}

export interface TrainResult {
  step: number;
  interrupted: boolean;
  accuracy?: FamilyAccuracy;
  seconds: number;
}

/** Trains (or resumes from outDir/checkpoint.safetensors) until `steps`; `shouldStop` is polled every step. */
export async function trainClassifier(
  o: ClassifierTrainOptions,
  hooks: { onLog?: (rec: Record<string, unknown>) => void; shouldStop?: () => boolean } = {},
): Promise<TrainResult> {
  const t0 = performance.now();
  const config = o.config ?? DEFAULT_CLASSIFIER;
  mkdirSync(o.outDir, { recursive: true });
  const ckpt = join(o.outDir, 'checkpoint.safetensors');
  const st: CheckpointState = existsSync(ckpt)
    ? loadCheckpoint(ckpt, o, config)
    : { step: 0, params: initClassifier(config, o.seed), adam: new Adam({ lr: o.lr }) };
  const log = (rec: Record<string, unknown>) => {
    appendFileSync(join(o.outDir, 'log.jsonl'), `${JSON.stringify(rec)}\n`);
    hooks.onLog?.(rec);
  };
  const net = await ClassifierStep.create(config, st.params, o.batch, o.threads);
  const optParams: OptParam[] = [...st.params].map(([name, p]) => ({
    name,
    data: p.data,
    grad: new Float32Array(p.data.length),
    shape: p.shape,
  }));
  const evaluate = async (): Promise<FamilyAccuracy> => {
    const clf = new AttributeClassifier(config, st.params, o.threads);
    const acc = await evaluateClassifier(clf, o.evalCount);
    log({ step: st.step, heldOut: o.evalCount, accuracy: acc });
    return acc;
  };
  const draw = async (t: number) => {
    const b = await drawBatch(TRAIN_BASE + t * o.batch, o.batch, config.size);
    if (o.augment) degrade(b.x, o.batch, config.size, TRAIN_BASE + t);
    return b;
  };
  let next = st.step < o.steps ? draw(st.step) : null;
  let lossSum = 0;
  let lossCount = 0;
  let interrupted = false;
  while (st.step < o.steps) {
    const batch = await next!;
    next = st.step + 1 < o.steps ? draw(st.step + 1) : null; // drawn while the graph runs
    const r = await net.run(
      st.params,
      batch.x,
      batch.faces.map((f) => f.labels),
    );
    if (!Number.isFinite(r.loss)) throw new ClassifierError(`the loss became ${r.loss} at step ${st.step}`);
    for (const p of optParams) p.grad = r.grads.get(p.name)!;
    st.adam.lr = st.step < 0.75 * o.steps ? o.lr : o.lr / 10;
    st.adam.step(optParams);
    st.step++;
    lossSum += r.loss;
    lossCount++;
    if (st.step % o.logEvery === 0 || st.step === o.steps) {
      log({
        step: st.step,
        loss: lossSum / lossCount,
        lr: st.adam.lr,
        seconds: (performance.now() - t0) / 1000,
      });
      lossSum = 0;
      lossCount = 0;
    }
    if (st.step % o.saveEvery === 0 || st.step === o.steps) saveCheckpoint(ckpt, o, st);
    if (o.evalEvery > 0 && st.step % o.evalEvery === 0 && st.step < o.steps) await evaluate();
    if (st.step < o.steps && hooks.shouldStop?.()) {
      saveCheckpoint(ckpt, o, st);
      interrupted = true;
      break;
    }
  }
  await next; // let a prefetch in flight finish before returning
  let acc: FamilyAccuracy | undefined;
  if (!interrupted) {
    acc = await evaluate();
    saveClassifier(join(o.outDir, 'classifier.safetensors'), config, st.params, {
      steps: String(st.step),
      batch: String(o.batch),
      seed: String(o.seed),
      lr: String(o.lr),
      augment: String(!!o.augment),
      held_out_accuracy: JSON.stringify(acc),
    });
  }
  return { step: st.step, interrupted, accuracy: acc, seconds: (performance.now() - t0) / 1000 };
}

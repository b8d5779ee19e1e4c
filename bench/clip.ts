/**
 * CLIP and ArcFace figures on random-weight, full-size ViT-B/32 and IR-SE50 built by the project:
 * encode_image at 224 (batch 1), StyleCLIP's CLIP loss + gradient at 1024², the 2 × 79 template prompts
 * of one global-direction edit, and the ID loss + gradient at 1024². Warm medians; first calls (which
 * include graph building, serialization and session creation) are reported separately.
 */

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ClipLossFunction, IdLossFunction } from '../src/edit/losses.js';
import type { Tensor } from '../src/io/tensor.js';
import { ArcFaceModel } from '../src/models/arcface/model.js';
import { ClipEncoder } from '../src/models/clip/encoder.js';
import { ClipModel, expectedShapes, VIT_B32 } from '../src/models/clip/model.js';
import { expandTemplates } from '../src/models/clip/templates.js';
import { tokenize } from '../src/models/clip/tokenizer.js';
import { timeIt } from './report.js';

/** Deterministic pseudo-normal values (sum of uniforms), cheap enough for 150M parameters. */
function randn(n: number, std: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let k = 0; k < 3; k++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      acc += (s >>> 0) / 4294967296;
    }
    out[i] = (acc - 1.5) * 2 * std;
  }
  return out;
}

function fill(shapes: Map<string, number[]>, init: (key: string, n: number, seed: number) => Float32Array) {
  const sd = new Map<string, Tensor>();
  let seed = 1;
  for (const [k, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    sd.set(k, { dtype: 'float32', shape, data: init(k, n, seed++ * 7919) });
  }
  return sd;
}

/** State-dict shapes of IR-SE50 (model_ir_se50.pth). */
function irse50Shapes(): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const bn = (p: string, c: number) => {
    for (const s of ['weight', 'bias', 'running_mean', 'running_var']) m.set(`${p}.${s}`, [c]);
  };
  m.set('input_layer.0.weight', [64, 3, 3, 3]);
  bn('input_layer.1', 64);
  m.set('input_layer.2.weight', [64]);
  let i = 0;
  let cin = 64;
  [
    [64, 3],
    [128, 4],
    [256, 14],
    [512, 3],
  ].forEach(([d, n]) => {
    for (let k = 0; k < n; k++, i++) {
      const inC = k === 0 ? cin : d;
      if (inC !== d) {
        m.set(`body.${i}.shortcut_layer.0.weight`, [d, inC, 1, 1]);
        bn(`body.${i}.shortcut_layer.1`, d);
      }
      bn(`body.${i}.res_layer.0`, inC);
      m.set(`body.${i}.res_layer.1.weight`, [d, inC, 3, 3]);
      m.set(`body.${i}.res_layer.2.weight`, [d]);
      m.set(`body.${i}.res_layer.3.weight`, [d, d, 3, 3]);
      bn(`body.${i}.res_layer.4`, d);
      m.set(`body.${i}.res_layer.5.fc1.weight`, [d / 16, d, 1, 1]);
      m.set(`body.${i}.res_layer.5.fc2.weight`, [d, d / 16, 1, 1]);
    }
    cin = d;
  });
  bn('output_layer.0', 512);
  m.set('output_layer.3.weight', [512, 512 * 7 * 7]);
  m.set('output_layer.3.bias', [512]);
  bn('output_layer.4', 512);
  return m;
}

function clipInit(key: string, n: number, seed: number): Float32Array {
  if (key === 'logit_scale') return Float32Array.of(Math.log(100));
  if (/ln_|ln_final/.test(key) && key.endsWith('.weight')) return new Float32Array(n).fill(1);
  if (key.endsWith('bias')) return new Float32Array(n);
  return randn(n, 0.02, seed);
}

function irseInit(key: string, n: number, seed: number): Float32Array {
  if (key.endsWith('running_var')) return new Float32Array(n).fill(1);
  if (key.endsWith('running_mean') || key.endsWith('.bias')) return new Float32Array(n);
  if (/(res_layer\.(0|4)|input_layer\.1|shortcut_layer\.1|output_layer\.(0|4))\.weight$/.test(key))
    return new Float32Array(n).fill(1);
  if (key.endsWith('res_layer.2.weight') || key === 'input_layer.2.weight')
    return new Float32Array(n).fill(0.25);
  // He-style scale keeps activations finite through 24 residual units.
  return randn(n, 0.5 / Math.sqrt(n / (key.includes('output_layer') ? 512 : Number(n) ** 0.5 || 1)), seed);
}

const line = (name: string, value: number, extra: Record<string, unknown> = {}) =>
  console.log(JSON.stringify({ bench: 'clip', name, value: Number(value.toFixed(2)), unit: 'ms', ...extra }));

/** The random-weight ViT-B/32 the figures use (exported for profiling scripts). */
export function buildClip(): ClipModel {
  return ClipModel.fromStateDict(fill(expectedShapes(VIT_B32), clipInit), { hash: 'bench-random-vit-b32' });
}

/** The random-weight IR-SE50 the figures use. */
export function buildIrse50(): ArcFaceModel {
  return ArcFaceModel.fromStateDict(fill(irse50Shapes(), irseInit));
}

const CASES = ['image', 'loss', 'text', 'id'];

/** Each case in its own process (as the README says of every benchmark), so no session disturbs another. */
export default async function main(): Promise<void> {
  const which = new Set(process.argv.slice(3));
  if (which.size === 0) {
    const self = fileURLToPath(new URL('./main.ts', import.meta.url));
    const failed = CASES.filter(
      (c) =>
        spawnSync(process.execPath, ['--import', 'tsx', self, 'clip', c], { stdio: 'inherit' }).status !== 0,
    );
    if (failed.length) throw new Error(`clip bench: case(s) ${failed.join(', ')} failed`);
    return;
  }
  for (const c of which)
    if (!CASES.includes(c)) throw new Error(`unknown case ${c}; one of ${CASES.join(', ')}`);
  const want = (k: string) => which.has(k);
  const clip = buildClip();
  const enc = new ClipEncoder(clip);

  if (want('image')) {
    const img = randn(3 * 224 * 224, 1, 5);
    const t = await timeIt(() => enc.encodeImages(img, 1), { runs: 20 });
    // 4.4 G multiply-adds = 8.8 GFLOP; at this CPU's ~240 GFLOP/s peak that is at least 37 ms
    line('encode_image_224_b1', t.median, {
      first_ms: Number(t.first.toFixed(0)),
      gmac: 4.4,
      gflop: 8.8,
      gflop_per_s: Number((8.8 / (t.median / 1000)).toFixed(1)),
    });
  }

  if (want('loss')) {
    const text = await enc.encodeTexts(['a person with purple hair']);
    const fn = await ClipLossFunction.create(clip, text, [1, 3, 1024, 1024]);
    const img = randn(3 * 1024 * 1024, 1, 9);
    const t = await timeIt(() => fn.run(img), { runs: 5 });
    line('clip_loss_fwd_grad_1024_b1', t.median, { first_ms: Number(t.first.toFixed(0)), limit_ms: 250 });
  }

  if (want('text')) {
    const prompts = [...expandTemplates('smiling face'), ...expandTemplates('face')];
    const tokens = tokenize(prompts);
    // encodeTokens bypasses the text cache, so every run encodes all 158 prompts.
    const t = await timeIt(() => enc.encodeTokens(tokens), { runs: 3 });
    line('encode_text_2x79_templates', t.median, {
      first_ms: Number(t.first.toFixed(0)),
      prompts: prompts.length,
      limit_ms: 1500,
    });
  }
  await enc.release();

  if (want('id')) {
    const arc = buildIrse50();
    const fn = await IdLossFunction.create(arc, [1, 3, 1024, 1024]);
    const a = randn(3 * 1024 * 1024, 0.5, 11);
    const b = randn(3 * 1024 * 1024, 0.5, 13);
    const t = await timeIt(() => fn.run(a, b), { runs: 5 });
    line('id_loss_irse50_fwd_grad_1024_b1', t.median, {
      first_ms: Number(t.first.toFixed(0)),
      limit_ms: 400,
    });
    // Latent optimization keeps y (the original image) fixed: its features are computed once.
    await fn.setTarget(b);
    const c = await timeIt(() => fn.runToTarget(a), { runs: 5 });
    line('id_loss_irse50_fwd_grad_1024_b1_cached_target', c.median, { first_ms: Number(c.first.toFixed(0)) });
  }
}

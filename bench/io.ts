import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Tensor } from '../src/io/tensor.js';
import { loadTorch } from '../src/io/torch.js';
import { saveTorch } from '../src/io/torch-write.js';
import { report } from './report.js';

/**
 * Loading speed and memory of the checkpoint readers on generated files (the page cache is warm: this
 * measures the reader, not the disk). Each load runs in a fresh child process so its peak RSS is its own.
 * The reference figure is a plain readFileSync of the same file, the floor for any reader.
 */

const MB = 1e6;

/** Pseudo-random fill, fast enough that generating 350 MB is not the benchmark. */
function fill(words: Uint32Array, seed: number, mask: number, or: number): void {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = ((s >>> 0) & mask) | or;
  }
}

function halves(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Uint16Array(n + (n & 1));
  // Sign, small exponent range and random mantissa in both halves of each word: finite values in ±2.
  fill(new Uint32Array(data.buffer), seed, 0x87ff87ff, 0x30003000);
  return { dtype: 'float16', shape, data: data.subarray(0, n) };
}

function floats(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  fill(new Uint32Array(data.buffer), seed, 0x807fffff, 0x3f000000);
  return { dtype: 'float32', shape, data };
}

/** A ViT-B/32-shaped TorchScript archive (fp16), grown to about `mb` megabytes. */
export function writeScript(file: string, mb: number): void {
  const w = 768;
  const blocks: Record<string, unknown> = { __class__: '__torch__.torch.nn.modules.container.Sequential' };
  const model: Record<string, unknown> = {
    __class__: '__torch__.clip.model.CLIP',
    positional_embedding: halves([77, 512], 1),
    text_projection: halves([512, 512], 2),
    logit_scale: halves([], 3),
    token_embedding: {
      __class__: '__torch__.torch.nn.modules.sparse.Embedding',
      weight: halves([49408, 512], 4),
    },
    transformer: { __class__: '__torch__.clip.model.Transformer', resblocks: blocks },
  };
  let bytes = 49408 * 512 * 2;
  let code = '';
  for (let i = 0; bytes < mb * MB - 7 * MB; i++) {
    blocks[String(i)] = {
      __class__: '__torch__.clip.model.ResidualAttentionBlock',
      in_proj_weight: halves([3 * w, w], 10 + i),
      in_proj_bias: halves([3 * w], 100 + i),
      c_fc: halves([4 * w, w], 200 + i),
      c_proj: halves([w, 4 * w], 300 + i),
    };
    bytes += (3 * w * w + 3 * w + 8 * w * w) * 2;
  }
  code +=
    'class CLIP(Module):\n  __parameters__ = ["positional_embedding", "text_projection", "logit_scale", ]\n  __buffers__ = []\n';
  code += 'class Transformer(Module):\n  __parameters__ = []\n  __buffers__ = []\n';
  code +=
    'class ResidualAttentionBlock(Module):\n  __parameters__ = ["in_proj_weight", "in_proj_bias", "c_fc", "c_proj", ]\n  __buffers__ = []\n';
  saveTorch(file, model, {
    root: 'ViT-B-32',
    records: {
      'code/__torch__/clip/model.py': code,
      'code/__torch__/torch/nn/modules/container.py':
        'class Sequential(Module):\n  __parameters__ = []\n  __buffers__ = []\n',
      'code/__torch__/torch/nn/modules/sparse.py':
        'class Embedding(Module):\n  __parameters__ = ["weight", ]\n  __buffers__ = []\n',
      'constants.pkl': new Uint8Array([0x80, 2, 0x29, 0x2e]),
    },
  });
}

/** A rosinality-style float32 state dict of about `mb` megabytes. */
export function writeZip(file: string, mb: number): void {
  const sd = new Map<string, Tensor>();
  for (let i = 0, bytes = 0; bytes < mb * MB; i++, bytes += (512 * 512 + 512) * 4) {
    sd.set(`g_ema.convs.${i}.conv.weight`, floats([1, 512, 512], i));
    sd.set(`g_ema.convs.${i}.conv.modulation.bias`, floats([512], 1000 + i));
  }
  saveTorch(file, { g_ema: sd, latent_avg: floats([512], 7) });
}

interface ChildResult {
  seconds: number;
  /** User + system CPU time of the load: on a busy shared machine, the figure least inflated by others. */
  cpuSeconds: number;
  maxRssMB: number;
  /** The child's peak before loading (node + tsx), included in maxRssMB. */
  baseRssMB: number;
  tensors: number;
  floats: number;
}

/** In the child: one timed load, then its figures as JSON. */
function child(file: string, mode: string): void {
  const baseRssMB = process.resourceUsage().maxRSS / 1024;
  const cpu0 = process.cpuUsage();
  const t = performance.now();
  let tensors = 0;
  let floats = 0;
  if (mode === 'readFileSync') readFileSync(file);
  else {
    const ck = loadTorch(file, { widen: mode !== 'raw' });
    tensors = ck.tensors.size;
    for (const x of ck.tensors.values()) if (x.dtype === 'float32') floats += x.data.length;
  }
  const seconds = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const out: ChildResult = {
    seconds,
    cpuSeconds,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    baseRssMB,
    tensors,
    floats,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function runChild(file: string, mode: string): ChildResult {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'bench/main.ts', 'io'], {
    env: { ...process.env, IO_BENCH_CHILD: file, IO_BENCH_MODE: mode },
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

function median(rs: ChildResult[]): ChildResult {
  return [...rs].sort((a, b) => a.seconds - b.seconds)[Math.floor(rs.length / 2)];
}

export default async function main(): Promise<void> {
  if (process.env.IO_BENCH_CHILD)
    return child(process.env.IO_BENCH_CHILD, process.env.IO_BENCH_MODE ?? 'widen');
  const dir = mkdtempSync(join(tmpdir(), 'bench-io-'));
  try {
    const script = join(dir, 'ViT-B-32.pt');
    writeScript(script, 350);
    const zip = join(dir, 'generator.pt');
    writeZip(zip, 130);
    for (const [name, file, mode] of [
      ['torchscript_fp16_to_f32', script, 'widen'],
      ['torchscript_fp16_raw', script, 'raw'],
      ['torchscript_readFileSync_reference', script, 'readFileSync'],
      ['zip_f32', zip, 'widen'],
      ['zip_readFileSync_reference', zip, 'readFileSync'],
    ] as const) {
      const size = statSync(file).size;
      runChild(file, mode);
      const r = median([runChild(file, mode), runChild(file, mode), runChild(file, mode)]);
      report('io', name, size / MB / r.seconds, 'MB/s', {
        file_MB: Number((size / MB).toFixed(1)),
        seconds: Number(r.seconds.toFixed(3)),
        cpu_seconds: Number(r.cpuSeconds.toFixed(3)),
        MB_per_cpu_s: Number((size / MB / r.cpuSeconds).toFixed(1)),
        load_avg: Number((await import('node:os')).loadavg()[0].toFixed(2)),
        peak_rss_MB: Math.round(r.maxRssMB),
        process_base_rss_MB: Math.round(r.baseRssMB),
        peak_rss_over_file: Number(((r.maxRssMB * 1.048576) / (size / MB)).toFixed(2)),
        tensors: r.tensors,
        warm_page_cache: true,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

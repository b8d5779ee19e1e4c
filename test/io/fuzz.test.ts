import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CheckpointError } from '../../src/io/errors.js';
import { encodeNpy, parseNpy } from '../../src/io/npy.js';
import { parseSafetensors, saveSafetensors } from '../../src/io/safetensors.js';
import { BufferSource } from '../../src/io/source.js';
import { ALLOWED_GLOBALS, loadTorchBytes } from '../../src/io/torch.js';
import { crc32, ZipReader } from '../../src/io/zip.js';
import { fixture, ROOT } from '../helpers.js';
import { rng, writeMiniScript } from './helpers.js';

// Buffer#slice is a view, not a copy; the fuzzer needs real copies.
const read = (f: string) => new Uint8Array(readFileSync(f));
const concat = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/**
 * Seeded mutations of every format: byte flips (mostly inside the pickle, with the zip CRC patched so the
 * VM really runs on the damaged pickle), truncations, splices and insertions. Every outcome must be a
 * success or a CheckpointError — never another exception, never a slow run — and only allow-listed
 * globals may ever resolve.
 */

const N = Number(process.env.IO_FUZZ_N ?? 2000);
/** Below this many mutants a run proves nothing: the tests are reported as skipped, not passed. */
const MIN_N = 100;
const off = N < MIN_N ? `IO_FUZZ_N=${N} is below ${MIN_N}: fuzzing off` : false;

/**
 * The share of mutants that load, per format, measured at N = 2000 with the seeds below. The rest must be
 * refused with a CheckpointError. A share far from this means the loader stopped checking something (more
 * load) or the fuzzer stopped reaching past the first check (fewer load). Safetensors' 43 of 2,000 is
 * expected: its mutations hit the JSON header, where almost any change breaks the JSON, a dtype, a shape
 * or the offsets; what loads is mostly the 10 % of mutations that flip a byte anywhere (often the data) and
 * changes of a key's name.
 */
const LOADED_AT_2000: Record<string, number> = {
  zip: 439,
  legacy: 469,
  torchscript: 104,
  pkl: 393,
  npy: 669,
  safetensors: 43,
};
const dir = mkdtempSync(join(tmpdir(), 'io-fuzz-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const allowed = (g: string) =>
  ALLOWED_GLOBALS.includes(g) ||
  ALLOWED_GLOBALS.some((a) => a.endsWith('.*') && g.startsWith(a.slice(0, -1)));

interface Target {
  bytes: Uint8Array;
  /** The byte range most mutations hit (the pickle). */
  region: [number, number];
  /** Zip entry whose CRC to patch after mutating inside `region`. */
  crcAt?: { local: number; central: number };
}

function zipTarget(bytes: Uint8Array, pkl: string): Target {
  const z = new ZipReader(new BufferSource(bytes));
  const e = z.entry(pkl);
  const start = z.dataOffset(e);
  return {
    bytes,
    region: [start, start + e.size],
    crcAt: { local: e.localHeaderOffset + 14, central: e.centralOffset + 16 },
  };
}

function mutate(t: Target, r: () => number): Uint8Array {
  const pick = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo));
  const [a, b] = t.region;
  const kind = r();
  let out: Uint8Array;
  let fixCrc = false;
  if (kind < 0.5) {
    out = t.bytes.slice();
    const flips = 1 + Math.floor(r() * 3);
    for (let i = 0; i < flips; i++) {
      const at = pick(a, b);
      out[at] = r() < 0.5 ? out[at] ^ (1 << pick(0, 8)) : pick(0, 256);
    }
    fixCrc = r() < 0.9;
  } else if (kind < 0.6) {
    out = t.bytes.slice();
    out[pick(0, out.length)] ^= 1 << pick(0, 8);
  } else if (kind < 0.72) {
    out = t.bytes.slice(0, r() < 0.5 ? pick(a, b) : pick(0, t.bytes.length));
  } else if (kind < 0.88) {
    // Splice: copy a chunk of the pickle over another place in it.
    out = t.bytes.slice();
    const len = pick(1, 48);
    const from = pick(a, Math.max(a + 1, b - len));
    const to = pick(a, Math.max(a + 1, b - len));
    out.copyWithin(to, from, from + len);
    fixCrc = r() < 0.9;
  } else {
    // Insert or delete a few bytes inside the pickle (shifts everything after it).
    const at = pick(a, b);
    const k = pick(1, 8);
    out =
      r() < 0.5
        ? concat([
            t.bytes.subarray(0, at),
            Uint8Array.from({ length: k }, () => pick(0, 256)),
            t.bytes.subarray(at),
          ])
        : concat([t.bytes.subarray(0, at), t.bytes.subarray(Math.min(at + k, t.bytes.length))]);
  }
  if (fixCrc && t.crcAt && out.length === t.bytes.length) {
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const c = crc32(out.subarray(a, b));
    dv.setUint32(t.crcAt.local, c, true);
    dv.setUint32(t.crcAt.central, c, true);
  }
  return out;
}

function fuzz(
  name: string,
  target: Target,
  load: (b: Uint8Array, trace: (g: string) => void) => unknown,
  seed: number,
) {
  const r = rng(seed);
  const unexpected: string[] = [];
  const forbidden = new Set<string>();
  let ok = 0;
  let slowest = 0;
  for (let i = 0; i < N; i++) {
    const m = mutate(target, r);
    const t0 = performance.now();
    try {
      load(m, (g) => {
        if (!allowed(g)) forbidden.add(g);
      });
      ok++;
    } catch (e) {
      if (process.env.FUZZ_DEBUG && i < 8) process.stdout.write(`# ${String(e)}\n`);
      if (!(e instanceof CheckpointError))
        unexpected.push(`#${i}: ${(e as Error)?.stack?.split('\n').slice(0, 3).join(' | ')}`);
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  assert.deepEqual(unexpected.slice(0, 5), [], `${name}: ${unexpected.length} non-CheckpointError failures`);
  assert.deepEqual([...forbidden], []);
  assert.ok(slowest < 2000, `${name}: slowest mutation took ${slowest.toFixed(0)} ms`);
  // Enough mutants must get far enough to load, or the fuzzer is only testing the first check.
  process.stdout.write(`# ${name}: ${ok}/${N} mutants loaded, slowest ${slowest.toFixed(1)} ms\n`);
  const share = LOADED_AT_2000[name] / 2000;
  const band = 0.25 * share + 3 / Math.sqrt(N);
  assert.ok(
    Math.abs(ok / N - share) <= band,
    `${name}: ${ok}/${N} mutants loaded, expected a share of ${share} ± ${band.toFixed(3)}`,
  );
  return ok;
}

const torch = (b: Uint8Array, trace: (g: string) => void) => loadTorchBytes(b, 'fuzz', { trace });

test(`torch zip: ${N} mutations of arcface/irse_zip.pth`, { skip: off }, () => {
  fuzz('zip', zipTarget(read(fixture('arcface/irse_zip.pth')), 'irse_zip/data.pkl'), torch, 1);
});

test(`torch legacy: ${N} mutations of arcface/irse.pth`, { skip: off }, () => {
  const bytes = read(fixture('arcface/irse.pth'));
  fuzz('legacy', { bytes, region: [0, 15100] }, torch, 2);
});

test(`TorchScript: ${N} mutations of a CLIP-layout archive`, { skip: off }, () => {
  const file = join(dir, 'mini.pt');
  writeMiniScript(file);
  fuzz('torchscript', zipTarget(read(file), 'mini/data.pkl'), torch, 3);
});

test(`NVIDIA pkl: ${N} mutations of a stylegan2-ada snapshot`, { skip: off }, () => {
  const bytes = read(join(ROOT, 'test/io/data/mini_nvidia.pkl'));
  fuzz('pkl', { bytes, region: [0, bytes.length] }, torch, 4);
});

test(`npy and safetensors: ${N} mutations each`, { skip: off }, () => {
  const npy = encodeNpy({ dtype: 'float32', shape: [3, 4], data: new Float32Array(12).fill(1.5) });
  fuzz('npy', { bytes: npy, region: [0, 128] }, (b) => parseNpy(b), 5);
  const file = join(dir, 'f.safetensors');
  saveSafetensors(file, {
    a: { dtype: 'float32', shape: [2, 2], data: new Float32Array(4) },
    b: { dtype: 'float16', shape: [3], data: new Uint16Array(3) },
  });
  const st = read(file);
  fuzz(
    'safetensors',
    { bytes: st, region: [0, Number(Buffer.from(st).readBigUInt64LE(0)) + 8] },
    (b) => parseSafetensors(b),
    6,
  );
});

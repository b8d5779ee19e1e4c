import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CheckpointError } from '../../../src/io/errors.js';
import type { Tensor } from '../../../src/io/tensor.js';
import { loadTorch } from '../../../src/io/torch.js';
import { saveTorch } from '../../../src/io/torch-write.js';
import { loadGenerator } from '../../../src/models/stylegan2/load.js';
import { fixture } from '../../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'latent-avg-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// e4e_ffhq_encode.pt keeps its decoder under state_dict.decoder.* and latent_avg repeated per W+ row.
function e4eLike(name: string, rows: (avg: Float32Array, r: number) => Float32Array): string {
  const ck = loadTorch(fixture('stylegan2/generator.pt')).tensors;
  const sd: Record<string, Tensor> = {};
  for (const [k, t] of ck) if (k.startsWith('g_ema.')) sd[`decoder.${k.slice(6)}`] = t;
  const avg = ck.get('latent_avg')!.data as Float32Array;
  const L = 10;
  const data = new Float32Array(L * 512);
  for (let r = 0; r < L; r++) data.set(rows(avg, r), r * 512);
  const file = join(dir, name);
  saveTorch(file, { state_dict: sd, latent_avg: { dtype: 'float32', shape: [L, 512], data } });
  return file;
}

test('a latent_avg repeated per W+ row (e4e) is read as its one row', () => {
  const avg = loadTorch(fixture('stylegan2/generator.pt')).tensors.get('latent_avg')!.data as Float32Array;
  const G = loadGenerator(e4eLike('e4e.pt', (a) => a));
  assert.deepEqual(G.latentAvg, avg);
});

test('a latent_avg with different rows is refused, naming the key', () => {
  const file = e4eLike('rows.pt', (a, r) => a.map((v) => v + r));
  assert.throws(
    () => loadGenerator(file),
    (e: Error) => e instanceof CheckpointError && /latent_avg/.test(e.message),
  );
});

/** A worker's --device reaches the `mapper train` child it runs for a `mapper sweep` prompt. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { modelFileOf } from '../../src/queue/jobs.js';
import { runMapperJob } from '../../src/queue/mapper.js';
import { fixture } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'styleclip-mapper-device-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test("the worker's --device is the mapper child's device", async () => {
  const job = {
    kind: 'mapper' as const,
    prompt: 'a smiling face',
    out: join(dir, 'run'),
    args: ['--steps', '2', '--train-size', '4', '--test-size', '2'],
    files: [
      { flag: '--generator', file: await modelFileOf(fixture('stylegan2/generator.pt')) },
      { flag: '--clip', file: await modelFileOf(fixture('clip/clip.pt')) },
    ],
    steps: 2,
  };
  const ctx = { threads: 1, shouldStop: () => false, progress: () => {}, log: () => {} };
  // This machine has no GPU: a child that runs on WebGPU stops at its first graph and says so. Without the
  // device passed on, it would train on the CPU and succeed.
  await assert.rejects(runMapperJob(job, { ...ctx, device: 'webgpu' }), /WebGPU/);
});

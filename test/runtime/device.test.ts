/**
 * Execution-provider selection (`--device`, STYLECLIP_DEVICE): parsing, the choice among providers that
 * start or fail (with stand-in probes: this machine has no GPU), the messages, and that the blocked CPU
 * kernels are off on any other provider.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CUDA_INSTALL_COMMAND,
  DeviceError,
  type ExecutionProvider,
  explainFailure,
  parseDevice,
  preflight,
  selectProvider,
} from '../../src/runtime/device.js';
import { nchwcBlockSize } from '../../src/runtime/nchwc.js';
import { activeProvider, configureRuntime, providerEntry } from '../../src/runtime/session.js';
import { runMain } from '../cli/helpers.js';

test('device names: one provider, a fallback list, auto; anything else is refused with the valid names', () => {
  assert.deepEqual(parseDevice('cpu').choices, ['cpu']);
  assert.deepEqual(parseDevice(' CUDA ').choices, ['cuda']);
  assert.deepEqual(parseDevice('cuda, cpu,cuda').choices, ['cuda', 'cpu']);
  const auto = parseDevice('auto');
  assert.ok(auto.auto);
  assert.deepEqual(auto.choices, ['cuda', 'webgpu', 'cpu']);
  for (const bad of ['gpu', '', 'cuda,,cpu', 'cpu,tpu']) {
    assert.throws(
      () => parseDevice(bad, 'STYLECLIP_DEVICE'),
      (e: unknown) =>
        e instanceof DeviceError &&
        e.invalid &&
        e.message.startsWith('STYLECLIP_DEVICE') &&
        /use cpu, cuda, webgpu, a list such as cuda,cpu, or auto/.test(e.message),
      bad,
    );
  }
});

/** A probe that starts only `works`, recording what it was asked to start. */
function stand(works: ExecutionProvider[], error = 'Failed to get a WebGPU adapter: No supported adapters') {
  const asked: ExecutionProvider[] = [];
  const probe = async (p: ExecutionProvider) => {
    asked.push(p);
    if (!works.includes(p)) throw new Error(error);
  };
  return { probe, asked, check: () => null };
}

test('cpu is used as asked, without probing anything', async () => {
  const s = stand([]);
  assert.deepEqual(await selectProvider(parseDevice('cpu'), s.probe, s.check), {
    provider: 'cpu',
    note: null,
  });
  assert.deepEqual(s.asked, []);
});

test('a provider that starts is used silently; auto says which it picked', async () => {
  const s = stand(['cuda']);
  assert.deepEqual(await selectProvider(parseDevice('cuda'), s.probe, s.check), {
    provider: 'cuda',
    note: null,
  });
  const a = await selectProvider(parseDevice('auto'), s.probe, s.check);
  assert.equal(a.provider, 'cuda');
  assert.equal(a.note, 'device: cuda (auto)');
  const w = stand(['webgpu'], 'CUDA failure 100: no CUDA-capable device is detected');
  const b = await selectProvider(parseDevice('auto'), w.probe, w.check);
  assert.equal(b.provider, 'webgpu');
  assert.equal(b.note, 'device: webgpu (auto: cuda: no CUDA GPU was found)');
});

test('auto falls back to the CPU and names why each GPU provider did not start', async () => {
  const s = stand([]);
  const checks = (p: ExecutionProvider) => (p === 'cuda' ? preflight('cuda', '/nonexistent') : null);
  const a = await selectProvider(parseDevice('auto'), s.probe, checks);
  assert.equal(a.provider, 'cpu');
  assert.deepEqual(s.asked, ['webgpu']); // CUDA's missing files are seen without starting it
  assert.match(a.note ?? '', /^device: cpu \(auto: cuda: onnxruntime-node's CUDA files are not installed/);
  assert.ok(a.note?.includes(CUDA_INSTALL_COMMAND));
  assert.match(a.note ?? '', /webgpu: no WebGPU adapter was found/);
});

test('a single provider that cannot start is one clear error with the fix and the fallbacks', async () => {
  const s = stand([], 'libcudnn.so.9: cannot open shared object file: No such file or directory');
  await assert.rejects(
    selectProvider(parseDevice('cuda'), s.probe, s.check),
    (e: unknown) =>
      e instanceof DeviceError &&
      !e.invalid &&
      e.message ===
        '--device cuda: CUDA cannot start: cuDNN 9 is not installed or not on LD_LIBRARY_PATH ' +
          '(libcudnn.so.9: cannot open shared object file: No such file or directory). ' +
          'Run with --device cpu, or --device cuda,cpu to fall back to the CPU when CUDA is missing.',
  );
  // the fallback the user asked for, named in the note
  const f = await selectProvider(parseDevice('cuda,cpu'), s.probe, s.check);
  assert.equal(f.provider, 'cpu');
  assert.match(f.note ?? '', /^device: cpu, the fallback --device cuda,cpu asked for \(cuda: cuDNN 9/);
  // a list with no CPU in it can fail as a whole
  await assert.rejects(
    selectProvider(parseDevice('cuda,webgpu'), s.probe, s.check),
    /no device of the list starts/,
  );
});

test("ONNX Runtime's failures are put in words a user can act on", () => {
  assert.match(
    explainFailure('cuda', 'libcublasLt.so.12: cannot open shared object file'),
    /CUDA 12 runtime/,
  );
  assert.match(
    explainFailure('cuda', 'CUDA failure 35: CUDA driver version is insufficient'),
    /driver is too old/,
  );
  assert.equal(
    explainFailure('webgpu', '/onnxruntime_src/x.cc:1 f() something else\nsecond line'),
    'f() something else',
  );
});

test("CUDA's provider files are looked for beside onnxruntime-node's binding before anything starts", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ort-bin-'));
  try {
    const missing = preflight('cuda', dir);
    assert.ok(missing?.includes(CUDA_INSTALL_COMMAND), missing ?? '');
    writeFileSync(join(dir, 'libonnxruntime_providers_cuda.so'), '');
    assert.equal(preflight('cuda', dir), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(preflight('cpu'), null);
});

test('WebGPU sessions use the NCHW layout (its NHWC conv is wrong at 33 input channels); others are named as they are', () => {
  assert.deepEqual(providerEntry('webgpu'), { name: 'webgpu', preferredLayout: 'NCHW' });
  assert.equal(providerEntry('cpu'), 'cpu');
  assert.equal(providerEntry('cuda'), 'cuda');
});

test('the blocked (NCHWc) CPU kernels are off on any provider but the CPU', async () => {
  assert.equal(await activeProvider(), 'cpu');
  const cpuBlock = await nchwcBlockSize();
  configureRuntime({ provider: 'webgpu' }); // a fixed provider: nothing is started by asking
  try {
    assert.equal(await activeProvider(), 'webgpu');
    assert.equal(await nchwcBlockSize(), 0);
  } finally {
    configureRuntime({ provider: undefined });
  }
  assert.equal(await nchwcBlockSize(), cpuBlock);
});

test('every command takes --device; a bad name exits 2, a provider that cannot start exits 1', () => {
  const help = runMain(['global', 'edit', '--help']);
  assert.match(help.stdout, /--device <name>/);
  assert.match(help.stdout, /env:\s+STYLECLIP_DEVICE/);
  const bad = runMain(['tokenize', 'a face'], { STYLECLIP_DEVICE: 'gpu' });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /STYLECLIP_DEVICE "gpu": unknown device gpu/);
  // tokenize runs no graph, so it never starts a provider; embed does
  const args = ['embed', '--clip', 'test/fixtures/clip/clip.pt', '--text', 'a face'];
  const [threads, one] = [
    runMain(args, { STYLECLIP_THREADS: 'two' }),
    runMain(args, { STYLECLIP_THREADS: '1' }),
  ];
  assert.equal(threads.code, 2);
  assert.match(threads.stderr, /STYLECLIP_THREADS "two": must be a whole number ≥ 1/);
  assert.equal(one.code, 0, one.stderr);
  const fail = runMain([...args, '--device', 'cuda'], { ONNXRUNTIME_NODE_INSTALL: '' });
  if (preflight('cuda') !== null) {
    assert.equal(fail.code, 1);
    assert.match(
      fail.stderr,
      /--device cuda: CUDA cannot start: onnxruntime-node's CUDA files are not installed/,
    );
    assert.equal(fail.stderr.trim().split('\n').length, 1, fail.stderr);
    const fb = runMain([...args, '--device', 'cuda,cpu']);
    assert.equal(fb.code, 0, fb.stderr);
    assert.match(fb.stderr, /device: cpu, the fallback --device cuda,cpu asked for/);
    assert.match(fb.stdout, /^text "a face"/);
  }
});

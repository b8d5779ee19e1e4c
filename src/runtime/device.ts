/**
 * Which ONNX Runtime execution provider runs the graphs: `--device` on every command, or STYLECLIP_DEVICE.
 *
 * onnxruntime-node ships three providers for Linux x64: the CPU (always there), WebGPU (bundled; it needs a
 * Vulkan driver on Linux) and CUDA (its libraries are fetched by the package's install script, which this
 * project does not run by default; see the README's Execution providers). A request names one provider, or
 * several in order of preference ("cuda,cpu": CUDA, else the CPU), or `auto` (the best one that starts).
 * Nothing is probed until the first session is made, so commands that never run a graph (tokenize,
 * download) pay nothing; the choice is then made once per process.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

/** What `auto` tries, best first. */
export const AUTO_ORDER: readonly ExecutionProvider[] = ['cuda', 'webgpu', 'cpu'];
const PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'webgpu'];

const LABEL: Record<ExecutionProvider, string> = { cpu: 'the CPU', cuda: 'CUDA', webgpu: 'WebGPU' };

/** The exact command that fetches onnxruntime-node's CUDA provider libraries (run in the project folder). */
export const CUDA_INSTALL_COMMAND =
  'ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js';

/** A device that cannot be used: a bad name, or no provider of the request starts. */
export class DeviceError extends Error {
  constructor(
    message: string,
    /** True for a malformed request (an invocation mistake), false when a provider failed to start. */
    readonly invalid = false,
  ) {
    super(message);
    this.name = 'DeviceError';
  }
}

export interface DeviceRequest {
  /** Providers to try, in order; the first that starts is used. */
  choices: ExecutionProvider[];
  auto: boolean;
  /** As written, and where ('--device', 'STYLECLIP_DEVICE'), for messages. */
  text: string;
  source: string;
}

export const DEVICE_HELP =
  'execution provider: cpu, cuda, webgpu, a fallback list such as cuda,cpu, or auto (the best that starts)';

/** Parses `cpu`, `cuda`, `webgpu`, `auto` or a comma-separated preference list such as `cuda,cpu`. */
export function parseDevice(text: string, source = '--device'): DeviceRequest {
  const t = text.trim().toLowerCase();
  if (t === 'auto') return { choices: [...AUTO_ORDER], auto: true, text, source };
  const parts = t.split(',').map((s) => s.trim());
  const bad = parts.filter((p) => !(PROVIDERS as readonly string[]).includes(p));
  if (t === '' || bad.length > 0)
    throw new DeviceError(
      `${source} ${JSON.stringify(text)}: unknown device${bad.length > 1 ? 's' : ''} ` +
        `${bad.filter((b) => b).join(', ') || '(empty)'}; use cpu, cuda, webgpu, a list such as cuda,cpu, or auto`,
      true,
    );
  const choices = [...new Set(parts)] as ExecutionProvider[];
  return { choices, auto: false, text, source };
}

/** Why a provider did not start, in words a user can act on (from ONNX Runtime's error or our own checks). */
export function explainFailure(provider: ExecutionProvider, message: string): string {
  const m = message;
  if (provider === 'cuda') {
    if (/libcudnn/i.test(m)) return `cuDNN 9 is not installed or not on LD_LIBRARY_PATH (${firstLine(m)})`;
    if (/libcu(blas|blasLt|dart|fft|rand)|libnvrtc|libcupti/i.test(m))
      return `the CUDA 12 runtime libraries are not installed or not on LD_LIBRARY_PATH (${firstLine(m)})`;
    if (/no CUDA-capable device|CUDA failure 100|cudaErrorNoDevice/i.test(m)) return 'no CUDA GPU was found';
    if (/driver version is insufficient|CUDA failure 35/i.test(m))
      return 'the NVIDIA driver is too old for CUDA 12 (update the driver)';
  }
  if (provider === 'webgpu' && /adapter/i.test(m))
    return 'no WebGPU adapter was found (no GPU with a Vulkan driver that WebGPU can use)';
  return firstLine(m);
}

const firstLine = (s: string) =>
  s
    .replace(/\s*\/onnxruntime_src\/\S+\s*/g, ' ')
    .split('\n')[0]
    .trim();

/**
 * Checks that need no session: whether onnxruntime-node's CUDA files are there, and on Linux whether a
 * Vulkan loader exists for WebGPU (Dawn otherwise prints its own warning before failing). Returns the
 * reason a provider cannot start, or null when it is worth trying.
 */
export function preflight(provider: ExecutionProvider, binDir = ortBinDir()): string | null {
  if (provider === 'cuda') {
    if (platform() !== 'linux' && platform() !== 'win32')
      return `onnxruntime-node has no CUDA provider for ${platform()}/${arch()}`;
    const lib =
      platform() === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
    if (!binDir || !existsSync(join(binDir, lib)))
      return `onnxruntime-node's CUDA files are not installed (no ${lib} beside its binding); fetch them with: ${CUDA_INSTALL_COMMAND}`;
  }
  if (provider === 'webgpu' && platform() === 'linux' && !hasSharedLibrary('libvulkan.so.1'))
    return 'no Vulkan loader (libvulkan.so.1), which WebGPU needs on Linux, is installed';
  return null;
}

/** The folder holding onnxruntime-node's native files for this platform, or null if it cannot be found. */
export function ortBinDir(): string | null {
  try {
    const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
    return join(dirname(pkg), 'bin', 'napi-v6', platform(), arch());
  } catch {
    return null;
  }
}

/** Whether the dynamic loader can find `name`: LD_LIBRARY_PATH, then ld.so's cache, then the usual folders. */
function hasSharedLibrary(name: string): boolean {
  const dirs = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  if (dirs.some((d) => existsSync(join(d, name)))) return true;
  try {
    if (readFileSync('/etc/ld.so.cache').includes(name)) return true;
  } catch {
    // no cache (musl, or an unusual system): fall back to the usual folders
  }
  return [
    '/usr/lib',
    '/usr/lib64',
    '/lib',
    `/usr/lib/${arch() === 'x64' ? 'x86_64' : 'aarch64'}-linux-gnu`,
  ].some((d) => existsSync(join(d, name)));
}

/** Starts a provider for real (a tiny session run on it); rejects with ONNX Runtime's message. */
export type Probe = (provider: ExecutionProvider) => Promise<void>;

export interface Selection {
  provider: ExecutionProvider;
  /** One line for the user when it is worth saying (auto, or a fallback was taken); null otherwise. */
  note: string | null;
}

/**
 * The first provider of `req` that starts. A single explicit provider that fails is an error that says
 * why and how to fix it or fall back; in a list, each failure is named in the note of the one chosen.
 */
export async function selectProvider(
  req: DeviceRequest,
  probe: Probe,
  check: (p: ExecutionProvider) => string | null = (p) => preflight(p),
): Promise<Selection> {
  const failed: string[] = [];
  for (const p of req.choices) {
    let reason: string | null = p === 'cpu' ? null : check(p);
    if (reason === null && p !== 'cpu') {
      try {
        await probe(p);
      } catch (e) {
        reason = explainFailure(p, (e as Error).message ?? String(e));
      }
    }
    if (reason === null) {
      const why = failed.length ? ` (${failed.join('; ')})` : '';
      if (req.auto)
        return { provider: p, note: `device: ${p} (auto${failed.length ? ': ' : ''}${failed.join('; ')})` };
      if (failed.length)
        return { provider: p, note: `device: ${p}, the fallback ${req.source} ${req.text} asked for${why}` };
      return { provider: p, note: null };
    }
    failed.push(`${p}: ${reason}`);
  }
  const only = req.choices.length === 1 ? req.choices[0] : null;
  const head = only
    ? `${req.source} ${req.text}: ${LABEL[only]} cannot start: ${failed[0].slice(only.length + 2)}`
    : `${req.source} ${req.text}: no device of the list starts (${failed.join('; ')})`;
  const hint = only
    ? `. Run with --device cpu, or --device ${only},cpu to fall back to the CPU when ${LABEL[only]} is missing.`
    : '. Add cpu to the list to fall back to the CPU.';
  throw new DeviceError(head + hint);
}

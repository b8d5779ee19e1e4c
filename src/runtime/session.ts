/**
 * The only module that touches onnxruntime: session creation and caching, thread and execution-provider
 * settings, and the host tensor type that the rest of the project uses.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import ort from 'onnxruntime-node';
import { type DType, Graph, type Value } from '../graph/graph.js';
import { serialize } from '../onnx/writer.js';
import { add } from '../ops/elementwise.js';
import {
  DeviceError,
  type DeviceRequest,
  type ExecutionProvider,
  parseDevice,
  selectProvider,
} from './device.js';

export type { ExecutionProvider } from './device.js';

export type HostData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
export interface HostTensor {
  shape: number[];
  data: HostData;
}

export interface RuntimeOptions {
  /** Intra-op threads; all cores by default. */
  threads?: number;
  /** Fixed provider for these sessions; by default the one `setDevice` (or STYLECLIP_DEVICE) selects. */
  provider?: ExecutionProvider;
  /**
   * ONNX Runtime's graph optimizations. 'all' adds the NCHWc conv layouts (faster convs, but reorder
   * copies of every activation: +0.7 GB for a 1024² StyleGAN2 backward); 'extended' stops before them.
   */
  optimization?: 'all' | 'extended';
  /**
   * ONNX Runtime's CPU arena. With it, big activations are reused between runs instead of being mapped
   * fresh each time (page faults cost 1 s of a 4 s StyleGAN2 backward at 1024²). The memory pattern,
   * which keeps one block per planned tensor, stays off: with it that backward peaks at 8.2 GB, not 3.7.
   */
  arena?: boolean;
  /** Write ONNX Runtime's JSON profile of every run to files starting with this prefix (see endProfiling). */
  profile?: string;
  /** Write the graph as ONNX Runtime optimized it to this .onnx file (to compare fusions and layouts). */
  optimizedModelPath?: string;
}

/** STYLECLIP_THREADS when set (e.g. 1 for each of several jobs sharing the cores), else every core. */
export function defaultThreads(): number {
  const env = process.env.STYLECLIP_THREADS?.trim();
  if (!env) return availableParallelism();
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1)
    throw new DeviceError(
      `STYLECLIP_THREADS "${env}": must be a whole number ≥ 1 (or unset: every core)`,
      true,
    );
  return n;
}

// threads: undefined until configureRuntime sets it; then STYLECLIP_THREADS, read at the first session.
let defaults: Omit<Required<RuntimeOptions>, 'provider' | 'profile' | 'optimizedModelPath' | 'threads'> &
  RuntimeOptions = {
  optimization: 'all',
  arena: true,
};
export function configureRuntime(options: Partial<RuntimeOptions>): void {
  defaults = { ...defaults, ...options };
}

let request: DeviceRequest | null = null;
let selected: Promise<ExecutionProvider> | null = null;
let noteSink: (line: string) => void = (line) => {
  process.stderr.write(`styleclip: ${line}\n`);
};

/**
 * Chooses the execution provider for the sessions made from now on: 'cpu', 'cuda', 'webgpu', a fallback
 * list ('cuda,cpu') or 'auto'. Nothing starts until the first session; without a call, STYLECLIP_DEVICE
 * (or 'cpu') decides. `log` receives the one line said when auto chooses or a fallback is taken.
 */
export function setDevice(
  device: string | DeviceRequest,
  options: { log?: (line: string) => void } = {},
): void {
  request = typeof device === 'string' ? parseDevice(device) : device;
  selected = null;
  if (options.log) noteSink = options.log;
}

/** The provider that sessions use (probing the requested ones the first time); rejects with a DeviceError. */
export function activeProvider(): Promise<ExecutionProvider> {
  if (defaults.provider) return Promise.resolve(defaults.provider);
  selected ??= (async () => {
    const env = process.env.STYLECLIP_DEVICE;
    const req = request ?? parseDevice(env?.trim() ? env : 'cpu', 'STYLECLIP_DEVICE');
    const choice = await selectProvider(req, probeProvider);
    if (choice.note) noteSink(choice.note);
    return choice.provider;
  })();
  return selected;
}

/** Starts `provider` for real: a one-node graph, created and run on it alone. */
async function probeProvider(provider: ExecutionProvider): Promise<void> {
  const g = new Graph();
  const x = g.input('x', [4]);
  const bytes = serialize({ y: add(x, x) }, { inputs: [x] });
  const s = await ort.InferenceSession.create(bytes, { executionProviders: [providerEntry(provider)] });
  try {
    await s.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4), [4]) });
  } finally {
    await s.release();
  }
}

export class RuntimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RuntimeError';
  }
}

const ortType: Record<DType, ort.Tensor.Type> = {
  float32: 'float32',
  float64: 'float64',
  int64: 'int64',
  int32: 'int32',
  bool: 'bool',
  uint8: 'uint8',
};

const arrayType: Record<DType, { new (n: number): HostData; name: string }> = {
  float32: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  bool: Uint8Array,
  uint8: Uint8Array,
};

interface Signature {
  name: string;
  shape: readonly number[];
  dtype: DType;
}

/** A compiled graph: feed named inputs, get named outputs. */
export class Executable {
  constructor(
    private readonly session: ort.InferenceSession,
    readonly inputs: readonly Signature[],
    readonly outputs: readonly Signature[],
    readonly hash: string,
  ) {}

  async run(feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const sig of this.inputs) {
      const t = feeds[sig.name];
      if (!t) throw new RuntimeError(`missing input "${sig.name}" [${sig.shape}]`);
      const want = sig.shape.reduce((a, b) => a * b, 1);
      if (
        t.data.length !== want ||
        t.shape.length !== sig.shape.length ||
        t.shape.some((d, i) => d !== sig.shape[i])
      )
        throw new RuntimeError(
          `input "${sig.name}" must have shape [${sig.shape}] (${want} values), got [${t.shape}] with ${t.data.length} values`,
        );
      if (!(t.data instanceof arrayType[sig.dtype]))
        throw new RuntimeError(
          `input "${sig.name}" must be ${arrayType[sig.dtype].name} data (${sig.dtype})`,
        );
      ortFeeds[sig.name] = new ort.Tensor(ortType[sig.dtype], t.data, sig.shape as number[]);
    }
    for (const k of Object.keys(feeds))
      if (!this.inputs.some((s) => s.name === k)) throw new RuntimeError(`unknown input "${k}"`);
    const res = await this.session.run(ortFeeds);
    const out: Record<string, HostTensor> = {};
    for (const sig of this.outputs) {
      const t = res[sig.name];
      out[sig.name] = { shape: [...t.dims], data: t.data as HostData };
    }
    return out;
  }

  /** Ends ONNX Runtime's profiling (RuntimeOptions.profile): the JSON file `<profile>_<date>.json` is written. */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async release(): Promise<void> {
    cache.delete(this.hash);
    await this.session.release();
  }
}

const cache = new Map<string, Promise<Executable>>();

type SessionSettings = Required<Omit<RuntimeOptions, 'profile' | 'optimizedModelPath'>> &
  Pick<RuntimeOptions, 'profile' | 'optimizedModelPath'>;

/**
 * A provider as ONNX Runtime takes it. WebGPU runs in the NCHW layout: in its default NHWC layout, ONNX
 * Runtime 1.30's WebGPU provider computes a 3x3 convolution with 33 input channels wrong (the
 * discriminator's final conv after the minibatch-stddev channel: D(x) off by 0.14 of 0.16, so GAN training
 * diverged), while 17, 32, 34 and 36 channels are right; seen on an NVIDIA H200 (README, Execution
 * providers). NCHW is right in every case checked there, and costs the 1024² generator 33 → 53 ms.
 */
export function providerEntry(
  provider: ExecutionProvider,
): ExecutionProvider | { name: 'webgpu'; preferredLayout: 'NCHW' } {
  return provider === 'webgpu' ? { name: 'webgpu', preferredLayout: 'NCHW' } : provider;
}

function sessionOptions(o: SessionSettings): ort.InferenceSession.SessionOptions {
  return {
    // ONNX Runtime places what the provider cannot run (and the com.microsoft.nchwc ops, which only the
    // CPU has) on the CPU provider behind it.
    executionProviders: [providerEntry(o.provider)],
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: o.optimization,
    enableCpuMemArena: o.arena,
    enableMemPattern: false,
    ...(o.profile ? { enableProfiling: true, profileFilePrefix: o.profile } : {}),
    ...(o.optimizedModelPath ? { optimizedModelFilePath: o.optimizedModelPath } : {}),
    // Spinning worker threads of one idle session steal the cores from the next: with several
    // sessions per process (generator, CLIP, ArcFace) that costs up to 10x on 2 cores.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

/** Creates (or reuses, by content hash) a session for serialized ONNX bytes. */
export async function loadModel(
  bytes: Uint8Array,
  inputs: readonly Signature[],
  outputs: readonly Signature[],
  options: RuntimeOptions = {},
): Promise<Executable> {
  const provider = options.provider ?? (await activeProvider());
  const opts: SessionSettings = {
    threads: options.threads ?? (defaults.threads ??= defaultThreads()),
    provider,
    optimization: options.optimization ?? defaults.optimization,
    arena: options.arena ?? defaults.arena,
    profile: options.profile ?? defaults.profile,
    optimizedModelPath: options.optimizedModelPath ?? defaults.optimizedModelPath,
  };
  const hash = createHash('sha256').update(bytes).update(JSON.stringify(opts)).digest('hex');
  let entry = cache.get(hash);
  if (!entry) {
    entry = ort.InferenceSession.create(bytes, sessionOptions(opts)).then(
      (s) => new Executable(s, inputs, outputs, hash),
      (err: unknown) => {
        cache.delete(hash);
        throw new RuntimeError(`ONNX Runtime rejected the graph: ${(err as Error).message}`);
      },
    );
    cache.set(hash, entry);
  }
  return entry;
}

/** Serializes `outputs` (with all the graph's declared inputs) and returns a runnable session. */
export function compile(
  outputs: Record<string, Value>,
  options: RuntimeOptions & { inputs?: readonly Value[] } = {},
): Promise<Executable> {
  const first = Object.values(outputs)[0];
  const inputs = options.inputs ?? first.graph.inputs;
  const bytes = serialize(outputs, { inputs });
  return loadModel(
    bytes,
    inputs.map((x) => ({ name: x.name!, shape: x.shape, dtype: x.dtype })),
    Object.entries(outputs).map(([name, v]) => ({ name, shape: v.shape, dtype: v.dtype })),
    options,
  );
}

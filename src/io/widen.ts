/**
 * In-place widening of half-precision tensors (float16/bfloat16 bits read into the upper half of their
 * float32 buffer) shared between this thread and one worker thread. Widening ViT-B-32's 350 MB of fp16
 * costs about as much as reading the file, most of it page faults on the 700 MB of fresh float32 that the
 * kernel serves per thread; a second thread widens while this one reads the rest of the archive.
 *
 * Buffers move to the worker and back by transfer, so tensors end up in ordinary ArrayBuffers. The load
 * API is synchronous: results come back through receiveMessageOnPort, with Atomics.wait in between.
 */
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { bfloat16ToFloat32, halfToFloat32, halfToFloatTable } from './tensor.js';

export type HalfKind = 'float16' | 'bfloat16';

export interface WidenOptions {
  /** Elements of half data pending before a worker is started (default 4M; 0 starts one at once). */
  workerMinElements?: number;
}

/** The share of elements this thread keeps for itself: it also does all the reading. */
const KEEP_SHARE = 0.25;
/** How long a finished load waits without any progress from the worker before it gives up. */
const STALL_MS = 30_000;

interface Job {
  out: Float32Array;
  count: number;
  kind: HalfKind;
  set: (data: Float32Array) => void;
}

// Plain CommonJS, run with `eval`: the worker needs no file on disk (tsx, dist and bundles alike).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
parentPort.once('message', ({ port, flag, table }) => {
  const done = new Int32Array(flag);
  const t = new Uint32Array(table);
  port.on('message', ({ id, buffer, count, kind }) => {
    const o = new Uint32Array(buffer, 0, count);
    const h = new Uint16Array(buffer, count * 2, count);
    if (kind === 'bfloat16') for (let i = 0; i < count; i++) o[i] = h[i] << 16;
    else if (count % 2 === 0) {
      const w = new Uint32Array(buffer, count * 2, count >>> 1);
      for (let i = 0, j = 0; i < w.length; i++, j += 2) {
        const x = w[i];
        o[j] = t[x & 0xffff];
        o[j + 1] = t[x >>> 16];
      }
    } else for (let i = 0; i < count; i++) o[i] = t[h[i]];
    port.postMessage({ id, buffer }, [buffer]);
    Atomics.add(done, 0, 1);
    Atomics.notify(done, 0);
  });
});
`;

/** One per load: `defer` each contiguous half tensor as it is read, then `finish` before returning. */
export class HalfWidener {
  private readonly minElements: number;
  private kept: Job[] = [];
  private keptElements = 0;
  private sentElements = 0;
  private readonly sent = new Map<number, Job>();
  private nextId = 0;
  private worker?: { thread: Worker; port: MessagePort; done: Int32Array };
  private workerFailed = false;

  constructor(options: WidenOptions = {}) {
    this.minElements = options.workerMinElements ?? 4 << 20;
  }

  /** Elements widened on this thread and on the worker so far (for tests and benchmarks). */
  get split(): { here: number; worker: number } {
    return { here: this.keptElements, worker: this.sentElements };
  }

  /** `out` holds `count` halves in its upper half; `set` receives the widened array (a new view). */
  defer(out: Float32Array, count: number, kind: HalfKind, set: (data: Float32Array) => void): void {
    const job: Job = { out, count, kind, set };
    const total = this.keptElements + this.sentElements + count;
    const worker = total >= this.minElements ? this.startWorker() : undefined;
    if (worker && this.keptElements >= KEEP_SHARE * total) {
      const id = this.nextId++;
      this.sent.set(id, job);
      this.sentElements += count;
      worker.port.postMessage({ id, buffer: out.buffer, count, kind }, [out.buffer as ArrayBuffer]);
    } else {
      this.kept.push(job);
      this.keptElements += count;
    }
  }

  /** Widens what this thread kept, then collects the worker's tensors. */
  finish(): void {
    for (const j of this.kept) {
      const halves = new Uint16Array(j.out.buffer, j.out.byteOffset + j.count * 2, j.count);
      if (j.kind === 'float16') halfToFloat32(halves, j.out);
      else bfloat16ToFloat32(halves, j.out);
    }
    this.kept = [];
    const w = this.worker;
    let last = Date.now();
    while (w && this.sent.size > 0) {
      const seen = Atomics.load(w.done, 0);
      const msg = receiveMessageOnPort(w.port);
      if (msg) {
        const { id, buffer } = msg.message as { id: number; buffer: ArrayBuffer };
        const job = this.sent.get(id)!;
        this.sent.delete(id);
        job.set(new Float32Array(buffer, 0, job.count));
        last = Date.now();
      } else {
        Atomics.wait(w.done, 0, seen, 1000);
        if (Date.now() - last > STALL_MS)
          throw new Error('the float16 widening worker stopped answering; load the file again');
      }
    }
    this.close();
  }

  /** Stops the worker (idempotent; also after a failed load). */
  close(): void {
    if (!this.worker) return;
    void this.worker.thread.terminate();
    this.worker.port.close();
    this.worker = undefined;
  }

  private startWorker() {
    if (this.worker || this.workerFailed) return this.worker;
    try {
      // No inherited execArgv: `--input-type=module` (node -e) would run this CommonJS source as ESM, and
      // loader hooks (tsx) have nothing to do in it.
      const thread = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
      thread.unref();
      // Errors surface as a stalled finish (a synchronous load never turns the event loop to see them);
      // an unhandled 'error' event would kill the process.
      thread.on('error', () => {});
      const { port1, port2 } = new MessageChannel();
      const flag = new SharedArrayBuffer(4);
      thread.postMessage({ port: port2, flag, table: halfToFloatTable().buffer.slice(0) }, [port2]);
      this.worker = { thread, port: port1, done: new Int32Array(flag) };
    } catch {
      this.workerFailed = true; // no threads here (some sandboxes): everything stays on this thread
    }
    return this.worker;
  }
}

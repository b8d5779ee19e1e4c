/**
 * The job queue for heavy work (latent optimization): one job runs at a time, the others wait in order and
 * know their position. Each job keeps its event log, so a client that subscribes late (or reconnects) gets
 * everything from the start, then live events. A job that throws is marked failed; the queue moves on.
 */
import { randomUUID } from 'node:crypto';

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobEvent {
  type: 'queued' | 'started' | 'progress' | 'done' | 'failed' | 'cancelled';
  [key: string]: unknown;
}

export interface JobContext {
  /** True once the job was cancelled; the job checks it between steps and stops. */
  readonly cancelled: boolean;
  emit(event: JobEvent): void;
}

export type JobBody = (ctx: JobContext) => Promise<Record<string, unknown>>;

export class QueueFullError extends Error {
  constructor(limit: number) {
    super(`the job queue is full (${limit} jobs waiting); try again when one has finished`);
    this.name = 'QueueFullError';
  }
}

export class Job implements JobContext {
  readonly id = randomUUID();
  state: JobState = 'queued';
  readonly events: JobEvent[] = [];
  readonly created = Date.now();
  error: string | null = null;
  result: Record<string, unknown> | null = null;
  private cancelFlag = false;
  private readonly listeners = new Set<(e: JobEvent) => void>();

  constructor(
    readonly kind: string,
    readonly params: Record<string, unknown>,
    readonly body: JobBody,
  ) {}

  get cancelled(): boolean {
    return this.cancelFlag;
  }

  get finished(): boolean {
    return this.state === 'done' || this.state === 'failed' || this.state === 'cancelled';
  }

  emit(event: JobEvent): void {
    this.events.push(event);
    for (const l of this.listeners) l(event);
  }

  /** Calls `fn` for every past event, then for every new one; returns the unsubscribe function. */
  subscribe(fn: (e: JobEvent) => void): () => void {
    for (const e of this.events) fn(e);
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  requestCancel(): void {
    this.cancelFlag = true;
  }

  /** Drops the intermediate images of a finished job (its log stays; the final image is in `result`). */
  compact(): void {
    for (const e of this.events) if (e.type === 'progress' && 'image' in e) delete e.image;
  }
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly waiting: Job[] = [];
  private running: Job | null = null;

  constructor(
    /** Jobs allowed to wait behind the running one. */
    readonly maxWaiting = 16,
    /** Finished jobs remembered for status queries. */
    readonly keepFinished = 20,
  ) {}

  submit(kind: string, params: Record<string, unknown>, body: JobBody): Job {
    if (this.waiting.length >= this.maxWaiting) throw new QueueFullError(this.maxWaiting);
    const job = new Job(kind, params, body);
    this.jobs.set(job.id, job);
    this.waiting.push(job);
    job.emit({ type: 'queued', position: this.position(job) });
    this.pump();
    return job;
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** 0 while running, 1, 2, … while waiting, null once finished. */
  position(job: Job): number | null {
    if (job === this.running) return 0;
    const i = this.waiting.indexOf(job);
    return i < 0 ? null : i + 1;
  }

  /** Cancels a waiting job at once, a running one at its next step; false if it had already finished. */
  cancel(job: Job): boolean {
    if (job.finished) return false;
    job.requestCancel();
    const i = this.waiting.indexOf(job);
    if (i >= 0) {
      this.waiting.splice(i, 1);
      job.state = 'cancelled';
      job.emit({ type: 'cancelled', steps: 0 });
      this.announcePositions();
      this.prune();
    }
    return true;
  }

  /** Summary for the API. */
  list(): { running: string | null; waiting: string[] } {
    return { running: this.running?.id ?? null, waiting: this.waiting.map((j) => j.id) };
  }

  /** Resolves when nothing runs or waits (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.waiting.length) await new Promise((r) => setTimeout(r, 10));
  }

  private announcePositions(): void {
    this.waiting.forEach((j, i) => {
      j.emit({ type: 'queued', position: i + 1 });
    });
  }

  private pump(): void {
    if (this.running) return;
    const job = this.waiting.shift();
    if (!job) return;
    this.running = job;
    job.state = 'running';
    job.emit({ type: 'started', position: 0 });
    this.announcePositions();
    void job
      .body(job)
      .then(
        (result) => {
          job.result = result;
          if (job.cancelled) {
            job.state = 'cancelled';
            job.emit({ type: 'cancelled', ...result });
          } else {
            job.state = 'done';
            job.emit({ type: 'done', ...result });
          }
        },
        (e: unknown) => {
          job.state = 'failed';
          job.error = e instanceof Error ? e.message : String(e);
          job.emit({ type: 'failed', error: job.error });
        },
      )
      .finally(() => {
        job.compact();
        this.running = null;
        this.prune();
        this.pump();
      });
  }

  private prune(): void {
    const done = [...this.jobs.values()].filter((j) => j.finished);
    for (const j of done.slice(0, Math.max(0, done.length - this.keepFinished))) this.jobs.delete(j.id);
  }
}

/**
 * The engine lane: ONNX Runtime already uses every core for one run, so the server runs one engine call at a
 * time. Interactive calls (a slider render, a mapper apply) go ahead of background work (the next step of an
 * optimization job), which takes the lane again between steps; so the page stays responsive while a job runs.
 */
export type Priority = 'interactive' | 'background';

export class EngineLane {
  private busy = false;
  private readonly waiting: Record<Priority, (() => void)[]> = { interactive: [], background: [] };

  /** Runs `fn` when the lane is free; `fn` never overlaps another lane call. */
  async run<T>(priority: Priority, fn: () => Promise<T>): Promise<T> {
    if (this.busy) await new Promise<void>((resolve) => this.waiting[priority].push(resolve));
    this.busy = true;
    try {
      return await fn();
    } finally {
      const next = this.waiting.interactive.shift() ?? this.waiting.background.shift();
      if (next) next();
      else this.busy = false;
    }
  }
}

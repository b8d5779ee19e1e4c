/**
 * StyleCLIP's learning-rate ramp for latent optimization (optimization/run_optimization.py `get_lr`):
 * a linear warm-up over the first `rampup` fraction of the steps and a cosine decay to zero over the last
 * `rampdown` fraction. `t` is step / total_steps in [0, 1).
 */
export function getLr(t: number, initialLr: number, rampdown = 0.25, rampup = 0.05): number {
  let lrRamp = Math.min(1, (1 - t) / rampdown);
  lrRamp = 0.5 - 0.5 * Math.cos(lrRamp * Math.PI);
  lrRamp = lrRamp * Math.min(1, t / rampup);
  return initialLr * lrRamp;
}

/** The lr for each of `steps` steps, as the reference loop computes it (t = i / steps). */
export function lrSchedule(steps: number, initialLr: number, rampdown = 0.25, rampup = 0.05): number[] {
  return Array.from({ length: steps }, (_, i) => getLr(i / steps, initialLr, rampdown, rampup));
}

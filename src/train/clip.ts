/** CLIP training (placeholder while the trainer is written). */

/** CLIP keeps exp(logit_scale) ≤ 100: the stored log-temperature is clamped to [0, ln 100] after each step. */
export function clampLogitScale(logitScale: Float32Array): void {
  logitScale[0] = Math.min(Math.max(logitScale[0], 0), Math.fround(Math.log(100)));
}

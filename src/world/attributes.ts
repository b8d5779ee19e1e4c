/**
 * The built-in world's attributes: eight families of named values, and the continuous jitter that gives
 * the latent space smooth variation between them. One seed gives one face, always the same one.
 *
 * Every family is sampled uniformly and independently of the others, so each value is common (the rarest,
 * one of 7 hair colours, is 1 face in 7) and no attribute can be predicted from another.
 */
import { MT19937 } from '../util/random.js';

export const FAMILIES = {
  hairColor: ['black', 'brown', 'blonde', 'red', 'grey', 'purple', 'blue'],
  hairstyle: ['bald', 'short', 'long', 'bob cut', 'mohawk', 'afro'],
  expression: ['neutral', 'smiling', 'frowning', 'surprised'],
  eyes: ['open', 'closed'],
  glasses: ['none', 'glasses', 'sunglasses'],
  beard: ['none', 'beard'],
  skinTone: ['light', 'tan', 'brown', 'dark'],
  background: ['white', 'blue', 'green', 'yellow', 'pink', 'orange'],
} as const;

export type Family = keyof typeof FAMILIES;
export const FAMILY_NAMES = Object.keys(FAMILIES) as Family[];
export type Labels = { [F in Family]: (typeof FAMILIES)[F][number] };

/** Continuous variation: none of it is named in captions or predicted by the classifier. */
export interface Jitter {
  /** Head turn, -1 (left) .. 1 (right): features slide sideways. */
  yaw: number;
  /** Head tilt in degrees. */
  tilt: number;
  /** Head offset in pixels of a 64² canvas. */
  dx: number;
  dy: number;
  /** Head size factor. */
  scale: number;
  /** Per-colour lightness/hue nudges in [-1, 1], small enough to keep every colour name right. */
  hairShade: number;
  skinShade: number;
  backgroundShade: number;
  /** Shirt hue in degrees and lightness in [0, 1]: free variation. */
  shirtHue: number;
  shirtLight: number;
  /** Face shape: width/height ratio factor. */
  faceWidth: number;
  /** Mouth width factor and eye spacing factor. */
  mouthWidth: number;
  eyeSpacing: number;
}

export interface Face {
  seed: number;
  labels: Labels;
  jitter: Jitter;
}

/** A float in [0, 1) from the Mersenne Twister (53 bits, as numpy's random_sample). */
function uniform(mt: MT19937): number {
  const a = mt.nextUint32() >>> 5;
  const b = mt.nextUint32() >>> 6;
  return (a * 67108864 + b) / 9007199254740992;
}

/** The face of `seed` (any integer 0 .. 2³²-1). Draw order is fixed: labels first, then jitter. */
export function sampleFace(seed: number): Face {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`a world seed is a whole number in 0 .. 4294967295, got ${seed}`);
  const mt = new MT19937(seed);
  const u = () => uniform(mt);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(u() * values.length)];
  const labels = {} as Record<Family, string>;
  for (const f of FAMILY_NAMES) labels[f] = pick(FAMILIES[f]);
  const sym = () => 2 * u() - 1;
  const jitter: Jitter = {
    yaw: sym(),
    tilt: 10 * sym(),
    dx: 4 * sym(),
    dy: 3 * sym(),
    scale: 0.92 + 0.16 * u(),
    hairShade: sym(),
    skinShade: sym(),
    backgroundShade: sym(),
    shirtHue: 360 * u(),
    shirtLight: u(),
    faceWidth: 0.9 + 0.2 * u(),
    mouthWidth: 0.85 + 0.3 * u(),
    eyeSpacing: 0.9 + 0.2 * u(),
  };
  return { seed, labels: labels as Labels, jitter };
}

/** The index of each family's value, in FAMILY_NAMES order (the classifier's targets). */
export function labelIndices(labels: Labels): number[] {
  return FAMILY_NAMES.map((f) => (FAMILIES[f] as readonly string[]).indexOf(labels[f]));
}

/**
 * Whether a family can be seen on this face. Eyes behind sunglasses cannot: captions leave them out, and
 * the classifier is neither trained nor scored on them there.
 */
export function visible(labels: Labels, family: Family): boolean {
  return !(family === 'eyes' && labels.glasses === 'sunglasses');
}

/** Parses `--where hairColor=purple,glasses=none` style filters; names and values are checked. */
export function parseWhere(spec: string): Partial<Labels> {
  const out: Partial<Record<Family, string>> = {};
  for (const part of spec.split(',').filter((s) => s.trim())) {
    const [k, v] = part.split('=').map((s) => s.trim());
    if (!(k in FAMILIES))
      throw new RangeError(`unknown attribute family "${k}" (one of ${FAMILY_NAMES.join(', ')})`);
    const values = FAMILIES[k as Family] as readonly string[];
    if (!values.includes(v)) throw new RangeError(`${k} is one of ${values.join(', ')}; got "${v}"`);
    out[k as Family] = v;
  }
  return out as Partial<Labels>;
}

/**
 * Captions for the world's faces: each attribute becomes a phrase (several wordings per value), a random
 * subset of the phrases is put in a random order, and the description is wrapped in one of CLIP's prompt
 * templates ("a photo of {}.", ...). Unseen-but-valid wordings at edit time ("a face with purple hair") are
 * the same phrases, so the CLIP trained on these captions understands the method's prompts.
 */
import { MT19937 } from '../util/random.js';
import { type Family, type Labels, visible } from './attributes.js';

/** Noun phrases for the subject. */
const SUBJECTS = ['a face', 'a person', 'a cartoon face', 'a cartoon person', 'someone', 'a character'];

/** Phrases per family value; each is used after "with" unless it starts with "who"/"that" or an adjective slot. */
const PHRASES: { [F in Family]: Record<Labels[F], string[]> } = {
  hairColor: {
    black: ['black hair', 'dark black hair'],
    brown: ['brown hair', 'brunette hair'],
    blonde: ['blonde hair', 'blond hair', 'golden blonde hair'],
    red: ['red hair', 'ginger hair'],
    grey: ['grey hair', 'gray hair', 'silver grey hair'],
    purple: ['purple hair', 'violet hair'],
    blue: ['blue hair', 'bright blue hair'],
  },
  hairstyle: {
    bald: ['a bald head', 'no hair on top'],
    short: ['short hair', 'a short haircut'],
    long: ['long hair', 'long flowing hair'],
    'bob cut': ['a bob cut', 'a bob cut hairstyle', 'a bob haircut'],
    mohawk: ['a mohawk', 'a mohawk hairstyle', 'a punk mohawk'],
    afro: ['an afro', 'curly afro hair', 'an afro hairstyle'],
  },
  expression: {
    neutral: ['a neutral expression', 'a straight face'],
    smiling: ['a smile', 'a big smile', 'a smiling mouth'],
    frowning: ['a frown', 'an angry frown', 'a frowning face'],
    surprised: ['a surprised look', 'an open mouth in surprise', 'a surprised expression'],
  },
  eyes: {
    open: ['open eyes', 'eyes open', 'wide open eyes'],
    closed: ['closed eyes', 'eyes closed', 'shut eyes'],
  },
  glasses: {
    none: ['no glasses', 'no eyewear'],
    glasses: ['glasses', 'round glasses', 'eyeglasses'],
    sunglasses: ['sunglasses', 'dark sunglasses', 'black shades'],
  },
  beard: {
    none: ['no beard', 'a clean shaven face'],
    beard: ['a beard', 'a full beard', 'a bushy beard'],
  },
  skinTone: {
    light: ['light skin', 'pale skin', 'fair skin'],
    tan: ['tan skin', 'tanned skin', 'olive skin'],
    brown: ['brown skin', 'medium brown skin'],
    dark: ['dark skin', 'dark brown skin'],
  },
  background: {
    white: ['a white background', 'a plain white background'],
    blue: ['a blue background', 'a light blue background'],
    green: ['a green background', 'a light green background'],
    yellow: ['a yellow background', 'a pale yellow background'],
    pink: ['a pink background', 'a light pink background'],
    orange: ['an orange background', 'a peach orange background'],
  },
};

/** CLIP's prompt templates (a subset of its ImageNet ones that suit drawings). */
export const TEMPLATES = [
  '{}.',
  'a photo of {}.',
  'a drawing of {}.',
  'a cartoon of {}.',
  'an illustration of {}.',
  'a rendering of {}.',
  'a good photo of {}.',
  'a close-up photo of {}.',
  'a cropped photo of {}.',
  'a low resolution photo of {}.',
  'a picture of {}.',
  'art of {}.',
] as const;

function uniform(mt: MT19937): number {
  return (mt.nextUint32() >>> 5) / 134217728;
}

/** Every wording of one family value, for tests and zero-shot prompts. */
export function phrasesOf<F extends Family>(family: F, value: Labels[F]): readonly string[] {
  return PHRASES[family][value];
}

/**
 * The `k`-th caption of a face (deterministic from `seed` and `k`): the subject, then 3 to 6 of the visible
 * attributes in random order and wording, joined with "with", commas and "and", in a random template.
 * "none" values (no glasses, no beard) and the neutral expression are mentioned less often.
 */
export function caption(labels: Labels, seed: number, k = 0): string {
  const mt = new MT19937((seed * 7919 + k * 104729 + 17) >>> 0);
  const u = () => uniform(mt);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(u() * xs.length)];
  const families = (Object.keys(PHRASES) as Family[]).filter((f) => {
    if (!visible(labels, f)) return false;
    const v = labels[f] as string;
    const quiet = v === 'none' || v === 'neutral' || v === 'open';
    return !quiet || u() < 0.35;
  });
  // Fisher-Yates shuffle, then keep 3..6 of them (all when fewer).
  for (let i = families.length - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1));
    [families[i], families[j]] = [families[j], families[i]];
  }
  const keep = Math.min(families.length, 3 + Math.floor(u() * 4));
  const phrases = families
    .slice(0, keep)
    .map((f) => pick((PHRASES[f] as Record<string, string[]>)[labels[f] as string]));
  const list =
    phrases.length <= 1
      ? phrases.join('')
      : `${phrases.slice(0, -1).join(u() < 0.5 ? ', ' : ' and ')} and ${phrases[phrases.length - 1]}`;
  const subject = pick(SUBJECTS);
  const body = list ? `${subject} with ${list}` : subject;
  return pick(TEMPLATES).replace('{}', body);
}

/** A prompt for one attribute value: "a face with purple hair" (the semantic benchmark's targets). */
export function attributePrompt<F extends Family>(family: F, value: Labels[F]): string {
  return `a face with ${PHRASES[family][value][0]}`;
}

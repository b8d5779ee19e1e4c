import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { expandTemplates, IMAGENET_TEMPLATES } from '../src/models/clip/templates.js';
import { ClipTokenizer, defaultBpePath } from '../src/models/clip/tokenizer.js';
import { report } from './report.js';

const WORDS = [
  'face',
  'smiling face',
  'person with purple hair',
  'mohawk hairstyle',
  'Taylor Swift',
  'curly hair',
  'angry face',
  'surprised face',
  'bob cut hairstyle',
  'blonde hair',
  'old man',
  'young woman',
  'beard',
  'tanned skin',
  'makeup',
  'Emma Stone',
  'Hillary Clinton',
  'a cute cat',
  'café au lait',
  'tiger',
];

function prompts(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    const word = `${WORDS[i % WORDS.length]}${i >= WORDS.length * 79 ? ` ${i}` : ''}`;
    out.push(expandTemplates(word, [IMAGENET_TEMPLATES[i % 79]])[0]);
  }
  return out;
}

const RUNS = 5;

/** Median of `RUNS` timed calls, in ms. */
function median(fn: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b)[RUNS >> 1];
}

/**
 * Tokenizes 10,000 template prompts: with a cold BPE cache (a new tokenizer each run) and with a warm one,
 * and the vocabulary load; each the median of five runs in this process.
 */
export default async function main(): Promise<void> {
  const texts = prompts(10_000);
  const bpe = readFileSync(defaultBpePath());
  const loadMs = median(() => new ClipTokenizer(bpe));
  const cold = Array.from({ length: RUNS }, () => new ClipTokenizer(bpe));
  let k = 0;
  const coldMs = median(() => {
    if (cold[k++].tokenize(texts).length !== texts.length * 77) throw new Error('wrong output size');
  });
  const warm = new ClipTokenizer(bpe);
  warm.tokenize(texts);
  const warmMs = median(() => warm.tokenize(texts));
  const extra = { runs: RUNS, stat: 'median', load1: loadavg()[0] };
  report('clip', 'tokenize_10000_prompts', coldMs, 'ms', extra);
  report('clip', 'tokenize_10000_prompts_warm_cache', warmMs, 'ms', extra);
  report('clip', 'tokenizer_load', loadMs, 'ms', extra);
}

import { expandTemplates, IMAGENET_TEMPLATES } from '../src/models/clip/templates.js';
import { ClipTokenizer, defaultBpePath } from '../src/models/clip/tokenizer.js';

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

/** Tokenizes 10,000 template prompts with a cold BPE cache (vocabulary load timed separately). */
export default async function main(): Promise<void> {
  const texts = prompts(10_000);
  let t = performance.now();
  const tok = new ClipTokenizer((await import('node:fs')).readFileSync(defaultBpePath()));
  const loadMs = performance.now() - t;
  t = performance.now();
  const rows = tok.tokenize(texts);
  const ms = performance.now() - t;
  t = performance.now();
  tok.tokenize(texts);
  const warmMs = performance.now() - t;
  if (rows.length !== texts.length * 77) throw new Error('wrong output size');
  const line = (name: string, value: number) =>
    console.log(JSON.stringify({ bench: 'clip', name, value: Number(value.toFixed(2)), unit: 'ms' }));
  line('tokenize_10000_prompts', ms);
  line('tokenize_10000_prompts_warm_cache', warmMs);
  line('tokenizer_load', loadMs);
}

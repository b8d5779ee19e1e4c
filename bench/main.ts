/**
 * `npm run bench -- <name>`: runs the default export of bench/<name>.ts, which prints JSON lines. Every file
 * here with a default export is a benchmark (anchors: ours against the plain ONNX export of the official
 * models, which needs `--exports DIR`; without it, it says how to make them).
 */
import { readdirSync } from 'node:fs';

const names = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.ts') && !['main.ts', 'report.ts'].includes(f))
  .map((f) => f.slice(0, -3))
  .sort();
const name = process.argv[2];
if (!name || !names.includes(name)) {
  console.error(`usage: npm run bench -- <name> [flags]\nnames: ${names.join(', ')}`);
  process.exit(2);
}
const mod: { default: () => Promise<void> | void } = await import(`./${name}.ts`);
await mod.default();

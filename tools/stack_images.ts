/**
 * `node --import tsx tools/stack_images.ts [--row] [--scale K] OUT IMG...`: the images one under the other (or
 * side by side with --row), on white, 2 px apart, each enlarged K× with nearest neighbour first (64² world
 * faces are tiny on a page); for the README's pictures (tools/world_gallery.sh).
 */
import { parseArgs } from 'node:util';
import sharp from 'sharp';

function usage(why: string): never {
  process.stderr.write(`${why}\nusage: stack_images.ts [--row] [--scale K] OUT IMG...\n`);
  process.exit(2);
}
function readArgs() {
  try {
    return parseArgs({
      options: { row: { type: 'boolean', default: false }, scale: { type: 'string', default: '1' } },
      allowPositionals: true,
    });
  } catch (e) {
    return usage((e as Error).message);
  }
}
const { values, positionals } = readArgs();
const row = values.row === true;
const scale = Number(values.scale);
const [out, ...files] = positionals;
if (!out || files.length === 0) usage('give the output and at least one image');
if (!Number.isInteger(scale) || scale < 1) usage(`--scale must be a whole number ≥ 1, got ${values.scale}`);
const GAP = 2;
const inputs = await Promise.all(
  files.map(async (f) => {
    const m = await sharp(f).metadata();
    const width = (m.width ?? 0) * scale;
    const height = (m.height ?? 0) * scale;
    const input = await sharp(f).resize(width, height, { kernel: 'nearest' }).png().toBuffer();
    return { input, width, height };
  }),
);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0) + GAP * (xs.length - 1);
const width = row ? sum(inputs.map((i) => i.width)) : Math.max(...inputs.map((i) => i.width));
const height = row ? Math.max(...inputs.map((i) => i.height)) : sum(inputs.map((i) => i.height));
let at = 0;
const composite = inputs.map(({ input, width: w, height: h }) => {
  const placed = row ? { input, left: at, top: 0 } : { input, left: 0, top: at };
  at += (row ? w : h) + GAP;
  return placed;
});
await sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
  .composite(composite)
  .png()
  .toFile(out);
process.stdout.write(`wrote ${out} (${width}×${height}, ${files.length} images)\n`);

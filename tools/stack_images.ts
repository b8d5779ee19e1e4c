/**
 * `node --import tsx tools/stack_images.ts [--row] OUT IMG...`: the images one under the other (or side by side
 * with --row), on white, 2 px apart; for the README's pictures (tools/world_gallery.sh).
 */
import sharp from 'sharp';

const args = process.argv.slice(2);
const row = args[0] === '--row';
const [out, ...files] = row ? args.slice(1) : args;
if (!out || files.length === 0) {
  process.stderr.write('usage: stack_images.ts [--row] OUT IMG...\n');
  process.exit(2);
}
const GAP = 2;
const metas = await Promise.all(files.map((f) => sharp(f).metadata()));
const widths = metas.map((m) => m.width ?? 0);
const heights = metas.map((m) => m.height ?? 0);
const width = row ? widths.reduce((a, b) => a + b, 0) + GAP * (files.length - 1) : Math.max(...widths);
const height = row ? Math.max(...heights) : heights.reduce((a, b) => a + b, 0) + GAP * (files.length - 1);
let at = 0;
const composite = files.map((input, i) => {
  const placed = row ? { input, left: at, top: 0 } : { input, left: 0, top: at };
  at += (row ? widths[i] : heights[i]) + GAP;
  return placed;
});
await sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
  .composite(composite)
  .png()
  .toFile(out);
process.stdout.write(`wrote ${out} (${width}×${height}, ${files.length} images)\n`);

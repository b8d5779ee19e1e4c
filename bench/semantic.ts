/**
 * `npm run bench -- semantic [global|mapper|optimization ...] [--seeds 50] [--alpha 4] [--beta 0.1]
 * [--opt-steps 100] [--prompts purple,smile] [--pictures DIR]`: the semantic benchmark on the world's models
 * (models/world/{generator.pt, clip.pt, fs3.npy, mappers/*.pt, classifier.safetensors}; see
 * src/world/semantic.ts for what is measured). One JSON line per method and prompt, then a table per method.
 * `--pictures DIR` writes, per method and prompt, the first 8 edited faces before (top row) and after.
 * A method whose models are missing is skipped with a message naming the files; with none runnable the
 * benchmark exits 1.
 */
import { join } from 'node:path';
import { writeImage } from '../src/io/image.js';
import { mapperSlug, worldDir } from '../src/world/models.js';
import {
  METHODS,
  type Method,
  missingFiles,
  resultTable,
  SEMANTIC_DEFAULTS,
  SEMANTIC_PROMPTS,
  type SemanticOptions,
  WorldBench,
} from '../src/world/semantic.js';

function parseArgs(argv: string[]): {
  methods: Method[];
  options: SemanticOptions;
  filter: string[];
  pictures?: string;
} {
  const methods: Method[] = [];
  const options = { ...SEMANTIC_DEFAULTS };
  let filter: string[] = [];
  let pictures: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const number = () => {
      const n = Number(value());
      if (!Number.isFinite(n)) throw new Error(`${a} must be a number`);
      return n;
    };
    if ((METHODS as readonly string[]).includes(a)) methods.push(a as Method);
    else if (a === '--seeds') options.seeds = Array.from({ length: number() }, (_, k) => k);
    else if (a === '--alpha') options.alpha = number();
    else if (a === '--beta') options.beta = number();
    else if (a === '--opt-steps') options.optSteps = number();
    else if (a === '--stats-samples') options.statsSamples = number();
    else if (a === '--prompts') filter = value().split(',');
    else if (a === '--pictures') {
      pictures = value();
      options.keepImages = 8;
    } else
      throw new Error(
        `unknown argument ${a} (methods: ${METHODS.join(', ')}; flags: --seeds --alpha --beta --opt-steps --stats-samples --prompts --pictures DIR)`,
      );
  }
  return { methods: methods.length ? methods : [...METHODS], options, filter, pictures };
}

export default async function main(): Promise<void> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(3));
  } catch (e) {
    console.error(`semantic: ${(e as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const prompts = SEMANTIC_PROMPTS.filter(
    (p) => args.filter.length === 0 || args.filter.some((f) => p.prompt.includes(f) || p.mapper.includes(f)),
  );
  const dir = worldDir();
  const runnable: Method[] = [];
  for (const m of args.methods) {
    // A mapper run needs at least one of the mappers; every method needs the rest.
    const missing = missingFiles(m, prompts, dir);
    const models = missing.filter((f) => !f.startsWith('mappers'));
    const mappersMissing = missing.length - models.length;
    if (models.length === 0 && (m !== 'mapper' || mappersMissing < prompts.length)) runnable.push(m);
    else
      console.error(
        `semantic: skipping ${m}: missing in ${dir}: ${missing.join(', ')}\n  (the world's models are trained with \`styleclip train gan|clip\`, \`global precompute\` and \`mapper train\`; see the README's world section)`,
      );
  }
  if (runnable.length === 0) {
    console.error('semantic: no method can run: the world models are not there yet.');
    process.exitCode = 1;
    return;
  }
  const bench = WorldBench.load(dir);
  const tables: string[] = [];
  for (const m of runnable) {
    const t0 = performance.now();
    const results = await bench.run(m, prompts, args.options);
    for (const r of results) {
      const { details, images, ...row } = r;
      if (args.pictures && images.length) {
        // Row 1: the originals; row 2: the same faces edited (the first 8 edited seeds).
        const S = bench.G.config.size;
        const px = 3 * S * S;
        const data = new Float32Array(2 * images.length * px);
        images.forEach((im, k) => {
          data.set(im.original, k * px);
          data.set(im.edited, (images.length + k) * px);
        });
        const file = join(args.pictures, `${m}-${mapperSlug(r.prompt)}.png`);
        await writeImage(
          file,
          { dtype: 'float32', shape: [2 * images.length, 3, S, S], data },
          { cols: images.length },
        );
      }
      console.log(
        JSON.stringify({
          bench: 'semantic',
          ...row,
          seeds: args.options.seeds.length,
          failed: details.filter((d) => !d.success).map((d) => d.seed),
        }),
      );
    }
    console.log(
      JSON.stringify({ bench: 'semantic', method: m, seconds: Math.round((performance.now() - t0) / 1000) }),
    );
    tables.push(resultTable(m, results));
  }
  console.log(`\n${tables.join('\n\n')}`);
}

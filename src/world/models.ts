/**
 * Where the world's models live, and the one rule for defaults: a command given no model flag uses the
 * world model of that kind when models/world/ has it. Every command asks here, so the rule is in one place.
 *
 * The folder is found from this file (src/world or dist/world → ../../models/world), so it works from
 * any working directory and from an installed package; STYLECLIP_WORLD overrides it (tests, other copies).
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type WorldModel = 'generator' | 'clip' | 'fs3' | 'classifier' | 'mappers';

/** File names inside the world folder. */
export const WORLD_FILES: Record<Exclude<WorldModel, 'mappers'>, readonly string[]> = {
  generator: ['generator.pt'],
  clip: ['clip.pt'],
  fs3: ['fs3.npy'],
  classifier: ['classifier.safetensors', 'classifier.pt'],
};

/** The world folder: $STYLECLIP_WORLD, else models/world next to src/ (or dist/). */
export function worldDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STYLECLIP_WORLD) return resolve(env.STYLECLIP_WORLD);
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'world');
}

const isFile = (f: string) => existsSync(f) && statSync(f).isFile();

/**
 * The world model of `kind` when it is there, else null (the caller then asks for a flag). For 'mappers',
 * `name` picks one mapper, by prompt slug ("purple hair" → mappers/purple_hair.pt).
 */
export function worldModelPath(
  kind: WorldModel,
  name?: string,
  env: NodeJS.ProcessEnv = process.env,
): string | null {
  const dir = worldDir(env);
  if (kind === 'mappers') {
    if (!name) {
      const d = join(dir, 'mappers');
      return existsSync(d) && statSync(d).isDirectory() ? d : null;
    }
    const f = join(dir, 'mappers', `${mapperSlug(name)}.pt`);
    return isFile(f) ? f : null;
  }
  for (const f of WORLD_FILES[kind]) if (isFile(join(dir, f))) return join(dir, f);
  return null;
}

/** The file name stem of a mapper for a prompt: lower case, words joined by "_". */
export function mapperSlug(prompt: string): string {
  return (
    prompt
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '') || 'mapper'
  );
}

/** How each kind of world model is made, for the message when it is missing. */
const HOW: Record<WorldModel, string> = {
  generator: 'styleclip train gan',
  clip: 'styleclip train clip --world COUNT',
  fs3: 'styleclip global precompute',
  classifier: 'styleclip world train-classifier',
  mappers: 'styleclip mapper train',
};

/**
 * The message for a command that got no model flag and finds no world model either: which flag to give,
 * and how the world's model is made.
 */
export function missingModelMessage(
  kind: WorldModel,
  flag: string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const where =
    kind === 'mappers' ? join(worldDir(env), 'mappers') : join(worldDir(env), WORLD_FILES[kind][0]);
  return `give ${flag} FILE (there is no world ${kind === 'mappers' ? 'mapper' : kind} at ${where} yet; it is made with \`${HOW[kind]}\`)`;
}

/** The path a command would use: the user's flag when given, else the world model, else null. */
export function resolveModel(flag: string | undefined, kind: WorldModel, name?: string): string | null {
  return flag ?? worldModelPath(kind, name);
}

/**
 * The model flags each command needs, and the world model that stands in for each when it is absent; an entry
 * with `unless` adds nothing when one of those flags is given (e4e's checkpoint brings its own generator).
 */
const WORLD_DEFAULTS: readonly [
  command: readonly string[],
  flags: readonly [string, WorldModel][],
  unless?: readonly string[],
][] = [
  [['generate'], [['--generator', 'generator']]],
  [
    ['optimize'],
    [
      ['--generator', 'generator'],
      ['--clip', 'clip'],
    ],
  ],
  [
    ['global', 'edit'],
    [
      ['--generator', 'generator'],
      ['--clip', 'clip'],
      ['--fs3', 'fs3'],
    ],
  ],
  [
    ['global', 'precompute'],
    [
      ['--generator', 'generator'],
      ['--clip', 'clip'],
    ],
  ],
  [
    ['mapper', 'train'],
    [
      ['--generator', 'generator'],
      ['--clip', 'clip'],
    ],
  ],
  [['embed'], [['--clip', 'clip']]],
  // The CLIP term is left to the user: on world faces it lowers the reconstruction's PSNR (README, invert).
  [['invert'], [['--generator', 'generator']], ['--encoder']],
  [
    ['serve'],
    [
      ['--generator', 'generator'],
      ['--clip', 'clip'],
      ['--fs3', 'fs3'],
      ['--mappers', 'mappers'],
    ],
  ],
];

/**
 * The command line (`process.argv` form) with the world's models added for every model flag the command
 * needs and was not given, where models/world/ has that model. A flag given always wins; a world model
 * that is missing adds nothing, so the command's own message about the flag stands.
 */
export function withWorldDefaults(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const args = argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) return [...argv];
  const words: string[] = [];
  for (const a of args) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  const entry = WORLD_DEFAULTS.find(([cmd]) => cmd.every((w, i) => words[i] === w));
  if (!entry) return [...argv];
  const given = (flag: string) => args.some((a) => a === flag || a.startsWith(`${flag}=`));
  if (entry[2]?.some(given)) return [...argv];
  // fs3 and mappers belong to one generator and CLIP: the world's are only added with the world's pair.
  const ownPair = given('--generator') || given('--clip');
  const added: string[] = [];
  for (const [flag, kind] of entry[1]) {
    if (given(flag) || (ownPair && (kind === 'fs3' || kind === 'mappers'))) continue;
    const path = worldModelPath(kind, undefined, env);
    if (path) added.push(flag, path);
  }
  return [...argv, ...added];
}

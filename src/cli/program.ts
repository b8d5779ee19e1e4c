/** The `styleclip` program: each subcommand lives in its own file and registers here. */
import { type Command, CommanderError } from 'commander';
import { resolveModelArgs } from '../download/resolve.js';
import { withWorldDefaults } from '../world/models.js';
import { addDeviceOption, CliCommand, reportError } from './common.js';
import { downloadCommand } from './download.js';
import { embedCommand } from './embed.js';
import { generateCommand } from './generate.js';
import { globalCommand } from './global.js';
import { invertCommand } from './invert.js';
import { mapperCommand } from './mapper.js';
import { optimizeCommand } from './optimize.js';
import { serveCommand } from './serve.js';
import { tokenizeCommand } from './tokenize.js';
import { trainCommand } from './train.js';
import { workerCommand } from './worker.js';
import { worldCommand } from './world.js';

export function buildProgram(): Command {
  // CliCommand: an unknown option or command at the top level is an invocation mistake too (styleclip:, exit 2)
  const program = new CliCommand();
  program
    .name('styleclip')
    .description('Text-driven editing of StyleGAN2 images (StyleCLIP) on ONNX Runtime')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  program.addCommand(generateCommand());
  program.addCommand(tokenizeCommand());
  program.addCommand(embedCommand());
  program.addCommand(globalCommand());
  program.addCommand(mapperCommand());
  program.addCommand(optimizeCommand());
  program.addCommand(serveCommand());
  program.addCommand(invertCommand());
  program.addCommand(trainCommand());
  program.addCommand(worldCommand());
  program.addCommand(downloadCommand());
  program.addCommand(workerCommand());
  addDeviceOption(program);
  return program;
}

/** Errors at any depth (`global edit`, `train gan`) come back as exceptions, never as process.exit. */
function overrideExits(c: Command): void {
  c.exitOverride();
  for (const s of c.commands) overrideExits(s);
}

/** Runs one invocation (`argv` as process.argv gives it) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  overrideExits(program);
  try {
    // Known model names (`--generator ffhq`) become their cached paths before any command parses them.
    // Model flags left out fall back to the built-in world's models where they exist.
    await program.parseAsync(withWorldDefaults(resolveModelArgs(argv)));
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : e.exitCode || 2;
    return reportError(e);
  }
}

/**
 * Runs several `styleclip` invocations in one process (one tsx start instead of one per case): argv lists
 * as JSON in argv[2]; after each case a marker line with its exit code goes to stdout and stderr.
 */
import { Command, CommanderError } from 'commander';
import { reportError } from '../../src/cli/common.js';
import { embedCommand } from '../../src/cli/embed.js';
import { generateCommand } from '../../src/cli/generate.js';
import { globalCommand } from '../../src/cli/global.js';
import { mapperCommand } from '../../src/cli/mapper.js';
import { optimizeCommand } from '../../src/cli/optimize.js';
import { serveCommand } from '../../src/cli/serve.js';
import { tokenizeCommand } from '../../src/cli/tokenize.js';

const cases = JSON.parse(process.argv[2]) as string[][];
const overrideAll = (c: Command): void => {
  c.exitOverride();
  for (const s of c.commands) overrideAll(s);
};
for (let i = 0; i < cases.length; i++) {
  const program = new Command('styleclip');
  for (const make of [
    generateCommand,
    globalCommand,
    mapperCommand,
    optimizeCommand,
    serveCommand,
    embedCommand,
    tokenizeCommand,
  ])
    program.addCommand(make());
  overrideAll(program);
  let code = 0;
  try {
    await program.parseAsync(cases[i], { from: 'user' });
  } catch (e) {
    code = e instanceof CommanderError ? (e.exitCode === 0 ? 0 : e.exitCode || 2) : reportError(e);
  }
  const mark = `\n@@case ${i} exit ${code}\n`;
  process.stdout.write(mark);
  process.stderr.write(mark);
}

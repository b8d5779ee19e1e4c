/**
 * Runs several `styleclip` invocations in one process (one tsx start instead of one per case): argv lists
 * as JSON in argv[2]; after each case a marker line with its exit code goes to stdout and stderr.
 */
import { main } from '../../src/cli/program.js';

const cases = JSON.parse(process.argv[2]) as string[][];
for (let i = 0; i < cases.length; i++) {
  // the real program, as the binary runs it (known model names resolved, every error mapped to a code)
  const code = await main(['node', 'styleclip', ...cases[i]]);
  const mark = `\n@@case ${i} exit ${code}\n`;
  process.stdout.write(mark);
  process.stderr.write(mark);
}

/**
 * The process a worker runs one mapper job in: `styleclip mapper train` itself, with the worker's thread
 * count. It exits when its worker dies (the IPC channel closes), so a killed worker leaves no orphan that
 * keeps writing into a folder another worker has taken over.
 */
import { configureRuntime } from '../runtime/session.js';

const [threads, ...rest] = process.argv.slice(2);
configureRuntime({ threads: Number(threads) });
let finished = false;
process.on('disconnect', () => {
  if (!finished) process.exit(1);
});
process.argv = [process.argv[0], process.argv[1], ...rest];
await import('../cli/main.js');
// main.js sets process.exitCode; the IPC channel would keep the process alive, so let go of it.
finished = true;
process.disconnect?.();

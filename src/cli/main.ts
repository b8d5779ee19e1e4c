/** The `styleclip` binary (bin/styleclip.js runs the compiled copy of this file). */
import { main } from './program.js';

process.exitCode = await main(process.argv);

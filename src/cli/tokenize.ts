import type { Command } from 'commander';
import { CONTEXT_LENGTH, TextTooLongError, tokenize } from '../models/clip/tokenizer.js';
import { CliCommand } from './common.js';

/** `styleclip tokenize <text...>`: CLIP token ids, for checking what the text encoder will see. */
export function tokenizeCommand(): Command {
  return new CliCommand('tokenize')
    .description(`print CLIP token ids for each text (start, BPE tokens, end; padded to ${CONTEXT_LENGTH})`)
    .argument('<text...>', 'one or more texts; quote each one')
    .option('--json', `print a JSON array of all ${CONTEXT_LENGTH} ids per text, one text per line`)
    .option('--truncate', `cut texts longer than ${CONTEXT_LENGTH} tokens instead of failing`)
    .action(function (this: Command, texts: string[], opts: { json?: boolean; truncate?: boolean }) {
      let rows: Int32Array;
      try {
        rows = tokenize(texts, { truncate: opts.truncate === true });
      } catch (e) {
        // A too-long prompt is a user error: say so plainly, without a stack trace.
        if (e instanceof TextTooLongError)
          this.error(
            `error: ${e.message.replace(/; shorten it or truncate it$/, '; shorten it, or pass --truncate to cut it to fit')}`,
            { exitCode: 2 },
          );
        throw e;
      }
      for (let r = 0; r < texts.length; r++) {
        const row = Array.from(rows.subarray(r * CONTEXT_LENGTH, (r + 1) * CONTEXT_LENGTH));
        const line = opts.json
          ? JSON.stringify(row)
          : row.slice(0, row.indexOf(0) < 0 ? row.length : row.indexOf(0)).join(' ');
        process.stdout.write(`${line}\n`);
      }
    });
}

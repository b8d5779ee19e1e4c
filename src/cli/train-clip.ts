import { Command } from 'commander';

/** Placeholder: being built (see the open issues); replaced by the real command. */
export function trainClipCommand(): Command {
  return new Command('clip').description('(being built)');
}

import { Command } from 'commander';

/** Placeholder: being built (see the open issues); replaced by the real command. */
export function worldCommand(): Command {
  return new Command('world').description('(being built)');
}

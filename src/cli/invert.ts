import { Command } from 'commander';

/** Placeholder: being built (see the open issues); replaced by the real command. */
export function invertCommand(): Command {
  return new Command('invert').description('(being built)');
}

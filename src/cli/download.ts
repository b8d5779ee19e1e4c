import { Command } from 'commander';

/** Placeholder: being built (see the open issues); replaced by the real command. */
export function downloadCommand(): Command {
  return new Command('download').description('(being built)');
}

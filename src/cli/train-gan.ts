import { Command } from 'commander';

/** Placeholder: being built (see the open issues); replaced by the real command. */
export function trainGanCommand(): Command {
  return new Command('gan').description('(being built)');
}

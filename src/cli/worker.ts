import { Command } from 'commander';

/** Placeholder: being built (see the open issues); replaced by the real command. */
export function workerCommand(): Command {
  return new Command('worker').description('(being built)');
}

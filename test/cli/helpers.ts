/** Runs the CLI as a user does, many cases per process (see runner.ts). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers.js';

/** The cache folder of every run here (channel statistics): a temp folder, never the user's. */
export const CACHE = mkdtempSync(join(tmpdir(), 'styleclip-test-cache-'));
process.on('exit', () => rmSync(CACHE, { recursive: true, force: true }));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const split = (text: string, n: number): Map<number, [string, number]> => {
  const out = new Map<number, [string, number]>();
  let rest = text;
  for (let i = 0; i < n; i++) {
    const m = new RegExp(`\\n@@case ${i} exit (\\d+)\\n`).exec(rest);
    if (!m) break;
    out.set(i, [rest.slice(0, m.index), Number(m[1])]);
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
};

/** Each argv list runs through the real commands in one process; returns code, stdout, stderr per case. */
export function runCli(cases: string[][], env: Record<string, string> = {}): CliResult[] {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/cli/runner.ts', JSON.stringify(cases)], {
    cwd: ROOT, // the cases' relative paths (test/fixtures/...) are the repository's
    encoding: 'utf8',
    env: { ...process.env, STYLECLIP_DEBUG: '', STYLECLIP_CACHE: CACHE, ...env },
    maxBuffer: 64 << 20,
  });
  const out = split(r.stdout, cases.length);
  const err = split(r.stderr, cases.length);
  return cases.map((c, i) => {
    const o = out.get(i);
    const e = err.get(i);
    if (!o || !e)
      throw new Error(
        `case ${i} (${c.join(' ')}) did not finish (exit ${r.status}):\n${r.stderr.slice(-3000)}`,
      );
    return { code: o[1], stdout: o[0], stderr: e[0] };
  });
}

/** One invocation of the real entry point (src/cli/main.ts), for what needs its own process. */
export function runMain(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, STYLECLIP_DEBUG: '', STYLECLIP_CACHE: CACHE, ...env },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

// CPU pinning shared by the benchmarks: the servers on CPU 0, autocannon (the benchmark's own
// process) on CPU 1, with `taskset` (util-linux). Why: see run-vs-bare.ts. BENCH_PIN=0 turns it off.
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';

/**
 * Pins this process, every thread of it, to CPU 1; whether it did (not with BENCH_PIN=0, on one
 * CPU, or without taskset).
 *
 * @example
 *   const pinned = pinLoadGenerator()
 *   spawn(...onServerCpu(pinned, [process.execPath, 'dist/src/server.js']))
 */
export function pinLoadGenerator() {
  if (process.env.BENCH_PIN === '0' || cpus().length < 2) return false;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    console.warn('taskset is not available: servers and autocannon are not pinned to CPUs');
    return false;
  }
}

/** `argv` (a program and its arguments) as the command line that starts it on CPU 0 when `pinned`. */
export function onServerCpu(pinned, argv) {
  return pinned ? ['taskset', '-c', '0', ...argv] : argv;
}

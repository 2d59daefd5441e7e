// Measures, in one run on one machine, a bare Fastify JSON route and Runway's `POST /runs` on the
// `echo` workflow with `token_delay_ms: 0`, each server in its own process, autocannon in this one.
//
//   npm run bench                       # builds, then 10 rounds of 3 s bursts per target, 50 connections
//   BENCH_DURATION=5 BENCH_CONNECTIONS=100 BENCH_ROUNDS=20 npm run bench
//   BENCH_INPUTS='one input|another input' npm run bench    # echo inputs to measure, `|`-separated
//
// This VM's speed drifts by tens of percent from minute to minute (the bare route measured 11.4k
// and 22.2k req/s in two rounds of one run). So every server is started once and kept up, and the
// targets take turns in short bursts, in mirrored order (bare first in one round, last in the
// next): drift hits the targets of one round alike, and each round's ratio is taken against that
// round's bare route. The median of those ratios is the figure.
//
// On a machine of two or more CPUs the servers are pinned to CPU 0 and autocannon (this process)
// to CPU 1, with `taskset` (util-linux): unpinned, the scheduler lets autocannon and the server
// take turns on both CPUs, so the bare route is partly limited by its client and a round's ratio
// depends on where the scheduler put things (one unpinned run gave rounds of 48% and 93%).
// Pinned, each server is limited by its own CPU, its garbage collector's helper threads included.
// BENCH_PIN=0 turns it off.
//
// Extra Node flags for the servers (e.g. NODE_FLAGS="--cpu-prof --cpu-prof-dir=prof") go through
// NODE_FLAGS. Results are printed as a Markdown table for BENCHMARKS.md.
//
// Against the previous build as well: BENCH_BASE=<commit> (e.g. `BENCH_BASE=2702415 npm run bench`)
// builds that commit in a temporary worktree (bench/builds.mjs) and runs it next to this tree's
// build, input by input, in the same interleaved rounds: Runway-base, Runway-head and the bare
// route side by side, and each round's head/base ratio, whose median (with its 95% interval) is
// the "at least 90% of the previous build" figure. Unset, nothing changes.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import autocannon from 'autocannon';
import { baseBuild } from './builds.mjs';
import { onServerCpu, pinLoadGenerator } from './cpu-pinning.mjs';
import { median, medianInterval } from './stats.mjs';

const duration = Number(process.env.BENCH_DURATION ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const warmup = Number(process.env.BENCH_WARMUP ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
const nodeFlags = (process.env.NODE_FLAGS ?? '').split(' ').filter(Boolean);

const pinned = pinLoadGenerator();
// The previous build, compiled in a temporary worktree (removed at exit), when asked for.
const base = process.env.BENCH_BASE ? baseBuild(process.env.BENCH_BASE) : undefined;
const loadNote = () => `load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} at ${new Date().toISOString().slice(0, 19)}Z`;
const loadAtStart = loadNote();

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return port;
}

async function waitUp(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} never came up`);
}

interface Result {
  reqPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

interface Target {
  name: string;
  child: ChildProcess;
  opts: autocannon.Options;
  results: Result[];
}

async function start(name: string, args: string[], env: Record<string, string>, probe: string, input: string, cwd?: string): Promise<Target> {
  const port = await freePort();
  const [command, ...rest] = onServerCpu(pinned, [process.execPath, ...nodeFlags, ...args]);
  const child = spawn(command, rest, {
    cwd,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  await waitUp(`${base}${probe}`, child);
  const opts = { url: `${base}/runs`, method: 'POST' as const, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input }), connections };
  return { name, child, opts, results: [] };
}

async function burst(t: Target, seconds: number): Promise<Result> {
  const r = await autocannon({ ...t.opts, duration: seconds });
  return { reqPerSec: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}

const inputs = (process.env.BENCH_INPUTS ?? 'hello from the benchmark, one word at a time|hi').split('|');
const targets: Target[] = [await start('bare Fastify route', ['--import', 'tsx', 'bench/bare-server.ts'], {}, '/runs', inputs[0]!)];
for (const input of inputs) {
  // Runway runs from its build (`npm run bench` builds first), as `npm start` and the image do,
  // on its default settings (10,000 finished runs retained: the warm-up fills the store). The base
  // build runs from its own worktree, with that tree's config file.
  const what = `POST /runs, echo (token_delay_ms 0), input of ${input.split(' ').length} word(s)`;
  const env = { RUNWAY_ECHO_DELAY_MS: '0', RUNWAY_CONFIG: 'config/runway.yaml' };
  const args = ['--enable-source-maps', 'dist/src/server.js'];
  if (base) targets.push(await start(`Runway-base (${base.commit.slice(0, 7)}) ${what}`, args, env, '/healthz', input, base.root));
  targets.push(await start(`${base ? 'Runway-head (working tree) ' : 'Runway '}${what}`, args, env, '/healthz', input));
}
try {
  for (const t of targets) await burst(t, warmup);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) t.results.push(await burst(t, duration));
  }
} finally {
  for (const t of targets) {
    t.child.kill('SIGTERM');
    await once(t.child, 'exit');
  }
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const [bare, ...runway] = targets as [Target, ...Target[]];
const ratios = runway.map((t) => t.results.map((r, i) => r.reqPerSec / bare.results[i]!.reqPerSec));
console.log(
  `\nNode ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${pinned ? 'servers pinned to CPU 0 and autocannon to CPU 1' : 'not pinned'}, ${connections} connections, ${rounds} rounds of ${duration} s per target (mirrored order), ${warmup} s warm-up each\n`,
);
console.log('| target | req/s median (min–max) | p50 ms | p99 ms | non-2xx | errors | of bare: median (min–max of rounds) |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const [i, t] of targets.entries()) {
  const rps = t.results.map((r) => r.reqPerSec);
  const sum = (f: (r: Result) => number) => t.results.reduce((a, r) => a + f(r), 0);
  const ratio = i === 0 ? '' : `${pct(median(ratios[i - 1]!))} (${pct(Math.min(...ratios[i - 1]!))}–${pct(Math.max(...ratios[i - 1]!))})`;
  console.log(
    `| ${t.name} | ${Math.round(median(rps))} (${Math.round(Math.min(...rps))}–${Math.round(Math.max(...rps))}) | ${median(t.results.map((r) => r.p50))} | ${median(t.results.map((r) => r.p99))} | ${sum((r) => r.non2xx)} | ${sum((r) => r.errors)} | ${ratio} |`,
  );
}
console.log('\nPer round, req/s (ratio to that round\'s bare route):\n');
console.log(`| round | ${targets.map((t) => t.name).join(' | ')} |`);
console.log(`| --- | ${targets.map(() => '---').join(' | ')} |`);
for (let round = 0; round < rounds; round++) {
  const cells = targets.map((t, i) => `${Math.round(t.results[round]!.reqPerSec)}${i === 0 ? '' : ` (${pct(ratios[i - 1]![round]!)})`}`);
  console.log(`| ${round + 1} | ${cells.join(' | ')} |`);
}
console.log('');
for (const [i, t] of runway.entries()) {
  const [lo, hi] = medianInterval(ratios[i]!);
  console.log(`median ratio, ${t.name}: ${pct(median(ratios[i]!))} of bare (95% interval of the median over rounds: ${pct(lo)}–${pct(hi)})`);
}
if (base) {
  console.log(`\nstart: ${loadAtStart}; end: ${loadNote()} (other work on the machine shows here)`);
  // Head against base, input by input: each round's ratio of the two, measured in the same round.
  console.log('');
  for (let i = 0; i + 1 < runway.length; i += 2) {
    const [a, b] = [runway[i]!, runway[i + 1]!];
    const headOfBase = b.results.map((r, round) => r.reqPerSec / a.results[round]!.reqPerSec);
    const [lo, hi] = medianInterval(headOfBase);
    const m = median(headOfBase);
    console.log(
      `median ratio, head of base (${base.commit.slice(0, 7)}), ${b.name.replace(/^Runway-head \(working tree\) /, '')}: ${pct(m)} (95% interval of the median over rounds: ${pct(lo)}–${pct(hi)}; rounds ${pct(Math.min(...headOfBase))}–${pct(Math.max(...headOfBase))})${m >= 0.9 ? '' : '  << below 90%'}`,
    );
  }
}

// Measures, in one run on one machine, a bare Fastify JSON route and Runway's `POST /runs` on the
// `echo` workflow with `token_delay_ms: 0`, each server in its own process, autocannon in this one.
//
//   npm run bench                       # builds, then 10 s per target, 50 connections
//   BENCH_DURATION=20 BENCH_CONNECTIONS=100 BENCH_ROUNDS=5 npm run bench
//   BENCH_INPUTS='one input|another input' npm run bench    # echo inputs to measure, `|`-separated
//
// Extra Node flags for the servers (e.g. NODE_FLAGS="--cpu-prof --cpu-prof-dir=prof") go through
// NODE_FLAGS. Results are printed as a Markdown table for BENCHMARKS.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import autocannon from 'autocannon';

const duration = Number(process.env.BENCH_DURATION ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const warmup = Number(process.env.BENCH_WARMUP ?? 3);
const nodeFlags = (process.env.NODE_FLAGS ?? '').split(' ').filter(Boolean);

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
  name: string;
  reqPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

async function measure(name: string, args: string[], env: Record<string, string>, probe: string, input: string): Promise<Result> {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeFlags, ...args], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitUp(`${base}${probe}`, child);
    const body = JSON.stringify({ input });
    const opts = { url: `${base}/runs`, method: 'POST' as const, headers: { 'content-type': 'application/json' }, body, connections };
    await autocannon({ ...opts, duration: warmup });
    const r = await autocannon({ ...opts, duration });
    return { name, reqPerSec: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
}

// This machine's speed drifts by tens of percent from minute to minute (a shared VM): the targets
// are measured in alternating rounds and the ratio is taken per round, then the median reported.
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const inputs = (process.env.BENCH_INPUTS ?? 'hello from the benchmark, one word at a time|hi').split('|');
const bareRuns: Result[] = [];
const runwayRuns: Result[][] = inputs.map(() => []);
for (let round = 0; round < rounds; round++) {
  bareRuns.push(await measure('bare Fastify route', ['--import', 'tsx', 'bench/bare-server.ts'], {}, '/runs', inputs[0]!));
  for (const [i, input] of inputs.entries()) {
    // Runway runs from its build (`npm run bench` builds first), as `npm start` and the image do.
    runwayRuns[i]!.push(
      await measure(
        `Runway POST /runs, echo (token_delay_ms 0), input of ${input.split(' ').length} word(s)`,
        ['--enable-source-maps', 'dist/src/server.js'],
        { RUNWAY_ECHO_DELAY_MS: '0', RUNWAY_CONFIG: 'config/runway.yaml' },
        '/healthz',
        input,
      ),
    );
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const row = (r: Result, round: number, ratio?: number) =>
  `| ${round + 1} | ${r.name} | ${Math.round(r.reqPerSec)} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${ratio === undefined ? '' : `${(ratio * 100).toFixed(1)}%`} |`;
console.log(`\nNode ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${connections} connections, ${duration} s per target after ${warmup} s warm-up, ${rounds} rounds\n`);
console.log('| round | target | req/s | p50 ms | p99 ms | non-2xx | errors | of bare |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (let round = 0; round < rounds; round++) {
  console.log(row(bareRuns[round]!, round));
  for (const runs of runwayRuns) console.log(row(runs[round]!, round, runs[round]!.reqPerSec / bareRuns[round]!.reqPerSec));
}
console.log('');
for (const runs of runwayRuns) {
  const ratios = runs.map((r, i) => r.reqPerSec / bareRuns[i]!.reqPerSec);
  console.log(`median ratio, ${runs[0]!.name}: ${(median(ratios) * 100).toFixed(1)}% of bare`);
}

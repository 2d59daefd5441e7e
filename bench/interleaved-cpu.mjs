// Server CPU per request for two builds (or settings) of Runway, measured in interleaved bursts.
//
// This VM's speed drifts by tens of percent from minute to minute, so two targets measured one
// after the other are not comparable. Here both servers run at once and take turns: short bursts
// of requests go to A, then B, then B, then A..., and each server's CPU time (user + system, from
// /proc/<pid>/stat, so Linux only) is summed per burst. Drift hits both alike; the ratio is the
// figure to read.
//
//   node bench/interleaved-cpu.mjs [bursts=16] [requests per burst=5000]
//   A_DIST=/path/to/other/build node bench/interleaved-cpu.mjs        # a build's output dir (default: dist)
//   B_ENV='{"RUNWAY_MAX_RUNS":"10"}' node bench/interleaved-cpu.mjs   # extra env for one side
//   B_BODY='{"input":"hi","background":true}' node bench/interleaved-cpu.mjs
//   A_DIST=bare node bench/interleaved-cpu.mjs     # bench/bare-server.ts as A: Runway's CPU per request against the bare route's
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import autocannon from 'autocannon';
import { onServerCpu, pinLoadGenerator } from './cpu-pinning.mjs';

// Both servers on CPU 0 and autocannon on CPU 1, as in run-vs-bare.ts (BENCH_PIN=0 turns it off).
const pinned = pinLoadGenerator();

const [bursts = '16', perBurst = '5000'] = process.argv.slice(2);
const input = process.env.INPUT ?? 'hello from the benchmark, one word at a time';

async function freePort() {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

async function start(label) {
  const dist = process.env[`${label}_DIST`] ?? 'dist';
  const port = await freePort();
  // Node flags for one side (NODE_OPTIONS refuses some, e.g. --single-threaded-gc): A_NODE_FLAGS='--flag'.
  const flags = (process.env[`${label}_NODE_FLAGS`] ?? '').split(' ').filter(Boolean);
  const entry = dist === 'bare' ? ['--import', 'tsx', 'bench/bare-server.ts'] : [`${dist}/src/server.js`];
  const [command, ...rest] = onServerCpu(pinned, [process.execPath, ...flags, ...entry]);
  const child = spawn(command, rest, {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', RUNWAY_ECHO_DELAY_MS: '0', ...JSON.parse(process.env[`${label}_ENV`] ?? '{}') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      await (await fetch(`${base}/healthz`)).arrayBuffer();
      break;
    } catch {
      if (i > 200 || child.exitCode !== null) throw new Error(`${label} did not start`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const opts = { url: `${base}/runs`, method: 'POST', headers: { 'content-type': 'application/json' }, body: process.env[`${label}_BODY`] ?? JSON.stringify({ input }), connections: 50 };
  const cpuTicks = () => {
    const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(fields[11]) + Number(fields[12]);
  };
  return { label, child, opts, cpuTicks, ticks: 0, requests: 0 };
}

async function burst(s) {
  const before = s.cpuTicks();
  const r = await autocannon({ ...s.opts, amount: Number(perBurst) });
  if (r.non2xx || r.errors) console.log(`${s.label}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  const used = s.cpuTicks() - before;
  s.ticks += used;
  s.requests += Number(perBurst);
  return used;
}

const a = await start('A');
const b = await start('B').catch((err) => {
  a.child.kill('SIGTERM');
  throw err;
});
try {
  // Warm-up past the JIT and, with the default 10,000 retained runs, into steady-state retention.
  await autocannon({ ...a.opts, amount: 20_000 });
  await autocannon({ ...b.opts, amount: 20_000 });
  const ratios = [];
  for (let i = 0; i < Number(bursts); i++) {
    const [first, second] = i % 2 ? [a, b] : [b, a];
    const x = await burst(first);
    const y = await burst(second);
    ratios.push(first === b ? x / y : y / x);
  }
  ratios.sort((p, q) => p - q);
  const us = (s) => ((s.ticks * 1e6) / 100 / s.requests).toFixed(1); // 100 ticks per second
  console.log(`A ${us(a)} µs of server CPU per request, B ${us(b)}; B/A: ${(b.ticks / a.ticks).toFixed(3)} in all, ${ratios[ratios.length >> 1].toFixed(3)} median of ${bursts} burst pairs`);
} finally {
  a.child.kill('SIGTERM');
  b.child.kill('SIGTERM');
}

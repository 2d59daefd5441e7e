// The runtime alone, no HTTP: `createRuntime` → `session.run(input)` → `result()`, 16 runs in flight
// (the default 8 permits, so half of them wait), echo with no delay. Prints the process's CPU per
// run, best of 5 rounds after a warm-up. Under valgrind (bench/runtime-instructions.sh) it switches
// callgrind's instrumentation on after the warm-up and off after the measured runs.
//
//   node bench/runtime-alone.mjs [build root, default this tree]   (npm run build first)
//   WARM=32000 COUNT=24000 node bench/runtime-alone.mjs /tmp/other-build
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(process.argv[2] ?? new URL('..', import.meta.url).pathname);
const { createRuntime } = await import(pathToFileURL(`${root}/dist/src/index.js`).href);
const silent = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };
const runtime = await createRuntime({ config: { workflows: { echo: { type: 'echo', token_delay_ms: 0 } } }, log: silent });
const session = runtime.session({ userId: 'bench' });
const input = 'the quick brown fox jumps over the lazy dog';
const underValgrind = process.env.RUNTIME_CALLGRIND === '1';

async function worker(n) {
  for (let i = 0; i < n; i++) await (await session.run(input, { workflow: 'echo' })).result();
}
async function round(total) {
  await Promise.all(Array.from({ length: 16 }, () => worker(Math.ceil(total / 16))));
}
/** callgrind_control on this process, with the event loop turning so valgrind sees the request. */
function callgrind(...args) {
  return new Promise((done) => {
    const spin = setInterval(() => {}, 5);
    execFile('callgrind_control', [...args, String(process.pid)], () => {
      clearInterval(spin);
      done();
    });
  });
}

const count = Number(process.env.COUNT ?? 24000);
await round(Number(process.env.WARM ?? 32000));
if (underValgrind) {
  await callgrind('-i', 'on');
  await round(count);
  await callgrind('-i', 'off');
} else {
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage();
    await round(count);
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / count);
  }
  console.log(`${root}: ${best.toFixed(1)} µs of CPU per run (best of 5 rounds of ${count})`);
}
await runtime.close();

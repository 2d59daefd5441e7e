// Retained runs: heap and throughput with 10,000 finished runs kept.
//
//   node bench/retained-runs.mjs                   # A (BENCH_BASE, default 2702415) and B (this tree)
//   BENCH_BUILDS=head RETAINED_ROUNDS=20 node bench/retained-runs.mjs
//
// Both servers are started at once (pinned to CPU 0, this process on CPU 1), on default settings
// (max_runs 10,000) but for echo at no delay, each with --expose-gc and bench/gc-on-signal.cjs
// preloaded, so that SIGUSR2 runs a full collection in it (nothing is added to src/). For each:
// 100 blocking runs (the bench's 9-word input), a full collection, then its heap used and external
// memory (GET /metrics) and RSS (VmRSS): "at 100 runs". Then RETAINED_FILL (9,900) more runs, so it
// keeps 10,000 finished runs (checked: the very first run is still readable), a quiet
// RETAINED_QUIET_S (5 s), the same readings without a collection and then after one: "at 10,000".
// The difference over 9,900 is the cost of one retained run: on the heap, and in external memory
// (Buffers and other memory V8 is told about, where the old build's arena keeps finished runs).
//
// Then the throughput of `POST /runs` at that point (still 10,000 retained: each new run evicts
// the oldest), the two servers taking turns in RETAINED_DURATION (3 s) bursts of autocannon
// (RETAINED_CONNECTIONS = 50), RETAINED_ROUNDS (10) rounds in mirrored order after a 5 s warm-up
// burst each: req/s medians, and the median of each round's B/A ratio with its 95% interval
// (the bootstrap of run-vs-bare.ts). And the heap once more after those runs.
import autocannon from 'autocannon';
import { buildsFromEnv } from './builds.mjs';
import { pinLoadGenerator } from './cpu-pinning.mjs';
import { loadNote, mb, request, sleep, startServer } from './server-process.mjs';
import { median, medianInterval, pct } from './stats.mjs';

const FIRST = 100;
const FILL = Number(process.env.RETAINED_FILL ?? 9900);
const QUIET_MS = Number(process.env.RETAINED_QUIET_S ?? 5) * 1000;
const ROUNDS = Number(process.env.RETAINED_ROUNDS ?? 10);
const DURATION = Number(process.env.RETAINED_DURATION ?? 3);
const CONNECTIONS = Number(process.env.RETAINED_CONNECTIONS ?? 50);
const INPUT = process.env.RETAINED_INPUT ?? 'hello from the benchmark, one word at a time';

const builds = buildsFromEnv();
const pinned = pinLoadGenerator();
const loadAtStart = loadNote();
const servers = [];

const load = (server, extra) =>
  autocannon({ url: `${server.base}/runs`, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: INPUT }), ...extra });

async function reading(server, { collect }) {
  if (collect) await server.gc();
  const m = await server.metrics();
  return { heap: m.runway_nodejs_heap_size_used_bytes, external: m.runway_nodejs_external_memory_bytes, rss: server.rssKb() };
}

try {
  for (const build of builds) servers.push(await startServer(build, { pinned, gcSignal: true, env: { RUNWAY_ECHO_DELAY_MS: '0' } }));
  const state = [];
  for (const server of servers) {
    const first = await request(server.base, 'POST', '/runs', { input: INPUT });
    if (first.status !== 200) throw new Error(`${server.build.label}: ${first.status} ${JSON.stringify(first.body)}`);
    const r1 = await load(server, { connections: 8, amount: FIRST - 1 });
    const at100 = await reading(server, { collect: true });
    const r2 = await load(server, { connections: 32, amount: FILL });
    await sleep(QUIET_MS);
    const quiet = await reading(server, { collect: false });
    const at10k = await reading(server, { collect: true });
    const oldest = await request(server.base, 'GET', `/runs/${first.body.id}`);
    state.push({ server, at100, quiet, at10k, oldestKept: oldest.status === 200, fillErrors: r1.non2xx + r1.errors + r2.non2xx + r2.errors, results: [] });
  }

  for (const s of state) await load(s.server, { connections: CONNECTIONS, duration: 5 });
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of round % 2 === 0 ? state : [...state].reverse()) {
      const r = await load(s.server, { connections: CONNECTIONS, duration: DURATION });
      s.results.push({ reqPerSec: r.requests.average, bad: r.non2xx + r.errors });
    }
  }
  for (const s of state) s.after = await reading(s.server, { collect: true });

  const retained = FIRST + FILL;
  console.log(`\nRetained runs: ${retained} finished echo runs (no delay, ${INPUT.split(' ').length} words) per server, ${pinned ? 'pinned' : 'not pinned'}; heap and external from /metrics after a full collection unless noted\n`);
  const n = retained.toLocaleString('en-US');
  console.log(`| build | heap used at ${FIRST} runs | at ${n} (no GC, after ${QUIET_MS / 1000} s quiet) | at ${n} | per retained run, heap | external at ${FIRST} → ${n} | per retained run, external | RSS at ${FIRST} → ${n} | per retained run, RSS | oldest run still kept |`);
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of state) {
    const per = (a, b) => `${((b - a) / (retained - FIRST) / 1024).toFixed(2)} kB`;
    console.log(
      `| ${s.server.build.label} | ${mb(s.at100.heap / 1024)} | ${mb(s.quiet.heap / 1024)} | ${mb(s.at10k.heap / 1024)} | ${per(s.at100.heap, s.at10k.heap)} | ${mb(s.at100.external / 1024)} → ${mb(s.at10k.external / 1024)} | ${per(s.at100.external, s.at10k.external)} | ${mb(s.at100.rss)} → ${mb(s.at10k.rss)} | ${per(s.at100.rss * 1024, s.at10k.rss * 1024)} | ${s.oldestKept ? 'yes' : 'NO'} |`,
    );
  }
  console.log(`\nPOST /runs with ${retained} runs retained, ${ROUNDS} rounds of ${DURATION} s per server (mirrored order), ${CONNECTIONS} connections:\n`);
  console.log(`| round | ${state.map((s) => s.server.build.label).join(' | ')} |${state.length === 2 ? ' B/A |' : ''}`);
  console.log(`| --- | ${state.map(() => '---').join(' | ')} |${state.length === 2 ? ' --- |' : ''}`);
  for (let round = 0; round < ROUNDS; round++) {
    const cells = state.map((s) => Math.round(s.results[round].reqPerSec));
    console.log(`| ${round + 1} | ${cells.join(' | ')} |${state.length === 2 ? ` ${pct(state[1].results[round].reqPerSec / state[0].results[round].reqPerSec)} |` : ''}`);
  }
  console.log('');
  for (const s of state) {
    const rps = s.results.map((r) => r.reqPerSec);
    console.log(
      `${s.server.build.label}: ${Math.round(median(rps))} req/s median (${Math.round(Math.min(...rps))}–${Math.round(Math.max(...rps))}); non-2xx + errors ${s.results.reduce((a, r) => a + r.bad, 0)} (fill ${s.fillErrors}); heap after the bursts ${mb(s.after.heap / 1024)}, external ${mb(s.after.external / 1024)}, RSS ${mb(s.after.rss)}`,
    );
  }
  if (state.length === 2) {
    const ratios = state[1].results.map((r, i) => r.reqPerSec / state[0].results[i].reqPerSec);
    const [lo, hi] = medianInterval(ratios);
    console.log(`B/A median of rounds: ${pct(median(ratios))} (95% interval of the median: ${pct(lo)}–${pct(hi)})`);
  }
} finally {
  for (const server of servers) await server.stop();
}
console.log(`\nstart: ${loadAtStart}; end: ${loadNote()}`);

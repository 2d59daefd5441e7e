// RSS soak: is a server's memory flat over 100,000 runs?
//
//   node bench/rss-soak.mjs                        # A (BENCH_BASE, default 2702415) and B (this tree)
//   BENCH_BUILDS=head SOAK_RUNS=50000 node bench/rss-soak.mjs
//
// Both servers are started at once (pinned to CPU 0, autocannon in this process on CPU 1, as in
// run-vs-bare.ts), on default settings but for echo at no delay (so 10,000 finished runs retained).
// Each gets SOAK_WARMUP (10,000) blocking `POST /runs` (echo, the bench's 9-word input, SOAK_CONNECTIONS
// = 32 connections), then SOAK_RUNS (100,000) more in chunks of SOAK_CHUNK (10,000), the two servers
// taking turns chunk by chunk (mirrored order, so drift hits both alike). After the warm-up and after
// each chunk the server's RSS (VmRSS) is read, with its heap used from /metrics, no collection forced.
//
// Figure: the largest deviation of a sample from the median of the samples taken from the end of
// the warm-up on, in %. Target (DESIGN §12): flat within ±10%.
//
// The heap used of the samples includes garbage not yet collected (the old generation is collected
// only when it reaches a limit V8 raises as it goes), so the servers are started with --expose-gc
// and bench/gc-on-signal.cjs, and twice, right after the warm-up's sample and after the last one, a
// full collection is run and the live heap and RSS read: a leak shows as live heap that grows.
import autocannon from 'autocannon';
import { buildsFromEnv } from './builds.mjs';
import { pinLoadGenerator } from './cpu-pinning.mjs';
import { loadNote, mb, startServer } from './server-process.mjs';
import { median } from './stats.mjs';

const WARMUP = Number(process.env.SOAK_WARMUP ?? 10_000);
const RUNS = Number(process.env.SOAK_RUNS ?? 100_000);
const CHUNK = Number(process.env.SOAK_CHUNK ?? 10_000);
const CONNECTIONS = Number(process.env.SOAK_CONNECTIONS ?? 32);
const INPUT = process.env.SOAK_INPUT ?? 'hello from the benchmark, one word at a time';

const builds = buildsFromEnv();
const pinned = pinLoadGenerator();
const loadAtStart = loadNote();
const servers = [];
try {
  for (const build of builds) servers.push(await startServer(build, { pinned, gcSignal: true, env: { RUNWAY_ECHO_DELAY_MS: '0' } }));
  const state = servers.map((server) => ({ server, done: 0, samples: [], live: [], non2xx: 0, errors: 0 }));
  const live = async (s) => {
    await s.server.gc();
    s.live.push({ runs: s.done, heap: (await s.server.metrics()).runway_nodejs_heap_size_used_bytes, rss: s.server.rssKb() });
  };
  const chunk = async (s, amount) => {
    const r = await autocannon({
      url: `${s.server.base}/runs`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: INPUT }),
      connections: CONNECTIONS,
      amount,
    });
    s.done += amount;
    s.non2xx += r.non2xx;
    s.errors += r.errors;
    const heap = (await s.server.metrics()).runway_nodejs_heap_size_used_bytes;
    s.samples.push({ runs: s.done, rss: s.server.rssKb(), heap });
  };
  for (const s of state) await chunk(s, WARMUP);
  for (const s of state) await live(s);
  const chunks = Math.ceil(RUNS / CHUNK);
  for (let i = 0; i < chunks; i++) {
    const amount = Math.min(CHUNK, RUNS - i * CHUNK);
    for (const s of i % 2 === 0 ? state : [...state].reverse()) await chunk(s, amount);
  }
  for (const s of state) await live(s);

  console.log(`\nRSS soak: ${WARMUP} warm-up + ${RUNS} blocking echo runs (no delay, ${INPUT.split(' ').length} words) per server, ${CONNECTIONS} connections, ${pinned ? 'pinned' : 'not pinned'}; samples after the warm-up and every ${CHUNK} runs\n`);
  // (No runs/s here: autocannon's `amount` mode ends on its 1 s tick, so a chunk's time is coarse.)
  console.log(`| runs | ${state.map((s) => `${s.server.build.label} RSS | heap used`).join(' | ')} |`);
  console.log(`| --- | ${state.map(() => '--- | ---').join(' | ')} |`);
  for (let i = 0; i < state[0].samples.length; i++) {
    const cells = state.map((s) => {
      const x = s.samples[i];
      return `${mb(x.rss)} | ${mb(x.heap / 1024)}`;
    });
    console.log(`| ${state[0].samples[i].runs} | ${cells.join(' | ')} |`);
  }
  console.log('');
  for (const s of state) {
    const rss = s.samples.map((x) => x.rss);
    const m = median(rss);
    const dev = Math.max(...rss.map((x) => Math.abs(x - m) / m));
    const drift = (rss[rss.length - 1] - rss[0]) / rss[0];
    console.log(
      `${s.server.build.label}: RSS median ${mb(m)}, range ${mb(Math.min(...rss))}–${mb(Math.max(...rss))}, largest deviation from the median ${(dev * 100).toFixed(1)}% (target ±10%: ${dev <= 0.1 ? 'met' : 'NOT met'}), last − first sample ${(drift * 100).toFixed(1)}%; non-2xx ${s.non2xx}, errors ${s.errors}`,
    );
    const [a, b] = s.live;
    console.log(`  after a full collection: at ${a.runs} runs heap used ${mb(a.heap / 1024)}, RSS ${mb(a.rss)}; at ${b.runs} runs heap used ${mb(b.heap / 1024)}, RSS ${mb(b.rss)}`);
  }
} finally {
  for (const server of servers) await server.stop();
}
console.log(`\nstart: ${loadAtStart}; end: ${loadNote()}`);

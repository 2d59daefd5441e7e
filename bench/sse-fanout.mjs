// SSE fan-out: server memory per open stream with N (default 10,000) followers of ONE run.
//
//   node bench/sse-fanout.mjs                      # A (BENCH_BASE, default 2702415) then B (this tree), N = 10,000
//   BENCH_BUILDS=head FANOUT_N=2000 node bench/sse-fanout.mjs
//
// For each build, in turn (never two servers at once): a server with a slow echo
// (RUNWAY_ECHO_DELAY_MS = FANOUT_DELAY_MS, default 2,000 ms a word: few events go by while the
// followers open, so each replays little and opening 10,000 takes seconds; at 250 ms each one
// replayed hundreds of events and opening took over 3 minutes), started with --expose-gc and
// bench/gc-on-signal.cjs so that a full collection can be run in it from here. A warm-up run
// followed to its end by FANOUT_WARMUP (500) followers; then ONE background run of FANOUT_WORDS
// (600) words; 3 s later a full collection, then the server's RSS (VmRSS of /proc/<pid>/status)
// and heap used as "before". Then N followers of `GET /runs/:id/stream` are opened from this one
// process over raw TCP sockets (HTTP/1.1; the chunked body and the SSE frames parsed by hand,
// keeping only ids and event names, so one process holds 10,000 cheaply), at most
// FANOUT_CONNECT_CONCURRENCY (200) waiting for their headers at a time. Once all N are open and
// each has received an event sent after the last one opened ("open and streaming"), the RSS is
// read ("at all-open"), then FANOUT_SAMPLES (10) more times 1 s apart while events keep coming,
// then once more after a full collection (streams still open). The run is then cancelled
// (FANOUT_END=finish waits for its natural end instead, ~FANOUT_WORDS × FANOUT_DELAY_MS), and every
// follower must have received every event id from 1 to the terminal event's, with no gap, and the
// terminal event itself.
//
// Figures: (RSS − RSS_before) / N, kB per open stream: at all-open, over the samples after it
// (median, min–max), and after the full collection. Target (DESIGN §12): ≤ 20 kB. Under this load
// the RSS is a sawtooth (every event makes N frames of garbage, and the old generation grows
// between major collections), so the instant reading depends on where the collector is; the
// reading after a collection is the memory the open streams keep.
//
// File descriptors: this process needs N + a few hundred. If the soft `ulimit -n` is too low and
// the hard limit allows, the script re-runs itself under `sh -c 'ulimit -n <hard>'` (the server,
// its child, inherits the limit); otherwise it stops and says so.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { buildsFromEnv } from './builds.mjs';
import { median } from './stats.mjs';
import { pinLoadGenerator } from './cpu-pinning.mjs';
import { loadNote, mb, request, sleep, startServer, tcpKernelKb, waitUntil } from './server-process.mjs';

const N = Number(process.env.FANOUT_N ?? 10_000);
const DELAY_MS = Number(process.env.FANOUT_DELAY_MS ?? 2000);
const WORDS = Number(process.env.FANOUT_WORDS ?? 600);
const WARMUP = Number(process.env.FANOUT_WARMUP ?? 500);
const CONNECT_CONCURRENCY = Number(process.env.FANOUT_CONNECT_CONCURRENCY ?? 200);
const OPEN_TIMEOUT_MS = Number(process.env.FANOUT_OPEN_TIMEOUT_S ?? 180) * 1000;
const END = process.env.FANOUT_END ?? 'cancel';
const SAMPLES = Number(process.env.FANOUT_SAMPLES ?? 10);

ensureFileLimit(N + 512);

const TERMINAL = new Set(['run.succeeded', 'run.failed', 'run.cancelled']);

/** Re-runs this script with a raised soft fd limit when it is too low for `needed`. */
function ensureFileLimit(needed) {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const soft = m?.[1] === 'unlimited' ? Infinity : Number(m?.[1]);
  const hard = m?.[2] === 'unlimited' ? Infinity : Number(m?.[2]);
  if (soft >= needed) return;
  if (hard < needed || process.env.FANOUT_REEXEC === '1') {
    console.error(`sse-fanout: needs ${needed} file descriptors, ulimit -n is ${soft} (hard ${hard}): raise it (e.g. in /etc/security/limits.conf) or lower FANOUT_N`);
    process.exit(1);
  }
  const limit = hard === Infinity ? String(needed) : String(hard);
  console.error(`sse-fanout: raising ulimit -n from ${soft} to ${limit}`);
  try {
    execFileSync('sh', ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, FANOUT_REEXEC: '1' },
    });
    process.exit(0);
  } catch (err) {
    process.exit(typeof err.status === 'number' ? err.status : 1);
  }
}

/**
 * One follower on a raw socket: reads the status line and headers, de-chunks the body and keeps of
 * the SSE frames only what the check needs (ids and event names; data lines are skipped unread).
 */
class Follower {
  constructor(port, path, onHeaders, onClose, onEvent) {
    this.status = 0;
    this.head = '';
    this.inBody = false;
    this.chunked = false;
    this.chunkLeft = -1; // > 0: body bytes left in the chunk; -1: reading a size line; -2: the CRLF after a chunk; -3: after the last chunk
    this.sizeLine = '';
    this.line = '';
    this.skipping = false;
    this.curId = -1;
    this.curEvent = '';
    this.nextId = 1;
    this.events = 0;
    this.gaps = 0;
    this.lastId = 0;
    this.terminal = '';
    this.terminalId = 0;
    this.bodyDone = false;
    this.closed = false;
    this.error = '';
    this.onEvent = onEvent;
    const socket = (this.socket = net.connect({ host: '127.0.0.1', port }));
    socket.on('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n`));
    socket.on('data', (buf) => {
      const s = buf.latin1Slice(0, buf.length);
      if (this.inBody) return this.body(s);
      this.head += s;
      const end = this.head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.head.slice(0, end);
      const rest = this.head.slice(end + 4);
      this.head = '';
      this.inBody = true;
      this.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      this.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
      onHeaders(this);
      if (rest) this.body(rest);
    });
    socket.on('error', (err) => {
      this.error ||= err.code ?? err.message;
    });
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      this.closed = true;
      if (!this.inBody) onHeaders(this);
      onClose(this);
    });
  }

  body(s) {
    if (!this.chunked) return this.sse(s, 0, s.length);
    let i = 0;
    while (i < s.length) {
      if (this.chunkLeft > 0) {
        const n = Math.min(this.chunkLeft, s.length - i);
        this.sse(s, i, i + n);
        i += n;
        this.chunkLeft -= n;
        if (this.chunkLeft === 0) this.chunkLeft = -2;
      } else if (this.chunkLeft === -2 || this.chunkLeft === -1) {
        const nl = s.indexOf('\n', i);
        if (nl < 0) {
          if (this.chunkLeft === -1) this.sizeLine += s.slice(i);
          return;
        }
        if (this.chunkLeft === -2) {
          this.chunkLeft = -1;
        } else {
          const size = parseInt(this.sizeLine + s.slice(i, nl), 16);
          this.sizeLine = '';
          this.chunkLeft = size > 0 ? size : -3;
          if (!(size > 0)) this.bodyDone = true;
        }
        i = nl + 1;
      } else {
        return; // trailers after the last chunk
      }
    }
  }

  sse(s, from, to) {
    let i = from;
    while (i < to) {
      const nl = s.indexOf('\n', i);
      if (nl < 0 || nl >= to) {
        if (!this.skipping) {
          this.line += s.slice(i, to);
          // A long line is a data line (ids and event names are short): not kept.
          if (this.line.length > 40) {
            this.skipping = true;
            this.line = '';
          }
        }
        return;
      }
      if (this.skipping) this.skipping = false;
      else this.field(this.line + s.slice(i, nl));
      this.line = '';
      i = nl + 1;
    }
  }

  field(line) {
    if (line === '') {
      if (this.curId >= 0 || this.curEvent !== '') this.dispatch();
    } else if (line.startsWith('id:')) {
      this.curId = Number(line.slice(line[3] === ' ' ? 4 : 3));
    } else if (line.startsWith('event:')) {
      this.curEvent = line.slice(line[6] === ' ' ? 7 : 6);
    }
  }

  dispatch() {
    const id = this.curId;
    if (id !== this.nextId) this.gaps++;
    this.nextId = id + 1;
    this.lastId = id;
    this.events++;
    if (TERMINAL.has(this.curEvent)) {
      this.terminal = this.curEvent;
      this.terminalId = id;
    }
    this.curId = -1;
    this.curEvent = '';
    this.onEvent(id);
  }

  /** Whether it got every id 1..terminal, nothing after it, and the terminal event. */
  get complete() {
    return this.status === 200 && this.gaps === 0 && this.terminal !== '' && this.lastId === this.terminalId && this.events === this.terminalId;
  }
}

/** Opens `count` followers of `runId`, at most CONNECT_CONCURRENCY awaiting headers at once. */
function openFollowers(server, runId, count) {
  const group = { all: [], open: 0, failed: 0, closed: 0, maxId: 0 };
  let started = 0;
  let waiting = 0;
  const onEvent = (id) => {
    if (id > group.maxId) group.maxId = id;
  };
  const onHeaders = (f) => {
    if (f.counted) return;
    f.counted = true;
    waiting--;
    if (f.status === 200) group.open++;
    else group.failed++;
    pump();
  };
  const onClose = () => {
    group.closed++;
  };
  const pump = () => {
    while (started < count && waiting < CONNECT_CONCURRENCY) {
      started++;
      waiting++;
      group.all.push(new Follower(server.port, `/runs/${runId}/stream`, onHeaders, onClose, onEvent));
    }
  };
  pump();
  return group;
}

function verify(group, lastEventId) {
  let complete = 0;
  let gaps = 0;
  let noTerminal = 0;
  let wrongLast = 0;
  const statuses = {};
  const errors = {};
  for (const f of group.all) {
    if (f.complete && f.terminalId === lastEventId) complete++;
    if (f.gaps) gaps++;
    if (!f.terminal) noTerminal++;
    if (f.terminal && f.terminalId !== lastEventId) wrongLast++;
    statuses[f.status] = (statuses[f.status] ?? 0) + 1;
    if (f.error) errors[f.error] = (errors[f.error] ?? 0) + 1;
  }
  return { complete, gaps, noTerminal, wrongLast, statuses, errors };
}

const wordsOf = (n) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');

async function measure(build, pinned) {
  const server = await startServer(build, { pinned, gcSignal: true, env: { RUNWAY_ECHO_DELAY_MS: String(DELAY_MS), RUNWAY_RUN_TIMEOUT_MS: String(WORDS * DELAY_MS + 300_000), RUNWAY_MAX_STREAMS_PER_USER: '0' } });
  try {
    // Warm-up: a short live run followed to its end by WARMUP followers.
    const warm = await request(server.base, 'POST', '/runs', { input: wordsOf(20), workflow: 'echo', background: true });
    if (warm.status !== 202) throw new Error(`warm-up run: ${warm.status} ${JSON.stringify(warm.body)}`);
    const wg = openFollowers(server, warm.body.id, WARMUP);
    await waitUntil(() => wg.closed === WARMUP, { timeoutMs: 60_000 + 20 * DELAY_MS });
    const warmRun = await request(server.base, 'GET', `/runs/${warm.body.id}`);
    const warmCheck = verify(wg, warmRun.body.last_event_id);
    wg.all.length = 0;

    const run = await request(server.base, 'POST', '/runs', { input: wordsOf(WORDS), workflow: 'echo', background: true });
    if (run.status !== 202) throw new Error(`run: ${run.status} ${JSON.stringify(run.body)}`);
    const runId = run.body.id;
    await sleep(3000);
    // A full collection first, as for the reading after the samples: both of live memory.
    await server.gc();
    const before = { rss: server.rssKb(), heap: (await server.metrics()).runway_nodejs_heap_size_used_bytes, tcp: tcpKernelKb() };

    const t0 = Date.now();
    const g = openFollowers(server, runId, N);
    const allAnswered = await waitUntil(() => g.open + g.failed === N, { timeoutMs: OPEN_TIMEOUT_MS, everyMs: 100 });
    const openMs = Date.now() - t0;
    // Streaming: every follower has an event sent after the last one opened.
    const mark = g.maxId;
    const streaming = await waitUntil(() => g.all.every((f) => f.closed || f.lastId > mark), { timeoutMs: 60_000 + 20 * DELAY_MS });
    const stillOpen = g.all.filter((f) => !f.closed).length;
    const atOpen = { rss: server.rssKb(), tcp: tcpKernelKb(), eventsSoFar: g.maxId };
    const samples = [];
    for (let i = 0; i < SAMPLES; i++) {
      await sleep(1000);
      samples.push(server.rssKb());
    }
    const stillOpenAfter = g.all.filter((f) => !f.closed).length;
    const heapOpen = (await server.metrics()).runway_nodejs_heap_size_used_bytes;
    await server.gc();
    const afterGc = { rss: server.rssKb(), heap: (await server.metrics()).runway_nodejs_heap_size_used_bytes, open: g.all.filter((f) => !f.closed).length };
    const clientRss = Math.round(process.memoryUsage().rss / 1024);

    const tEnd = Date.now();
    if (END === 'cancel') await request(server.base, 'POST', `/runs/${runId}/cancel`);
    const ended = await waitUntil(() => g.closed === N, { timeoutMs: END === 'cancel' ? 120_000 : 120_000 + WORDS * DELAY_MS, everyMs: 200 });
    const endMs = Date.now() - tEnd;
    const final = await request(server.base, 'GET', `/runs/${runId}`);
    const check = verify(g, final.body.last_event_id);
    for (const f of g.all) if (!f.closed) f.socket.destroy();
    return {
      build,
      warmCheck,
      before,
      atOpen,
      samples,
      heapOpen,
      afterGc,
      clientRss,
      openMs,
      allAnswered,
      streaming,
      stillOpen,
      stillOpenAfter,
      open: g.open,
      failed: g.failed,
      ended,
      endMs,
      run: final.body,
      check,
      perStreamKb: (atOpen.rss - before.rss) / N,
      perStream: [median(samples), Math.min(...samples), Math.max(...samples)].map((rss) => (rss - before.rss) / N),
    };
  } finally {
    await server.stop();
  }
}

const builds = buildsFromEnv();
const pinned = pinLoadGenerator();
const loadAtStart = loadNote();
const results = [];
for (const build of builds) {
  console.error(`${build.label}: ${N} followers…`);
  const r = await measure(build, pinned);
  results.push(r);
  console.log(`\n${build.label} (${build.commit.slice(0, 7)}), ${N} followers of one run, echo ${DELAY_MS} ms a word, ${WORDS} words:`);
  console.log(`  warm-up: ${r.warmCheck.complete}/${WARMUP} followers complete`);
  console.log(`  all ${N} answered: ${r.allAnswered} in ${(r.openMs / 1000).toFixed(1)} s (200: ${r.open}, other: ${r.failed}); streaming: ${r.streaming}, ${r.stillOpen} open at the measurement, ${r.atOpen.eventsSoFar} events sent by then`);
  console.log(`  server RSS before ${mb(r.before.rss)}, at all-open ${mb(r.atOpen.rss)}, then each second: ${r.samples.map((kb) => (kb / 1024).toFixed(1)).join(', ')} MB (${r.stillOpenAfter} still open after them)`);
  console.log(`  after a full collection (${r.afterGc.open} streams open): RSS ${mb(r.afterGc.rss)}, ${((r.afterGc.rss - r.before.rss) / N).toFixed(1)} kB per stream; heap used ${mb(r.afterGc.heap / 1024)}, ${((r.afterGc.heap - r.before.heap) / 1024 / N).toFixed(1)} kB per stream`);
  console.log(`  server heap used before ${mb(r.before.heap / 1024)}, after the samples ${mb(r.heapOpen / 1024)}; kernel TCP buffers (all sockets) ${mb(r.before.tcp)} → ${mb(r.atOpen.tcp)}; this client's RSS ${mb(r.clientRss)}`);
  const [med, lo, hi] = r.perStream.map((x) => x.toFixed(1));
  console.log(`  per open stream: ${r.perStreamKb.toFixed(1)} kB at all-open; over the ${SAMPLES} s after it ${med} kB median (${lo}–${hi}) — target ≤ 20 kB: ${r.perStreamKb <= 20 && r.perStream[0] <= 20 ? 'met' : r.perStream[0] <= 20 ? 'met by the median, not at all-open' : 'NOT met'}`);
  console.log(`  run ${r.run.status}, last_event_id ${r.run.last_event_id}; all followers ended: ${r.ended} (${(r.endMs / 1000).toFixed(1)} s after the ${END === 'cancel' ? 'cancel' : 'measurement'})`);
  console.log(`  check: ${r.check.complete}/${N} got every id 1..${r.run.last_event_id} and the terminal event; with a gap: ${r.check.gaps}; no terminal: ${r.check.noTerminal}; other last id: ${r.check.wrongLast}; statuses ${JSON.stringify(r.check.statuses)}; socket errors ${JSON.stringify(r.check.errors)}`);
}
console.log(`\n| build | followers open | time to open | RSS before | RSS all open | kB per stream at all-open | kB per stream, median (min–max) of the next ${SAMPLES} s | kB per stream after a full GC: RSS, heap | followers complete |`);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  const [med, lo, hi] = r.perStream.map((x) => x.toFixed(1));
  console.log(`| ${r.build.label} | ${r.open}/${N} | ${(r.openMs / 1000).toFixed(1)} s | ${mb(r.before.rss)} | ${mb(r.atOpen.rss)} | ${r.perStreamKb.toFixed(1)} | ${med} (${lo}–${hi}) | ${((r.afterGc.rss - r.before.rss) / N).toFixed(1)}, ${((r.afterGc.heap - r.before.heap) / 1024 / N).toFixed(1)} | ${r.check.complete}/${N} |`);
}
const ok = results.every((r) => r.check.complete === N);
process.exitCode = ok ? 0 : 1;
console.log(`\nstart: ${loadAtStart}; end: ${loadNote()}`);

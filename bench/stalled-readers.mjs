// Stalled readers: server memory per reader of a finished run's stream that stopped reading.
//
//   node bench/stalled-readers.mjs                  # A (BENCH_BASE, default 2702415) then B (this tree)
//   BENCH_BUILDS=head STALL_READERS=200 STALL_LOGS=20000x0 node bench/stalled-readers.mjs
//
// For each event log of STALL_LOGS (default `6000x0,9000x110`: WORDSxCHARS, CHARS padding each word
// of the echo input, 0 for short words `w0 w1 …`: a ~1.1 MiB log of 6,007 short events, and a
// ~5.3 MiB log from a ~1 MB input, which echo's WORKFLOW steps and terminal event repeat), and for
// each build in turn: a fresh server with echo at no delay and RUNWAY_MAX_EVENTS_PER_RUN raised to
// fit; ONE blocking echo run of that input (its log's size is measured: the stream read in full,
// 3 times, which is also the warm-up); 3 s later the server's RSS (VmRSS) as "before". Then
// STALL_READERS (1,000) readers each send `GET /runs/:id/stream`, read the response headers and
// never read again. The server's RSS is polled every second until it is stable (the last 5
// readings within 2% of each other), for at most STALL_MAX_WAIT_S (120 s) after the last reader
// opened. Figure: (RSS_stable − RSS_before) / readers open.
//
// The readers (STALL_CLIENT): `python` (default; bench/stalled-clients.py) sets a 1460-byte MSS and
// a 16 KiB receive buffer on each socket before connecting, as a client across Ethernet would
// announce; `node` uses plain `net` sockets and `socket.pause()`. Why it matters: on loopback
// (MTU 64 KiB) Linux sizes a connection's send buffer from the MSS, so with `node` readers the
// kernel takes 1-4 MiB of every stalled stream (a whole 1 MiB log: measured 112 MB of kernel TCP
// memory for 100 readers and 30 kB each in the server) and 1,000 of them would push the machine's
// TCP memory toward its limit (net.ipv4.tcp_mem), for every process on it. Kernel TCP memory
// (/proc/net/sockstat) is printed alongside.
//
// Safety: if the server's RSS passes STALL_RSS_LIMIT_MB (6,144), or the kernel's TCP memory
// STALL_TCP_LIMIT_MB (1,024), no more readers are opened (the python client is stopped; its
// sockets close), and the figure is of the readers open at that point, with how many they were.
// A server that dies on the way (V8's default heap limit on this machine is ~4 GB, below the RSS
// limit) is reported so, with its last RSS reading and the readers opened by then.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildsFromEnv } from './builds.mjs';
import { pinLoadGenerator } from './cpu-pinning.mjs';
import { loadNote, mb, request, sleep, startServer, tcpKernelKb, waitUntil } from './server-process.mjs';

const READERS = Number(process.env.STALL_READERS ?? 1000);
const LOGS = (process.env.STALL_LOGS ?? '6000x0,9000x110').split(',').map((spec) => {
  const [words, chars = '0'] = spec.trim().split('x');
  return { words: Number(words), chars: Number(chars) };
});
const CLIENT = process.env.STALL_CLIENT ?? 'python';
const MSS = Number(process.env.STALL_MSS ?? 1460);
const RCVBUF = Number(process.env.STALL_RCVBUF ?? 16384);
const CONNECT_CONCURRENCY = Number(process.env.STALL_CONNECT_CONCURRENCY ?? 50);
const MAX_WAIT_MS = Number(process.env.STALL_MAX_WAIT_S ?? 120) * 1000;
const RSS_LIMIT_KB = Number(process.env.STALL_RSS_LIMIT_MB ?? 6144) * 1024;
const TCP_LIMIT_KB = Number(process.env.STALL_TCP_LIMIT_MB ?? 1024) * 1024;

/** `n` words, `w0 w1 …`, each padded to `chars` characters when it is not 0. */
const wordsOf = (n, chars) => Array.from({ length: n }, (_, i) => (chars ? `w${i}`.padEnd(chars, 'x') : `w${i}`)).join(' ');

/**
 * Readers with the python client: resolves `done` with { open, statuses, errors } once all were
 * tried; `progress()` is how many were tried so far; `stop()` closes them all.
 */
function pythonReaders(port, path, count) {
  const child = spawn('python3', [join(import.meta.dirname, 'stalled-clients.py'), '127.0.0.1', String(port), path, String(count), String(MSS), String(RCVBUF)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let tried = 0;
  const done = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('opened ')) tried = Number(line.slice(7));
      else if (line.startsWith('{')) {
        tried = count;
        resolve(JSON.parse(line));
      }
    });
    child.once('exit', (code, signal) => resolve({ open: 0, statuses: {}, errors: { exited: `${code ?? signal}` } }));
    child.once('error', reject);
  });
  return {
    done,
    progress: () => tried,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      // Its sockets close with it (the kernel's doing, at once).
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Readers on plain `net` sockets, paused once their headers are in. Same interface. */
function nodeReaders(port, path, count) {
  const readers = [];
  let started = 0;
  let waiting = 0;
  let answered = 0;
  let stopped = false;
  let resolveDone;
  const done = new Promise((resolve) => (resolveDone = resolve));
  const finish = () => {
    const statuses = {};
    const errors = {};
    for (const r of readers) {
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1;
    }
    resolveDone({ open: readers.filter((r) => r.status === 200 && !r.closed).length, statuses, errors });
  };
  const onHeaders = () => {
    waiting--;
    answered++;
    if (answered === count) finish();
    else pump();
  };
  const pump = () => {
    while (!stopped && started < count && waiting < CONNECT_CONCURRENCY) {
      started++;
      waiting++;
      const r = { status: 0, error: '', headers: false, closed: false };
      let head = '';
      const socket = (r.socket = net.connect({ host: '127.0.0.1', port }));
      socket.on('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`));
      const onData = (buf) => {
        head += buf.latin1Slice(0, buf.length);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        r.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
        r.headers = true;
        head = '';
        socket.off('data', onData);
        socket.pause();
        onHeaders();
      };
      socket.on('data', onData);
      socket.on('error', (err) => {
        r.error ||= err.code ?? err.message;
      });
      socket.on('close', () => {
        r.closed = true;
        if (!r.headers) {
          r.headers = true;
          onHeaders();
        }
      });
      readers.push(r);
    }
  };
  pump();
  return {
    done,
    progress: () => answered,
    async stop() {
      stopped = true;
      for (const r of readers) r.socket.destroy();
      if (answered < count) finish();
    },
  };
}

async function measure(build, pinned, log) {
  const server = await startServer(build, {
    pinned,
    env: { RUNWAY_MAX_STREAMS_PER_USER: '0', RUNWAY_ECHO_DELAY_MS: '0', RUNWAY_MAX_EVENTS_PER_RUN: String(log.words + 100), RUNWAY_BODY_LIMIT_BYTES: String(Math.max(1 << 20, log.words * (log.chars + 16))) },
  });
  let readers;
  try {
    const run = await request(server.base, 'POST', '/runs', { input: wordsOf(log.words, log.chars), workflow: 'echo' });
    if (run.status !== 200) throw new Error(`run: ${run.status} ${JSON.stringify(run.body).slice(0, 300)}`);
    const path = `/runs/${run.body.id}/stream`;
    let logBytes = 0;
    let logEvents = 0;
    for (let i = 0; i < 3; i++) {
      const text = await (await fetch(`${server.base}${path}`)).text();
      logBytes = Buffer.byteLength(text);
      logEvents = text.split('\nevent: ').length - 1;
    }
    await sleep(3000);
    const before = { rss: server.rssKb(), heap: (await server.metrics()).runway_nodejs_heap_size_used_bytes, tcp: tcpKernelKb() };

    const t0 = Date.now();
    readers = (CLIENT === 'node' ? nodeReaders : pythonReaders)(server.port, path, READERS);
    let peak = before.rss;
    let tripped = '';
    let allTried = false;
    readers.done.then(() => (allTried = true));
    let lastRss = before.rss;
    let readersAtLast = 0;
    const check = () => {
      let rss;
      try {
        rss = server.rssKb();
      } catch {
        // The server is gone (the old build's heap limit, for one): its last reading stands.
        if (!server.alive) tripped ||= `the server died (${server.exitReason})`;
        return lastRss;
      }
      lastRss = rss;
      readersAtLast = readers.progress();
      if (rss > peak) peak = rss;
      if (rss > RSS_LIMIT_KB) tripped ||= `server RSS passed ${mb(RSS_LIMIT_KB)}`;
      if (tcpKernelKb() > TCP_LIMIT_KB) tripped ||= `kernel TCP memory passed ${mb(TCP_LIMIT_KB)}`;
      return rss;
    };
    await waitUntil(() => (check(), tripped !== '' || allTried), { timeoutMs: MAX_WAIT_MS, everyMs: 100 });
    const openMs = Date.now() - t0;
    const triedAtTrip = readers.progress();
    if (tripped) console.error(`${build.label}: ${tripped} after ~${server.alive ? triedAtTrip : readersAtLast} readers: stopping there`);

    // Until stable: the last 5 readings, 1 s apart, within 2% of each other (still watching the limits).
    const readings = [];
    const t1 = Date.now();
    const stable = await waitUntil(
      () => {
        readings.push(check());
        if (tripped) return true;
        const last = readings.slice(-5);
        return last.length === 5 && Math.max(...last) - Math.min(...last) <= 0.02 * Math.max(...last);
      },
      { timeoutMs: MAX_WAIT_MS, everyMs: 1000 },
    );
    const settleMs = Date.now() - t1;
    const rssAfter = check();
    const died = !server.alive;
    const after = { rss: rssAfter, heap: died ? NaN : (await server.metrics()).runway_nodejs_heap_size_used_bytes, tcp: tcpKernelKb() };
    let healthMs = NaN;
    if (!died) {
      const th = Date.now();
      await (await fetch(`${server.base}/healthz`)).arrayBuffer();
      healthMs = Date.now() - th;
    }
    if (!allTried) await readers.stop();
    const outcome = await readers.done;
    // Stopped early: the readers tried by the last reading (counted in tens by the python client).
    const open = died ? readersAtLast : tripped && !allTried ? triedAtTrip : outcome.open;

    await readers.stop();
    await sleep(3000);
    const released = server.alive ? server.rssKb() : NaN;
    return { build, log, logBytes, logEvents, before, after, peak, tripped, stable: stable && !tripped, readings, openMs, settleMs, open, outcome, healthMs, released, perReaderKb: (after.rss - before.rss) / Math.max(1, open) };
  } finally {
    await readers?.stop();
    await server.stop();
  }
}

const builds = buildsFromEnv();
const pinned = pinLoadGenerator();
const loadAtStart = loadNote();
const results = [];
for (const log of LOGS) for (const build of builds) {
  console.error(`${build.label}: ${READERS} stalled readers (${CLIENT} client) of a run of ${log.words} words…`);
  const r = await measure(build, pinned, log);
  results.push(r);
  console.log(`\n${build.label} (${build.commit.slice(0, 7)}), ${READERS} stalled readers (${CLIENT === 'python' ? `python client, MSS ${MSS}, SO_RCVBUF ${RCVBUF}` : 'node client, paused sockets'}) of one finished run of ${log.words} words${log.chars ? ` of ${log.chars} characters` : ''}:`);
  console.log(`  the run's log: ${r.logEvents} events, ${(r.logBytes / 1048576).toFixed(2)} MiB as SSE`);
  console.log(`  readers: ${r.open} open (client's report: ${JSON.stringify(r.outcome)}), ${r.tripped ? 'stopped' : 'all answered'} after ${(r.openMs / 1000).toFixed(1)} s`);
  if (r.tripped) console.log(`  STOPPED EARLY: ${r.tripped} (peak RSS ${mb(r.peak)}) with ${r.open} readers open: the figure below is theirs`);
  console.log(`  server RSS before ${mb(r.before.rss)}, after ${mb(r.after.rss)} (${r.tripped ? 'stopped early' : r.stable ? `stable after ${(r.settleMs / 1000).toFixed(0)} s` : `not stable within ${(r.settleMs / 1000).toFixed(0)} s`}; readings ${r.readings.map((kb) => (kb / 1024).toFixed(0)).join(', ')} MB), peak ${mb(r.peak)}`);
  console.log(`  server heap used before ${mb(r.before.heap / 1024)}, after ${Number.isNaN(r.after.heap) ? '(server gone)' : mb(r.after.heap / 1024)}; kernel TCP buffers (all sockets) ${mb(r.before.tcp)} → ${mb(r.after.tcp)}; /healthz with them open: ${Number.isNaN(r.healthMs) ? '(server gone)' : `${r.healthMs} ms`}`);
  console.log(`  per stalled reader: ${(r.perReaderKb / 1024).toFixed(2)} MB (${r.perReaderKb.toFixed(0)} kB); the log is ${(r.logBytes / 1024).toFixed(0)} kB`);
  console.log(`  RSS 3 s after the readers were cut: ${Number.isNaN(r.released) ? 'server gone' : mb(r.released)}`);
}
console.log(`\n${CLIENT} client${CLIENT === 'python' ? ` (MSS ${MSS}, SO_RCVBUF ${RCVBUF})` : ''}:`);
console.log(`\n| build | log (events, MiB) | readers open | RSS before | RSS stalled | per reader | heap before → stalled | kernel TCP | RSS after cut |`);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  console.log(
    `| ${r.build.label} | ${r.logEvents}, ${(r.logBytes / 1048576).toFixed(2)} | ${r.open}/${READERS}${r.tripped ? ` (stopped: ${r.tripped})` : ''} | ${mb(r.before.rss)} | ${mb(r.after.rss)}${r.stable || r.tripped ? '' : ' (not stable)'}${r.tripped && Number.isNaN(r.released) ? ' (last reading before it died)' : ''} | ${r.perReaderKb.toFixed(0)} kB | ${mb(r.before.heap / 1024)} → ${Number.isNaN(r.after.heap) ? '(gone)' : mb(r.after.heap / 1024)} | ${mb(r.before.tcp)} → ${mb(r.after.tcp)} | ${Number.isNaN(r.released) ? 'server gone' : mb(r.released)} |`,
  );
}
console.log(`\nstart: ${loadAtStart}; end: ${loadNote()}`);

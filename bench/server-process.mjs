// A Runway server in its own process for the memory benchmarks: started from a build of
// builds.mjs, on 127.0.0.1, pinned to CPU 0 when the benchmark pinned itself to CPU 1
// (cpu-pinning.mjs), with its RSS read from /proc/<pid>/status and its /metrics parsed.
// Every server started here is killed when the benchmark's process exits.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { onServerCpu } from './cpu-pinning.mjs';

export { sleep };

const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * The TCP port process `pid` listens on, from its socket inodes and /proc/net/tcp (Linux); undefined
 * while it listens on none.
 */
export function listeningPort(pid) {
  const inodes = new Set();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return undefined;
  }
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // local_address st … inode; 0A = LISTEN
    if (f[3] === '0A' && inodes.has(f[9])) return parseInt(f[1].split(':')[1], 16);
  }
  return undefined;
}

/** VmRSS of a process, in kB (Linux). */
export function rssKb(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** Memory of all TCP sockets of the machine, in kB (the kernel's buffers, outside every RSS). */
export function tcpKernelKb() {
  const m = /^TCP:.* mem (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m ? Number(m[1]) * 4 : NaN;
}

/** The unlabelled samples of a Prometheus text page, by name. */
export async function metrics(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_:][a-z0-9_:]*) (\S+)$/i.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/**
 * Starts `build` (from builds.mjs) with `env` on a free port; resolves once /healthz answers.
 * `gcSignal`: started with --expose-gc and bench/gc-on-signal.cjs, so `server.gc()` can run a full
 * collection in it from outside.
 *
 * @example
 *   const s = await startServer(build, { pinned, env: { RUNWAY_ECHO_DELAY_MS: '0' } })
 *   s.rssKb(); await s.stop()
 */
export async function startServer(build, { env = {}, pinned = false, nodeFlags = [], gcSignal = false } = {}) {
  const flags = [...nodeFlags];
  if (gcSignal) flags.push('--expose-gc', '--require', join(import.meta.dirname, 'gc-on-signal.cjs'));
  const [command, ...args] = onServerCpu(pinned, [process.execPath, ...flags, build.server]);
  const child = spawn(command, args, {
    cwd: build.root,
    // Port 0: the server takes a free port itself and it is read back from /proc (a port picked here
    // and freed before the server binds it could be taken meanwhile: the machine runs other test
    // servers, and a probe would then reach one of theirs).
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: '0', HOST: '127.0.0.1' },
    // stdout is pino's log (a warning about the unconfigured LLM at every start): not shown.
    // stderr is passed on, its last 4 kB kept (a crash says why there).
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderrTail = '';
  child.stderr.on('data', (buf) => {
    process.stderr.write(buf);
    stderrTail = (stderrTail + buf.toString('utf8')).slice(-4096);
  });
  children.add(child);
  let stopping = false;
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (!stopping) console.error(`${build.label}: the server (pid ${child.pid}) exited on its own: ${code ?? signal}`);
  });
  let port;
  for (let i = 0; port === undefined; i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${build.label}: server exited with ${child.exitCode ?? child.signalCode}`);
    if (i > 300) throw new Error(`${build.label}: server did not listen within 30 s`);
    await sleep(100);
    port = listeningPort(child.pid);
  }
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${build.label}: server exited with ${child.exitCode ?? child.signalCode}`);
    try {
      await (await fetch(`${base}/healthz`)).arrayBuffer();
      break;
    } catch {
      if (i > 100) throw new Error(`${build.label}: /healthz did not answer within 10 s`);
      await sleep(100);
    }
  }
  return {
    build,
    child,
    pid: child.pid,
    port,
    base,
    rssKb: () => rssKb(child.pid),
    /** Whether the process is still running. */
    get alive() {
      return child.exitCode === null && child.signalCode === null;
    },
    /** How it ended, with the reason from its stderr when it says one (e.g. V8's heap limit). */
    get exitReason() {
      const oom = /FATAL ERROR: [^\n]*/.exec(stderrTail)?.[0];
      return `exit ${child.exitCode ?? child.signalCode}${oom ? `: ${oom}` : ''}`;
    },
    metrics: () => metrics(base),
    /** A full collection in the server (only with `gcSignal`), then a moment for it to finish. */
    async gc() {
      if (!gcSignal) throw new Error('started without gcSignal');
      child.kill('SIGUSR2');
      await sleep(1500);
    },
    /** SIGTERM, then SIGKILL after `graceMs`. */
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      stopping = true;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** JSON request to a server; resolves to { status, body }. */
export async function request(base, method, path, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json };
}

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` has passed; whether it did. */
export async function waitUntil(check, { timeoutMs, everyMs = 200 }) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= end) return false;
    await sleep(everyMs);
  }
}

export const mb = (kb) => `${(kb / 1024).toFixed(1)} MB`;

/** The machine's load averages (1, 5, 15 min): other work on it shows here. */
export const loadNote = () => `load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} (${cpus().length} CPUs) at ${new Date().toISOString().slice(0, 19)}Z`;

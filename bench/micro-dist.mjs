import { buildApp } from '../dist/src/app.js';
const app = await buildApp({ config: { server: { log_level: 'warn' }, workflows: { echo: { type: 'echo', token_delay_ms: 0 } } } });
await app.ready();
const rt = app.runtime;
const N = Number(process.env.N ?? 100000);
async function batch(n) {
  const ps = [];
  for (let i = 0; i < n; i++) {
    const s = await rt.createRun({ input: 'hello from the benchmark, one word at a time', userId: 'u', requestId: 'r' });
    ps.push(s.done);
  }
  await Promise.all(ps);
}
await batch(Number(process.env.WARM ?? 20000));
const t0 = performance.now();
for (let i = 0; i < N / 50; i++) await batch(50);
console.log(`${Math.round(N / ((performance.now() - t0) / 1000))} runs/s`);
await app.close();

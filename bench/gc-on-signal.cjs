// Preloaded into a server by the memory benchmarks (node --expose-gc --require bench/gc-on-signal.cjs):
// SIGUSR2 runs a full garbage collection, so heap figures read from /metrics afterwards are of live
// objects only. Adds nothing else to the server.
'use strict';
process.on('SIGUSR2', () => {
  if (typeof globalThis.gc === 'function') globalThis.gc();
});

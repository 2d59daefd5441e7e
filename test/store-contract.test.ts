import { createMemoryStores } from '../src/store/memory/memory-stores.js';
import { slowStores } from './support/slow-stores.js';
import { describeStoreContract } from './support/store-contract.js';

const memory = () => createMemoryStores({ runTtlS: 3600, maxRuns: 10_000, sweepIntervalMs: 3_600_000 });

describeStoreContract('memory', memory);
describeStoreContract('slow (memory behind jittered macrotask delays)', () => slowStores(memory(), { maxMs: 3 }));

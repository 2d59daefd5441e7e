import { jsonMember, jsonString } from './json-text.js';
import { usageJson, type Run } from './run.js';

/** A finished run's parts, as the memory store's event log holds them (see Entry in memory-store.ts). */
export interface SealedRun {
  userId: string;
  run: Run;
  baseMs: number;
  tokenSteps: string[] | undefined;
  /** Four numbers per event: type code, ms offset, token step, end of its text in `blob`. */
  meta: number[];
  blob: string;
}

const SLAB_BYTES = 1 << 20;
/** Handles are `slot * SLAB_BYTES + offset`, kept below 2^30 so V8 stores them unboxed. */
const SLOTS = 1 << 10;
const HEADER_BYTES = 40;

/**
 * Finished runs kept outside the JavaScript heap, in 1 MiB buffers filled one after the other.
 *
 * Why (BENCHMARKS.md): with 10,000 finished runs retained, every run's record, log arrays and texts
 * survived young-generation collections and were copied twice (to the survivor space, then to the
 * old generation), ~3.6 kB per request, which made scavenges take ~6 ms instead of ~2 and garbage
 * collection the largest cost of a request. Bytes in a Buffer are not the collector's to copy or
 * scan: what a finished run leaves on the heap is its id and a number in a map. Writing the
 * record is a UTF-8 encode; reading it (replays, GET /runs/:id, listings: rare next to writes)
 * decodes and parses it.
 *
 * Runs are evicted in the order they finished and are written in that order, so buffers empty in
 * order too; a buffer is dropped when its last run is freed. The arena holds at most 1,024 buffers
 * (1 GiB, more if runs larger than 1 MiB each take a buffer of their own); when that is full `put`
 * declines and the store keeps the run on the heap instead.
 *
 * @example
 *   const handle = arena.put(parts)   // a number, or undefined when full
 *   arena.run(handle)                 // a fresh copy of the Run
 *   arena.free(handle)
 */
export class RunArena {
  private readonly slabs: Array<Buffer | undefined> = new Array(SLOTS).fill(undefined);
  private readonly liveRecords = new Int32Array(SLOTS);
  private slot = 0;
  private at = 0;

  constructor() {
    this.slabs[0] = Buffer.allocUnsafeSlow(SLAB_BYTES);
  }

  /** Writes a finished run; its handle, or undefined when the arena is full. Throws what JSON.stringify throws. */
  put(p: SealedRun): number | undefined {
    // JSON escapes lone surrogates, so these three are well-formed; raw token text may not be, and
    // UTF-8 would replace a lone surrogate: such a text is kept as UTF-16 instead.
    const userText = jsonString(p.userId);
    const r = p.run;
    // What listings filter on, readable without decoding the whole run (its input and output can be megabytes).
    const summaryText = `[${jsonString(r.status)},${jsonString(r.workflow)},${r.conversation_id === null ? 'null' : jsonString(r.conversation_id)}]`;
    const runText = runJson(r);
    const stepsText = p.tokenSteps === undefined ? '' : JSON.stringify(p.tokenSteps);
    const blobEncoding: BufferEncoding = p.blob.isWellFormed() ? 'utf8' : 'utf16le';
    const n = p.meta.length;
    const size =
      HEADER_BYTES + n * 4 + Buffer.byteLength(userText) + Buffer.byteLength(summaryText) + Buffer.byteLength(runText) + Buffer.byteLength(stepsText) + Buffer.byteLength(p.blob, blobEncoding);
    const place = this.reserve(size);
    if (place === undefined) return undefined;
    const [slot, offset] = place;
    const buf = this.slabs[slot]!;
    let o = offset + HEADER_BYTES;
    for (let i = 0; i < n; i++, o += 4) buf.writeUInt32LE(p.meta[i]!, o);
    const userBytes = buf.write(userText, o);
    o += userBytes;
    const summaryBytes = buf.write(summaryText, o);
    o += summaryBytes;
    const runBytes = buf.write(runText, o);
    o += runBytes;
    const stepsBytes = buf.write(stepsText, o);
    o += stepsBytes;
    const blobBytes = buf.write(p.blob, o, blobEncoding);
    buf.writeUInt32LE(blobEncoding === 'utf8' ? 0 : 1, offset + 32);
    buf.writeUInt32LE(summaryBytes, offset + 36);
    buf.writeUInt32LE(size, offset);
    buf.writeUInt32LE(n, offset + 4);
    buf.writeDoubleLE(p.baseMs, offset + 8);
    buf.writeUInt32LE(userBytes, offset + 16);
    buf.writeUInt32LE(runBytes, offset + 20);
    buf.writeUInt32LE(stepsBytes, offset + 24);
    buf.writeUInt32LE(blobBytes, offset + 28);
    this.liveRecords[slot]!++;
    return slot * SLAB_BYTES + offset;
  }

  userId(handle: number): string {
    const [buf, offset] = this.locate(handle);
    const start = offset + HEADER_BYTES + buf.readUInt32LE(offset + 4) * 4;
    return JSON.parse(buf.toString('utf8', start, start + buf.readUInt32LE(offset + 16))) as string;
  }

  /** The members listings filter on. */
  summary(handle: number): Pick<Run, 'status' | 'workflow' | 'conversation_id'> {
    const [buf, offset] = this.locate(handle);
    const start = offset + HEADER_BYTES + buf.readUInt32LE(offset + 4) * 4 + buf.readUInt32LE(offset + 16);
    const [status, workflow, conversation_id] = JSON.parse(buf.toString('utf8', start, start + buf.readUInt32LE(offset + 36))) as [Run['status'], string, string | null];
    return { status, workflow, conversation_id };
  }

  /** A fresh copy of the Run. */
  run(handle: number): Run {
    const [buf, offset] = this.locate(handle);
    const start = offset + HEADER_BYTES + buf.readUInt32LE(offset + 4) * 4 + buf.readUInt32LE(offset + 16) + buf.readUInt32LE(offset + 36);
    return JSON.parse(buf.toString('utf8', start, start + buf.readUInt32LE(offset + 20))) as Run;
  }

  open(handle: number): SealedRun {
    const [buf, offset] = this.locate(handle);
    const n = buf.readUInt32LE(offset + 4);
    const meta: number[] = new Array(n);
    let o = offset + HEADER_BYTES;
    for (let i = 0; i < n; i++, o += 4) meta[i] = buf.readUInt32LE(o);
    const section = (lengthAt: number, encoding: BufferEncoding = 'utf8') => {
      const text = buf.toString(encoding, o, o + buf.readUInt32LE(offset + lengthAt));
      o += buf.readUInt32LE(offset + lengthAt);
      return text;
    };
    const userId = JSON.parse(section(16)) as string;
    section(36);
    const run = JSON.parse(section(20)) as Run;
    const steps = section(24);
    const blob = section(28, buf.readUInt32LE(offset + 32) === 0 ? 'utf8' : 'utf16le');
    return { userId, run, baseMs: buf.readDoubleLE(offset + 8), tokenSteps: steps === '' ? undefined : (JSON.parse(steps) as string[]), meta, blob };
  }

  free(handle: number): void {
    const slot = Math.floor(handle / SLAB_BYTES);
    if (--this.liveRecords[slot]! === 0 && slot !== this.slot) this.slabs[slot] = undefined;
  }

  /** Bytes held in buffers (for tests and diagnostics). */
  get bytes(): number {
    let total = 0;
    for (const slab of this.slabs) if (slab) total += slab.length;
    return total;
  }

  /** Room for `size` bytes: in the current buffer, else in the next free slot (a buffer of its own when larger than one). */
  private reserve(size: number): [slot: number, offset: number] | undefined {
    if (this.at + size <= this.slabs[this.slot]!.length) {
      const offset = this.at;
      this.at += size;
      return [this.slot, offset];
    }
    for (let i = 1; i < SLOTS; i++) {
      const slot = (this.slot + i) % SLOTS;
      if (this.slabs[slot] !== undefined) continue;
      // Allocated before anything changes: if it throws, the arena is as it was.
      const slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, size));
      // The buffer being left is dropped now if every run in it is already gone.
      if (this.liveRecords[this.slot] === 0) this.slabs[this.slot] = undefined;
      this.slabs[slot] = slab;
      this.slot = slot;
      this.at = size;
      // A record larger than a buffer gets one of its own; its handle still fits (offset 0).
      return [slot, 0];
    }
    return undefined;
  }

  private locate(handle: number): [Buffer, number] {
    const slot = Math.floor(handle / SLAB_BYTES);
    return [this.slabs[slot]!, handle - slot * SLAB_BYTES];
  }
}

/** The JSON of a Run, member for member as JSON.stringify writes it, strings quoted directly. */
export function runJson(run: Run): string {
  const input = jsonMember(run.input);
  const output = jsonMember(run.output);
  let metadata = '{}';
  for (const _ in run.metadata) {
    metadata = JSON.stringify(run.metadata);
    break;
  }
  return (
    `{"id":${jsonString(run.id)},"workflow":${jsonString(run.workflow)},"user_id":${jsonString(run.user_id)},` +
    `"conversation_id":${run.conversation_id === null ? 'null' : jsonString(run.conversation_id)},"status":${jsonString(run.status)}` +
    (input === undefined ? '' : `,"input":${input}`) +
    (output === undefined ? '' : `,"output":${output}`) +
    `,"error":${run.error === null ? 'null' : JSON.stringify(run.error)},"usage":${usageJson(run.usage)},"metadata":${metadata}` +
    `,"created_at":${jsonString(run.created_at)},"started_at":${run.started_at === null ? 'null' : jsonString(run.started_at)}` +
    `,"finished_at":${run.finished_at === null ? 'null' : jsonString(run.finished_at)},"last_event_id":${run.last_event_id}}`
  );
}

import { jsonMember, jsonString, jsonStringInner } from './json-text.js';
import { usageJson, type Run } from './run.js';

/** A finished run's parts, as the memory store's event log holds them (see Entry in memory-store.ts). */
export interface SealedRun {
  userId: string;
  run: Run;
  baseMs: number;
  tokenSteps: string[] | undefined;
  /** Four numbers per event: type code, ms offset, token step, end of its text in `blob`. */
  meta: Uint32Array;
  blob: string;
  /** The events' texts not joined yet (then `blob` is ignored): `put` joins them into its record. */
  texts?: readonly string[];
  /** `runJson(run)`, when the caller already has it. */
  runJson?: string;
}

const SLAB_BYTES = 1 << 20;
/** Handles are `slot * SLAB_BYTES + offset`, kept below 2^30 so V8 stores them unboxed. */
const SLOTS = 1 << 10;
const HEADER_BYTES = 40;
/** Above this many bytes at most, a record's exact size is counted before it is reserved. */
const ESTIMATE_LIMIT = SLAB_BYTES >> 3;

// Header fields, as 32-bit words from the record's start (and the time as a double at byte 8).
// The texts follow the event numbers in three parts, each read back by one call: `head` (the user
// id's JSON, then the listing summary), `body` (the Run's JSON, then the token step ids' JSON) and
// the blob. Char counts split a part once decoded.
const W_SIZE = 0;
const W_COUNT = 1;
const H_BASE_MS = 8;
const W_USER_CHARS = 4;
const W_HEAD_BYTES = 5;
const W_RUN_CHARS = 6;
const W_BODY_BYTES = 7;
const W_BLOB_BYTES = 8;
const W_BLOB_UTF16 = 9;

/**
 * Finished runs kept outside the JavaScript heap, in 1 MiB buffers filled one after the other.
 *
 * Why (BENCHMARKS.md): with 10,000 finished runs retained, every run's record, log arrays and texts
 * survived young-generation collections and were copied twice (to the survivor space, then to the
 * old generation), ~3.6 kB per request, which made scavenges take ~6 ms instead of ~2 and garbage
 * collection the largest cost of a request. Bytes in a Buffer are not the collector's to copy or
 * scan: what a finished run leaves on the heap is its id and a number in a map. Writing the
 * record is one UTF-8 encode (four writes when a lone surrogate keeps its blob in UTF-16);
 * reading it (replays, GET /runs/:id, listings: rare next to writes) decodes and parses it.
 *
 * Runs are evicted in the order they finished and are written in that order, so buffers empty in
 * order too. An emptied buffer is kept as the next one to write (one such spare at most), because a
 * fresh buffer's pages are each a page fault when first written: in profiles that was as much
 * CPU as the encoding. The arena holds at most 1,024 buffers (1 GiB, more if runs larger than
 * 1 MiB each take a buffer of their own); when that is full `put` declines and the store keeps
 * the run on the heap instead.
 *
 * @example
 *   const handle = arena.put(parts)   // a number, or undefined when full
 *   arena.run(handle)                 // a fresh copy of the Run
 *   arena.free(handle)
 */
export class RunArena {
  private readonly slabs: Array<Buffer | undefined> = new Array(SLOTS).fill(undefined);
  /** The same memory as `slabs`, as 32-bit words (records start 4-aligned). */
  private readonly words: Array<Uint32Array | undefined> = new Array(SLOTS).fill(undefined);
  private readonly liveRecords = new Int32Array(SLOTS);
  private spare: Buffer | undefined;
  /**
   * The Run's JSON of the last `put`, flat (a slice of the record it wrote): a response can send
   * it without the copy a string built by concatenation needs first. (The slice keeps that one
   * record's string alive until the next `put`.)
   */
  lastRunJson = '';
  private slot = 0;
  private at = 0;

  constructor() {
    this.install(0, Buffer.allocUnsafeSlow(SLAB_BYTES));
  }

  /**
   * Writes a finished run; its handle, or undefined when the arena is full. Throws what
   * JSON.stringify throws. Afterwards `lastRunJson` is the Run's JSON as written.
   */
  put(p: SealedRun): number | undefined {
    const userText = jsonString(p.userId);
    const r = p.run;
    // What listings filter on, readable without decoding the whole run (its input and output can be megabytes).
    const head = `${userText}[${jsonString(r.status)},${jsonString(r.workflow)},${r.conversation_id === null ? 'null' : jsonString(r.conversation_id)}]`;
    const runText = p.runJson ?? runJson(r);
    const stepsText = p.tokenSteps === undefined ? '' : stepIdsJson(p.tokenSteps);
    const n = p.meta.length;
    // The whole record as one string, written by one call: each write is a call into C++ that
    // flattens its string first, and a record was four. JSON escapes lone surrogates, so only the
    // events' raw token text can hold one, and UTF-8 would replace it: such a record is written in
    // parts instead, its blob as UTF-16.
    let record: string | undefined = joinRecord(head, runText, stepsText, p);
    if (!record.isWellFormed()) record = undefined;
    const blob = record === undefined ? (p.texts === undefined ? p.blob : p.texts.join('')) : '';
    // UTF-8 takes at most 3 bytes per UTF-16 unit: reserve that much and give back the rest, which
    // spares counting every text's bytes first; a large record is counted exactly instead.
    let size = HEADER_BYTES + n * 4 + (record === undefined ? 3 * (head.length + runText.length + stepsText.length) + 2 * blob.length : 3 * record.length);
    if (size > ESTIMATE_LIMIT) {
      size =
        HEADER_BYTES +
        n * 4 +
        (record === undefined
          ? Buffer.byteLength(head) + Buffer.byteLength(runText) + Buffer.byteLength(stepsText) + Buffer.byteLength(blob, 'utf16le')
          : Buffer.byteLength(record));
    }
    size = ((size + 3) >> 2) << 2;
    const place = this.reserve(size);
    if (place === undefined) return undefined;
    const [slot, offset] = place;
    const buf = this.slabs[slot]!;
    const words = this.words[slot]!;
    words.set(p.meta, (offset + HEADER_BYTES) >> 2);
    let o = offset + HEADER_BYTES + n * 4;
    let headBytes: number;
    let bodyBytes: number;
    let blobBytes: number;
    if (record !== undefined) {
      const written = buf.write(record, o);
      if (written === record.length) {
        // All ASCII: a byte per character, so the parts' sizes are their lengths.
        headBytes = head.length;
        bodyBytes = runText.length + stepsText.length;
      } else {
        // The parts end in ASCII (`]`, `}`), so no character straddles two: their bytes add up.
        headBytes = Buffer.byteLength(head);
        bodyBytes = Buffer.byteLength(runText) + Buffer.byteLength(stepsText);
      }
      blobBytes = written - headBytes - bodyBytes;
      o += written;
      // A slice of the flat record, where the Run's JSON built by concatenation is a rope.
      this.lastRunJson = record.slice(head.length, head.length + runText.length);
    } else {
      headBytes = buf.write(head, o);
      o += headBytes;
      bodyBytes = buf.write(runText, o);
      if (stepsText.length > 0) bodyBytes += buf.write(stepsText, o + bodyBytes);
      o += bodyBytes;
      blobBytes = buf.write(blob, o, 'utf16le');
      this.lastRunJson = runText;
      o += blobBytes;
    }
    // Records stay 4-aligned, so the next one's numbers can be written as words.
    const used = ((o - offset + 3) >> 2) << 2;
    if (this.slot === slot && this.at === offset + size) this.at = offset + used;
    // The header is read back through the same word view, so its byte order is the machine's throughout.
    const h = offset >> 2;
    words[h + W_SIZE] = used;
    words[h + W_COUNT] = n;
    buf.writeDoubleLE(p.baseMs, offset + H_BASE_MS);
    words[h + W_USER_CHARS] = userText.length;
    words[h + W_HEAD_BYTES] = headBytes;
    words[h + W_RUN_CHARS] = runText.length;
    words[h + W_BODY_BYTES] = bodyBytes;
    words[h + W_BLOB_BYTES] = blobBytes;
    words[h + W_BLOB_UTF16] = record === undefined ? 1 : 0;
    this.liveRecords[slot]!++;
    return slot * SLAB_BYTES + offset;
  }

  /** The members listings filter on. */
  summary(handle: number): Pick<Run, 'status' | 'workflow' | 'conversation_id'> {
    const [slot, offset] = this.locate(handle);
    const text = this.head(slot, offset).slice(this.field(slot, offset, W_USER_CHARS));
    const [status, workflow, conversation_id] = JSON.parse(text) as [Run['status'], string, string | null];
    return { status, workflow, conversation_id };
  }

  /** A fresh copy of the Run. */
  run(handle: number): Run {
    const [slot, offset] = this.locate(handle);
    return JSON.parse(this.body(slot, offset).slice(0, this.field(slot, offset, W_RUN_CHARS))) as Run;
  }

  open(handle: number): SealedRun {
    const [slot, offset] = this.locate(handle);
    const buf = this.slabs[slot]!;
    const n = this.field(slot, offset, W_COUNT);
    const w = (offset + HEADER_BYTES) >> 2;
    const meta = this.words[slot]!.slice(w, w + n);
    const userId = JSON.parse(this.head(slot, offset).slice(0, this.field(slot, offset, W_USER_CHARS))) as string;
    const body = this.body(slot, offset);
    const runChars = this.field(slot, offset, W_RUN_CHARS);
    const run = JSON.parse(body.slice(0, runChars)) as Run;
    const tokenSteps = body.length === runChars ? undefined : (JSON.parse(body.slice(runChars)) as string[]);
    const blobAt = offset + HEADER_BYTES + n * 4 + this.field(slot, offset, W_HEAD_BYTES) + this.field(slot, offset, W_BODY_BYTES);
    const blob = buf.toString(this.field(slot, offset, W_BLOB_UTF16) === 0 ? 'utf8' : 'utf16le', blobAt, blobAt + this.field(slot, offset, W_BLOB_BYTES));
    return { userId, run, baseMs: buf.readDoubleLE(offset + H_BASE_MS), tokenSteps, meta, blob };
  }

  free(handle: number): void {
    const slot = Math.floor(handle / SLAB_BYTES);
    if (--this.liveRecords[slot]! === 0 && slot !== this.slot) this.drop(slot);
  }

  /** Bytes held in buffers, the spare included (for tests and diagnostics). */
  get bytes(): number {
    let total = this.spare?.length ?? 0;
    for (const slab of this.slabs) if (slab) total += slab.length;
    return total;
  }

  /** A header word of the record at `offset`. */
  private field(slot: number, offset: number, word: number): number {
    return this.words[slot]![(offset >> 2) + word]!;
  }

  private head(slot: number, offset: number): string {
    const at = offset + HEADER_BYTES + this.field(slot, offset, W_COUNT) * 4;
    return this.slabs[slot]!.toString('utf8', at, at + this.field(slot, offset, W_HEAD_BYTES));
  }

  private body(slot: number, offset: number): string {
    const at = offset + HEADER_BYTES + this.field(slot, offset, W_COUNT) * 4 + this.field(slot, offset, W_HEAD_BYTES);
    return this.slabs[slot]!.toString('utf8', at, at + this.field(slot, offset, W_BODY_BYTES));
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
      // Taken or allocated before anything changes: if allocation throws, the arena is as it was.
      let slab: Buffer;
      if (size <= SLAB_BYTES && this.spare !== undefined) {
        slab = this.spare;
        this.spare = undefined;
      } else {
        slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, size));
      }
      // The buffer being left is dropped now if every run in it is already gone.
      const left = this.slot;
      this.install(slot, slab);
      this.slot = slot;
      this.at = size;
      if (this.liveRecords[left] === 0) this.drop(left);
      // A record larger than a buffer gets one of its own; its handle still fits (offset 0).
      return [slot, 0];
    }
    return undefined;
  }

  private install(slot: number, slab: Buffer): void {
    this.slabs[slot] = slab;
    // allocUnsafeSlow buffers are not pooled: each starts its own ArrayBuffer, so offset 0 is aligned.
    this.words[slot] = new Uint32Array(slab.buffer, slab.byteOffset, slab.length >> 2);
  }

  /** Lets go of an emptied buffer, keeping one standard-size buffer for reuse. */
  private drop(slot: number): void {
    const slab = this.slabs[slot]!;
    if (this.spare === undefined && slab.length === SLAB_BYTES) this.spare = slab;
    this.slabs[slot] = undefined;
    this.words[slot] = undefined;
  }

  private locate(handle: number): [slot: number, offset: number] {
    const slot = Math.floor(handle / SLAB_BYTES);
    return [slot, handle - slot * SLAB_BYTES];
  }
}

/** A record's texts as one flat string: head, Run JSON, step ids, then the events' texts. */
function joinRecord(head: string, runText: string, stepsText: string, p: SealedRun): string {
  const texts = p.texts;
  if (texts === undefined) return `${head}${runText}${stepsText}${p.blob}`;
  const parts = new Array<string>(texts.length + 3);
  parts[0] = head;
  parts[1] = runText;
  parts[2] = stepsText;
  for (let i = 0; i < texts.length; i++) parts[i + 3] = texts[i]!;
  return parts.join('');
}

/** `JSON.stringify(ids)` for a run's token step ids, without its C++ call when they are strings (as the Session records them). */
function stepIdsJson(ids: readonly string[]): string {
  let text = '[';
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (typeof id !== 'string') return JSON.stringify(ids);
    text += i === 0 ? jsonString(id) : `,${jsonString(id)}`;
  }
  return `${text}]`;
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
    `{"id":"${jsonStringInner(run.id)}","workflow":"${jsonStringInner(run.workflow)}","user_id":"${jsonStringInner(run.user_id)}",` +
    `"conversation_id":${run.conversation_id === null ? 'null' : jsonString(run.conversation_id)},"status":"${jsonStringInner(run.status)}"` +
    (input === undefined ? '' : `,"input":${input}`) +
    (output === undefined ? '' : `,"output":${output}`) +
    `,"error":${run.error === null ? 'null' : JSON.stringify(run.error)},"usage":${usageJson(run.usage)},"metadata":${metadata}` +
    `,"created_at":"${jsonStringInner(run.created_at)}","started_at":${run.started_at === null ? 'null' : jsonString(run.started_at)}` +
    `,"finished_at":${run.finished_at === null ? 'null' : jsonString(run.finished_at)},"last_event_id":${run.last_event_id}}`
  );
}

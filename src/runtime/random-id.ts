import { randomFillSync } from 'node:crypto';

const IDS_PER_BATCH = 256;
const UUID_LENGTH = 36;
/** Where each of a UUID's 16 bytes is written, two hex digits each, around the dashes at 8, 13, 18 and 23. */
const BYTE_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
/** A byte's two hex digits as the little-endian 16-bit word that writes them in order. */
const HEX_PAIRS = new Uint16Array(256);
for (let b = 0; b < 256; b++) {
  const digits = b.toString(16).padStart(2, '0');
  HEX_PAIRS[b] = digits.charCodeAt(0) | (digits.charCodeAt(1) << 8);
}

const random = Buffer.alloc(16 * IDS_PER_BATCH);
const text = Buffer.alloc(UUID_LENGTH * IDS_PER_BATCH);
const words = new DataView(text.buffer, text.byteOffset, text.length);
// The dashes never move: written once, and the digits written around them.
for (let o = 0; o < text.length; o += UUID_LENGTH) for (const dash of [8, 13, 18, 23]) text[o + dash] = 0x2d;
let next = IDS_PER_BATCH;

/**
 * Writes the ids of one batch as ASCII: xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx. Two digits per
 * store, from a table (a digit at a time with a branch per dash was ~1k instructions an id).
 */
function refill(): void {
  randomFillSync(random);
  for (let id = 0; id < IDS_PER_BATCH; id++) {
    const r = id * 16;
    random[r + 6] = (random[r + 6]! & 0x0f) | 0x40; // version 4
    random[r + 8] = (random[r + 8]! & 0x3f) | 0x80; // RFC 9562 variant
    const o = id * UUID_LENGTH;
    for (let b = 0; b < 16; b++) words.setUint16(o + BYTE_AT[b]!, HEX_PAIRS[random[r + b]!]!, true);
  }
  next = 0;
}

/**
 * A random (version 4) UUID, like `crypto.randomUUID()`, but as one flat string.
 *
 * Node 20's `randomUUID()` builds its result by concatenating 20 pieces, which V8 keeps as a rope
 * of ~20 string objects: for ids held as long as a run is retained (run ids are map keys, and the
 * run record, the event envelopes and the logs carry them) that is ~0.9 kB of heap per id instead
 * of ~50 bytes, and work for every garbage collection that scans them. Here the text of 256 ids is
 * written into a buffer at a time and each id is decoded from it as one sequential string.
 *
 * @example
 *   const id = randomId()   // '3b241101-e2bb-4255-8caf-4136c566a962'
 */
export function randomId(): string {
  if (next === IDS_PER_BATCH) refill();
  const start = next++ * UUID_LENGTH;
  return text.toString('latin1', start, start + UUID_LENGTH);
}

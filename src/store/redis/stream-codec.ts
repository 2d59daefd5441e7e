import type { RunEventType, StoredEvent } from '../../core/events.js';

/** One stream entry as XRANGE answers it: `[id, [field, value, …]]`. */
export type StreamEntry = [id: string, fields: string[]];

/**
 * The events of XRANGE entries. Entry ids are `<event id>-0`; fields are `t` (type), `at` (time)
 * and `d` (data), as the append script writes them.
 */
export function eventsOfEntries(entries: readonly StreamEntry[]): StoredEvent[] {
  const events: StoredEvent[] = [];
  for (const [entryId, fields] of entries) {
    let type = '';
    let time = '';
    let data = '';
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const value = fields[i + 1]!;
      if (fields[i] === 't') type = value;
      else if (fields[i] === 'at') time = value;
      else if (fields[i] === 'd') data = value;
    }
    events.push({ id: Number(entryId.slice(0, entryId.indexOf('-'))), type: type as RunEventType, time, data });
  }
  return events;
}

const TAB = 0x09;

/**
 * The events of an append notification, or undefined when it is not one the append script wrote
 * (the follower then reads the log itself). Each event is `id TAB type TAB time TAB <bytes of
 * data> TAB data`: the data's length is given, so whatever the data holds cannot cut it short.
 */
export function eventsOfNotification(payload: Buffer): StoredEvent[] | undefined {
  const events: StoredEvent[] = [];
  let at = 0;
  while (at < payload.length) {
    const t1 = payload.indexOf(TAB, at);
    const t2 = t1 < 0 ? -1 : payload.indexOf(TAB, t1 + 1);
    const t3 = t2 < 0 ? -1 : payload.indexOf(TAB, t2 + 1);
    const t4 = t3 < 0 ? -1 : payload.indexOf(TAB, t3 + 1);
    if (t4 < 0) return undefined;
    const id = Number(payload.toString('latin1', at, t1));
    const bytes = Number(payload.toString('latin1', t3 + 1, t4));
    const end = t4 + 1 + bytes;
    if (!Number.isSafeInteger(id) || !Number.isSafeInteger(bytes) || end > payload.length) return undefined;
    events.push({
      id,
      type: payload.toString('utf8', t1 + 1, t2) as RunEventType,
      time: payload.toString('utf8', t2 + 1, t3),
      data: payload.toString('utf8', t4 + 1, end),
    });
    at = end;
  }
  return events;
}

import { z } from 'zod';
import { defineTool, defineToolType, type Tool } from '../define-tool.js';

/** True when `Intl` knows the zone (IANA names such as `Europe/Paris`, plus `UTC`). */
export function isTimeZone(zone: string): boolean {
  if (zone === '' || zone.length > 64) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const timeZone = z.string().superRefine((zone, ctx) => {
  if (!isTimeZone(zone)) {
    ctx.addIssue({
      code: 'custom',
      message: `unknown time zone ${JSON.stringify(zone)}: use an IANA name such as "Europe/Paris", "America/New_York" or "UTC"`,
    });
  }
});

export interface CurrentTimeOutput {
  time_zone: string;
  /** Local date and time with the zone's offset, e.g. `2026-11-25T10:47:21+01:00`. */
  local: string;
  /** The same instant in UTC, e.g. `2026-11-25T09:47:21.000Z`. */
  utc: string;
  /** E.g. `+01:00`. */
  utc_offset: string;
  weekday: string;
}

export interface CurrentTimeOptions {
  /** Zone used when the model names none. Default `UTC`. */
  defaultTimeZone?: string;
  /** Injectable clock (tests). */
  now?: () => number;
}

/**
 * The `current_time` tool: the current date and time in a time zone the model names (IANA), so
 * it can answer "what day is it in Tokyo" instead of guessing from its training data.
 *
 * @example
 *   await currentTimeTool().run({ time_zone: 'Asia/Tokyo' }, ctx)
 *   // { time_zone: 'Asia/Tokyo', local: '2026-11-25T18:47:21+09:00', utc: '…Z', utc_offset: '+09:00', weekday: 'Wednesday' }
 */
export function currentTimeTool(name = 'current_time', options: CurrentTimeOptions = {}): Tool<{ time_zone?: string | undefined }, CurrentTimeOutput> {
  const fallback = options.defaultTimeZone ?? 'UTC';
  const now = options.now ?? Date.now;
  return defineTool({
    name,
    description: `Returns the current date and time. Optional time_zone: an IANA time zone such as "Europe/Paris" (default ${fallback}).`,
    input: z.object({
      time_zone: timeZone.optional().describe(`IANA time zone, e.g. "America/New_York"; default ${fallback}`),
    }),
    run({ time_zone }) {
      return timeIn(time_zone ?? fallback, now());
    },
  });
}

/** The instant `ms` as seen in `zone`. */
export function timeIn(zone: string, ms: number): CurrentTimeOutput {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      weekday: 'long',
      timeZoneName: 'longOffset',
    })
      .formatToParts(ms)
      .map((p) => [p.type, p.value]),
  ) as Record<string, string>;
  // `GMT+05:30`, or plain `GMT` at offset zero.
  const offset = (parts.timeZoneName ?? 'GMT').replace(/^GMT/, '') || '+00:00';
  return {
    time_zone: zone,
    local: `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}${offset}`,
    utc: new Date(ms).toISOString(),
    utc_offset: offset,
    weekday: parts.weekday ?? '',
  };
}

/** Lets the config say `clock: {type: current_time, default_time_zone: Europe/Paris}`. */
export const currentTimeToolType = defineToolType({
  type: 'current_time',
  configSchema: z
    .object({
      type: z.literal('current_time'),
      default_time_zone: timeZone.default('UTC'),
    })
    .strict(),
  create: (config, name) => currentTimeTool(name, { defaultTimeZone: config.default_time_zone }),
});

import type { Redis } from 'ioredis';

// The Lua scripts of the Redis store. Each one is a single atomic step on the server: what must
// hold between a read and a write (a log continued without gaps, a compare-and-set on status, a
// conversation trimmed to its bounds) holds without locks or WATCH retries. ioredis sends them as
// EVALSHA and falls back to EVAL on a server that has not seen them (a restart, SCRIPT FLUSH).
//
// A run's record is a hash: one field per Run field, holding its JSON text, plus bookkeeping the
// Run does not show, under names no Run field can have:
//   ~seq     creation order (what the user's index is scored by)
//   ~last    the id of the last event in the log (0: none yet)
//   ~ended   '1' once the terminal event is in
//   ~final   '1' once the status is final (the record takes no more updates)
//   ~op      the id of the last create/update applied (see "resent commands" below)
//   ~attempt the highest attempt (fencing token) an append has carried
//
// Resent commands: ioredis resends a command whose reply was lost with its connection, so a
// script may run twice for one call. Each create and update carries a fresh op id, and a script
// that finds its own op id applied already answers as it did the first time; an append that finds
// exactly its own events in the log (same ids, types, times and data) is acknowledged without
// writing. Without this a lost reply would turn a successful write into a conflict, and the
// run would fail (or, for a final status, never get its terminal event).

/**
 * Appends a batch of events: the only way events enter a stream.
 * KEYS: run hash, event stream. ARGV: ttl ms, MAXLEN, attempt ('' = unfenced), channel, n, then
 * five per event: id, terminal ('1'/'0'), type, time, data.
 * Returns {'OK', last} | {'ENDED'} | {'CONFLICT', expected, index of the event} | {'STALE', current}:
 * numbers as integer replies (Lua's own number-to-text loses digits past 14). Ids come as positive
 * integers in decimal ('0' for anything else, which never continues a log).
 */
const APPEND = `
local run, stream = KEYS[1], KEYS[2]
local ttl, maxlen, attempt, channel, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local meta = redis.call('HMGET', run, '~last', '~ended', '~attempt')
if not meta[1] then return {'ENDED'} end
local last = tonumber(meta[1])
if attempt ~= '' and meta[3] and tonumber(attempt) < tonumber(meta[3]) then return {'STALE', meta[3]} end
if n > 0 and tonumber(ARGV[6 + (n - 1) * 5]) <= last then
  local same = true
  for i = 0, n - 1 do
    local b = 6 + i * 5
    local got = redis.call('XRANGE', stream, ARGV[b] .. '-0', ARGV[b] .. '-0')[1]
    if not got or got[2][2] ~= ARGV[b + 2] or got[2][4] ~= ARGV[b + 3] or got[2][6] ~= ARGV[b + 4] then
      same = false
      break
    end
  end
  if same then return {'OK', last} end
end
if meta[2] == '1' then return {'ENDED'} end
local expected = last + 1
for i = 0, n - 1 do
  local b = 6 + i * 5
  if tonumber(ARGV[b]) ~= expected then return {'CONFLICT', expected, i} end
  if ARGV[b + 1] == '1' and i ~= n - 1 then return {'ENDED'} end
  expected = expected + 1
end
if n == 0 then return {'OK', last} end
local note = {}
for i = 0, n - 1 do
  local b = 6 + i * 5
  redis.call('XADD', stream, ARGV[b] .. '-0', 't', ARGV[b + 2], 'at', ARGV[b + 3], 'd', ARGV[b + 4])
  note[i + 1] = ARGV[b] .. '\\t' .. ARGV[b + 2] .. '\\t' .. ARGV[b + 3] .. '\\t' .. #ARGV[b + 4] .. '\\t' .. ARGV[b + 4]
end
redis.call('XTRIM', stream, 'MAXLEN', maxlen)
redis.call('HSET', run, '~last', expected - 1)
if attempt ~= '' then redis.call('HSET', run, '~attempt', attempt) end
if ARGV[6 + (n - 1) * 5 + 1] == '1' then
  redis.call('HSET', run, '~ended', '1')
  redis.call('PEXPIRE', run, ttl)
  redis.call('PEXPIRE', stream, ttl)
else
  local pttl = redis.call('PTTL', run)
  if pttl > 0 then redis.call('PEXPIRE', stream, pttl) end
end
redis.call('PUBLISH', channel, table.concat(note))
return {'OK', expected - 1}
`;

/**
 * Creates a run's record unless its id is taken.
 * KEYS: run hash. ARGV: op id, seq, ttl ms, final ('1' when created with a final status), then
 * field/value pairs. Returns 1 when created (or when this very create applied already), else 0.
 */
const CREATE = `
local run = KEYS[1]
if redis.call('EXISTS', run) == 1 then
  if redis.call('HGET', run, '~op') == ARGV[1] then return 1 end
  return 0
end
redis.call('HSET', run, '~op', ARGV[1], '~seq', ARGV[2], '~last', '0', unpack(ARGV, 5))
if ARGV[4] == '1' then
  redis.call('HSET', run, '~final', '1')
  redis.call('PEXPIRE', run, ARGV[3])
end
return 1
`;

/**
 * Compare-and-set on status: writes the patch only while the status is one of those expected.
 * A final status starts retention (the keys' TTL) once the log is complete too: its terminal
 * event in, or no event at all (otherwise the terminal event's append starts it).
 * KEYS: run hash, event stream. ARGV: op id, ttl ms, final ('1' when the patch's status is final),
 * n, n expected statuses (as JSON text), then field/value pairs. Returns 1 when applied, else 0.
 */
const UPDATE = `
local run, stream = KEYS[1], KEYS[2]
local meta = redis.call('HMGET', run, 'status', '~op', '~final', '~last', '~ended')
if not meta[1] then return 0 end
if meta[2] == ARGV[1] then return 1 end
if meta[3] == '1' then return 0 end
local n = tonumber(ARGV[4])
local allowed = false
for i = 5, 4 + n do
  if ARGV[i] == meta[1] then
    allowed = true
    break
  end
end
if not allowed then return 0 end
redis.call('HSET', run, '~op', ARGV[1], unpack(ARGV, 5 + n))
if ARGV[3] == '1' then
  redis.call('HSET', run, '~final', '1')
  if meta[5] == '1' or meta[4] == '0' then
    redis.call('PEXPIRE', run, ARGV[2])
    redis.call('PEXPIRE', stream, ARGV[2])
  end
end
return 1
`;

/**
 * Appends messages to a conversation, creating it when needed, trims it to its bounds (the oldest
 * messages go first, the newest always stays), renews its idle TTL, and evicts the least recently
 * written conversations beyond the cap. Each list entry is `<content length>\\t<message JSON>`: the
 * length is counted by the caller in UTF-16 units, as the memory store counts characters.
 * KEYS: header hash, message list, conversation index. ARGV: ttl ms, now ms, max messages, max
 * chars, max conversations, index member, the write's time (ISO), key prefix of conversations,
 * then length/JSON pairs. Returns {created_at, updated_at, {entries…}}.
 *
 * The cap's evictions delete keys the script is not given (they are found in the index): the one
 * place the store is not Redis Cluster-ready. The cap is global, so it cannot live in one slot.
 */
const APPEND_CONVERSATION = `
local head, list, index = KEYS[1], KEYS[2], KEYS[3]
local ttl, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxMessages, maxChars, maxConversations = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local member, at, prefix = ARGV[6], ARGV[7], ARGV[8]
redis.call('ZREMRANGEBYSCORE', index, '-inf', now - ttl)
if redis.call('EXISTS', head) == 0 then
  redis.call('DEL', list)
  redis.call('HSET', head, 'created_at', at, 'chars', 0)
end
local chars = tonumber(redis.call('HGET', head, 'chars'))
for i = 9, #ARGV, 2 do
  redis.call('RPUSH', list, ARGV[i] .. '\\t' .. ARGV[i + 1])
  chars = chars + tonumber(ARGV[i])
end
local count = redis.call('LLEN', list)
while count > maxMessages or (chars > maxChars and count > 1) do
  local entry = redis.call('LPOP', list)
  chars = chars - tonumber(string.match(entry, '^(%d+)'))
  count = count - 1
end
redis.call('HSET', head, 'updated_at', at, 'chars', chars)
redis.call('PEXPIRE', head, ttl)
redis.call('PEXPIRE', list, ttl)
-- Strictly after every other entry, even within one millisecond: ties would be ordered by id, not
-- by recency, and the cap would drop a conversation written after the one it keeps.
local score = now
local top = redis.call('ZREVRANGE', index, 0, 0, 'WITHSCORES')
if top[2] ~= nil and tonumber(top[2]) >= score then score = tonumber(top[2]) + 0.001 end
redis.call('ZADD', index, string.format('%.3f', score), member)
local over = redis.call('ZCARD', index) - maxConversations
if over > 0 then
  for _, gone in ipairs(redis.call('ZRANGE', index, 0, over)) do
    if over > 0 and gone ~= member then
      redis.call('DEL', prefix .. '{' .. gone .. '}', prefix .. '{' .. gone .. '}:messages')
      redis.call('ZREM', index, gone)
      over = over - 1
    end
  end
end
return {redis.call('HGET', head, 'created_at'), at, redis.call('LRANGE', list, 0, -1)}
`;

type Arg = string | number;

/** The store's commands on top of ioredis's (named `runway…` so they cannot shadow one of its own). */
export interface RunwayCommands {
  runwayAppend(run: string, stream: string, ...args: Arg[]): Promise<[string, ...(string | number)[]]>;
  runwayCreate(run: string, ...args: Arg[]): Promise<number>;
  runwayUpdate(run: string, stream: string, ...args: Arg[]): Promise<number>;
  runwayAppendConversation(head: string, list: string, index: string, ...args: Arg[]): Promise<[string, string, string[]]>;
}

export type RunwayRedis = Redis & RunwayCommands;

/**
 * Registers the scripts on a client (defineCommand: EVALSHA, EVAL when the server lacks them).
 *
 * @example
 *   const redis = defineScripts(new Redis(url))
 *   await redis.runwayCreate(keys.run(id), opId, seq, ttlMs, '0', 'status', '"queued"')
 */
export function defineScripts(redis: Redis): RunwayRedis {
  redis.defineCommand('runwayAppend', { numberOfKeys: 2, lua: APPEND });
  redis.defineCommand('runwayCreate', { numberOfKeys: 1, lua: CREATE });
  redis.defineCommand('runwayUpdate', { numberOfKeys: 2, lua: UPDATE });
  redis.defineCommand('runwayAppendConversation', { numberOfKeys: 3, lua: APPEND_CONVERSATION });
  return redis as RunwayRedis;
}

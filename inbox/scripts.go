package inbox

import "github.com/redis/go-redis/v9"

// publishScript appends one message to one stream, atomically with its
// idempotency record, the recipient's unread bookkeeping and the wake-up.
// Doing all of it in one script means a retry after any failure either
// finds the idempotency record (the entry exists) or finds nothing (no
// entry was written): never a second copy.
//
// KEYS: stream, idem[, unread, expiring]  (the last two for user inboxes)
// ARGV: useIdem, idemTTLsec, maxlen, minid, expiresAt(ms, 0 = never), wakeChannel, field, value, …
// Returns {entryID, created(0|1)}.
var publishScript = redis.NewScript(`
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev then return {prev, 0} end
end
local fields = {}
for i = 7, #ARGV do fields[#fields+1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[4])
if ARGV[1] == '1' then
  redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
end
if #KEYS >= 4 then
  local ms = tonumber(string.match(id, '^(%d+)'))
  redis.call('ZADD', KEYS[3], ms, id)
  if ARGV[5] ~= '0' then redis.call('ZADD', KEYS[4], ARGV[5], id) end
  -- Keep the unread set no larger than the stream: drop ids older than
  -- the oldest entry left after trimming.
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first > 0 then
    local fms = tonumber(string.match(first[1][1], '^(%d+)'))
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. fms)
  end
end
redis.call('PUBLISH', ARGV[6], KEYS[1])
return {id, 1}
`)

// readScript reads entries after a position and tells whether the stream
// was trimmed past it. Trimming only removes from the head, so if entries
// follow the position but none is at or before it, whatever lay between
// the position and the oldest survivor may be gone: the caller reports a reset.
//
// For a user's inbox the unread set is passed too, and the script returns
// each entry's unread flag, saving a round trip.
//
// KEYS: stream[, unread]; ARGV: position, count.
// Returns {reset(0|1), entries, flags(1 = unread; inbox only)}.
var readScript = redis.NewScript(`
local r = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local reset = 0
if #r > 0 and ARGV[1] ~= '0-0' then
  local b = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', 1)
  if #b == 0 then reset = 1 end
end
local flags = {}
if #KEYS >= 2 then
  for i, e in ipairs(r) do
    if redis.call('ZSCORE', KEYS[2], e[1]) then flags[i] = 1 else flags[i] = 0 end
  end
end
return {reset, r, flags}
`)

// stateScript returns one user's read state: it first drops expired ids
// from the unread set (so counts never include expired messages), then
// returns the unread count, which of the given inbox ids are unread, the
// read-up-to hash, and the seen and hidden sets.
//
// KEYS: unread, expiring, read, seen, hidden; ARGV: now(ms), inbox ids…
var stateScript = redis.NewScript(`
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('ZREM', KEYS[2], unpack(expired))
end
local flags = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then flags[#flags+1] = 1 else flags[#flags+1] = 0 end
end
return {redis.call('ZCARD', KEYS[1]), flags, redis.call('HGETALL', KEYS[3]),
        redis.call('ZRANGE', KEYS[4], 0, -1), redis.call('ZRANGE', KEYS[5], 0, -1)}
`)

// tailScript returns the newest entry ID of a stream, "0-0" when empty.
var tailScript = redis.NewScript(`
local r = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #r == 0 then return '0-0' end
return r[1][1]
`)

// sharedUnreadScript counts the entries of a shared stream after a
// read-up-to position that are neither expired nor excluded (read one by
// one or hidden by this user), looking at no more than `cap` entries.
// Only ids and the expiry field leave the server.
//
// KEYS: stream; ARGV: after, cap, now(ms), excluded entry ids…
// Returns {count, earliest expiry among the counted entries (0 = none)}.
var sharedUnreadScript = redis.NewScript(`
local ex = {}
for i = 4, #ARGV do ex[ARGV[i]] = true end
local r = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local now = tonumber(ARGV[3])
local n = 0
local soonest = 0
for _, e in ipairs(r) do
  if not ex[e[1]] then
    local exp = nil
    local f = e[2]
    for j = 1, #f, 2 do
      if f[j] == 'expires' then exp = tonumber(f[j+1]) end
    end
    if exp == nil or exp > now then
      n = n + 1
      if exp ~= nil and (soonest == 0 or exp < soonest) then soonest = exp end
    end
  end
end
return {n, soonest}
`)

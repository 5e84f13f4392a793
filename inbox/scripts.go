package inbox

import "github.com/redis/go-redis/v9"

// publishScript appends one message to one stream, atomically with its
// idempotency record and the recipient's unread bookkeeping, and then
// publishes the wake-up. Doing all of it in one script means a retry after
// any failure either finds the idempotency record (the entry exists) or
// finds nothing (no entry was written): never a second copy.
//
// The wake-up describes the new entry: "key\nid\nprev\nunread\nexpires\n"
// followed by the fields as "<len>:<bytes>" each (or "-" when the caller
// leaves them out: large messages, or large fan-outs, whose wake-ups
// together could overrun the subscribers' output buffers), where prev is
// the entry before it (the position a client that had read everything
// holds) and unread is the inbox's unread count (-1
// for shared streams). Instances answer waiting polls from it without
// reading Redis (see view). It is sent last, with pcall: a refused
// PUBLISH (an ACL without the channel) must not turn a stored message into
// an error whose retry would store it twice; waiting polls then find the
// message once their instance stops trusting its cached tail (TrustFor)
// instead of at once.
//
// When trimming removes entries, the script records the stream's trim
// mark M: every removed entry is at or below M, so a cursor below M has
// missed messages (see readScript). If trimming emptied the old part of
// the stream, M is exactly the newest removed entry (the old tail), so a
// client that had read up to it is not told it missed anything; otherwise
// M is just below the oldest survivor. User deletions never move the mark,
// so deleting a message is never mistaken for trimming. Age trimming only
// runs when the oldest entry is old enough to go.
//
// Trimming also drops the trimmed ids from the inbox's unread and expiring
// sets, so that they only ever hold ids still in the stream: every id below
// the oldest entry left. Trimming removes whole stream nodes, and a node
// may end inside a millisecond, so the ids of the oldest entry's own
// millisecond are compared one by one rather than by score. The expiring
// set (scored by expiry) holds only unread ids, so it loses the same ones.
//
// For an inbox the script also counts the new entry under its type in
// the per-type hashes (see luaUnreadHelpers), rebuilding them first if an
// older build left them out. The wake-up's unread field is then
// "<n>,<m>": m is the new count of the entry's type, and no other type's
// count changed, so an instance that knows the user's counts can keep
// them. When trimming (or the rebuild) changed other counts too it is
// just "<n>".
//
// KEYS: stream, idem, trim mark[, unread, expiring[, utype, tunread]]  (the
// rest for user inboxes)
// ARGV: useIdem, idemTTLsec, maxlen, minid, expiresAt(ms, 0 = never), the
// stream's wake channel, the fields as the wake-up carries them (or "-"; see
// wakeFields), PUBLISH or SPUBLISH (see Store.sharded), field, value, …
// (the type is the value of the field "type").
// Returns {entryID, created(0|1)}.
var publishScript = redis.NewScript(luaIDHelpers + luaUnreadHelpers + publishBody)

// publishBody is publishScript after its helpers: also the body of the
// function publishOneScript calls (see pubone.go).
const publishBody = `
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev then return {prev, 0} end
end
local utype, tunread = KEYS[6], KEYS[7]
-- Whether the wake-up can say that only the entry's type count changed.
local whole = utype ~= nil
-- The unread count before this entry, while nothing but the entry changes it.
local count0
if utype then
  local n = redis.call('ZCARD', KEYS[4])
  if redis.call('HLEN', utype) == n then
    count0 = n
  else
    ensuretypes(KEYS[4], KEYS[5], utype, tunread, KEYS[1])
    whole = false
  end
end
local tail0 = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev
if #tail0 > 0 then prev = tail0[1][1] else prev = redis.call('GET', KEYS[3]) or '0-0' end
local len0 = redis.call('XLEN', KEYS[1])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 9))
-- The length cap can only have trimmed if the stream was at the cap.
local trimmed = len0 >= tonumber(ARGV[3]) and redis.call('XLEN', KEYS[1]) <= len0
-- Age trimming costs next to nothing when there is nothing to trim.
if redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[4]) > 0 then trimmed = true end
local first -- after trimming, the oldest entry left (nil: none)
if trimmed then
  local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #head > 0 then first = head[1][1] end
  local mark
  if first == nil then mark = id elseif first == id then mark = prev else mark = pred(first) end
  local old = redis.call('GET', KEYS[3])
  if not old or idless(old, mark) then redis.call('SET', KEYS[3], mark) end
end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
end
local unread = -1
if #KEYS >= 5 then
  local ms = tonumber(string.match(id, '^(%d+)'))
  local added = redis.call('ZADD', KEYS[4], ms, id)
  if ARGV[5] ~= '0' then redis.call('ZADD', KEYS[5], ARGV[5], id) end
  local t = ''
  for j = 9, #ARGV - 1, 2 do
    if ARGV[j] == 'type' then t = ARGV[j + 1]; break end
  end
  local tcount -- the entry's type's count after the entry
  if utype then
    redis.call('HSET', utype, id, t)
    tcount = redis.call('HINCRBY', tunread, t, 1)
  end
  if trimmed and first == nil then
    redis.call('DEL', KEYS[4], KEYS[5])
    if utype then redis.call('DEL', utype, tunread) end
    whole, count0 = false, nil
  elseif trimmed then
    if #dropunread(KEYS[4], KEYS[5], utype, tunread, first, false) > 0 then whole, count0 = false, nil end
  end
  -- Read again only when trimming (or a rebuild) may have changed them.
  if count0 then unread = count0 + added else unread = redis.call('ZCARD', KEYS[4]) end
  if whole then unread = unread .. ',' .. tcount end
end
redis.pcall(ARGV[8], ARGV[6], table.concat({KEYS[1], id, prev, unread, ARGV[5], ARGV[7]}, '\n'))
return {id, 1}
`

// luaIDHelpers are Lua helpers for "ms-seq" entry IDs: idless compares
// two; pred returns the largest ID below one. Both work on the decimal
// digits, not on Lua numbers: those are doubles, exact only up to 2^53,
// and sequence numbers go up to 2^64-1 (a trim mark's often does).
const luaIDHelpers = `
local function numless(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function idless(x, y)
  local xa, xb = string.match(x, '^(%d+)-(%d+)$')
  local ya, yb = string.match(y, '^(%d+)-(%d+)$')
  if xa ~= ya then return numless(xa, ya) end
  return numless(xb, yb)
end
local function decr(d)
  local i = #d
  while string.byte(d, i) == 48 do i = i - 1 end
  local r = string.sub(d, 1, i - 1) .. string.char(string.byte(d, i) - 1) .. string.rep('9', #d - i)
  return (string.gsub(r, '^0+(%d)', '%1'))
end
local function pred(s)
  local a, b = string.match(s, '^(%d+)-(%d+)$')
  if b ~= '0' then return a .. '-' .. decr(b) end
  return decr(a) .. '-18446744073709551615'
end
`

// luaUnreadHelpers need luaIDHelpers. They keep a user's unread
// bookkeeping in step: the unread set (ids scored by entry millisecond),
// the expiring set (unread ids with an expiry, scored by it), and two
// hashes that make the per-type count O(1) to read: utype (unread id →
// type, exactly the members of unread) and tunread (type → count, no
// fields at 0). utype and tunread may be absent (nil) for callers that do
// not pass them; the hashes are then rebuilt by the next ensuretypes.
//
//   - entrytype(fields) is an entry's type field ("" when it has none).
//   - unreaddel(utype, tunread, ids) forgets ids that have just left the
//     unread set (ids not in utype are skipped).
//   - unreadrem(unread, expiring, utype, tunread, id) removes one id from
//     the unread bookkeeping; returns 1 when it was unread.
//   - ensuretypes(unread, expiring, utype, tunread, stream) rebuilds the
//     hashes when they do not hold exactly the unread ids (data written by
//     an older build), from the stream's entries; ids whose entry is gone
//     leave unread and expiring. O(1) when nothing is to be done. Returns
//     true when it rebuilt.
//   - dropunread(unread, expiring, utype, tunread, id, incl) removes every
//     id below id, or at or below it when incl (ids of id's own millisecond
//     are compared one by one), and returns them.
const luaUnreadHelpers = `
local function entrytype(f)
  for j = 1, #f - 1, 2 do
    if f[j] == 'type' then return f[j + 1] end
  end
  return ''
end
local function unreaddel(utype, tunread, ids)
  if not utype then return end
  for _, id in ipairs(ids) do
    local t = redis.call('HGET', utype, id)
    if t then
      redis.call('HDEL', utype, id)
      if redis.call('HINCRBY', tunread, t, -1) <= 0 then redis.call('HDEL', tunread, t) end
    end
  end
end
local function unreadrem(unread, expiring, utype, tunread, id)
  redis.call('ZREM', expiring, id)
  if redis.call('ZREM', unread, id) == 0 then return 0 end
  unreaddel(utype, tunread, {id})
  return 1
end
local function zremall(key, ids)
  -- In chunks: Lua's unpack has a limit of a few thousand values.
  for i = 1, #ids, 500 do
    redis.call('ZREM', key, unpack(ids, i, math.min(i + 499, #ids)))
  end
end
local function ensuretypes(unread, expiring, utype, tunread, stream)
  if redis.call('HLEN', utype) == redis.call('ZCARD', unread) then return false end
  redis.call('DEL', utype, tunread)
  local gone = {}
  for _, id in ipairs(redis.call('ZRANGE', unread, 0, -1)) do
    local e = redis.call('XRANGE', stream, id, id)
    if #e == 0 then
      gone[#gone + 1] = id
    else
      local t = entrytype(e[1][2])
      redis.call('HSET', utype, id, t)
      redis.call('HINCRBY', tunread, t, 1)
    end
  end
  zremall(unread, gone)
  zremall(expiring, gone)
  return true
end
local function dropunread(unread, expiring, utype, tunread, id, incl)
  local ms = string.match(id, '^(%d+)')
  local gone = redis.call('ZRANGEBYSCORE', unread, '-inf', '(' .. ms)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', unread, ms, ms)) do
    if idless(m, id) or (incl and m == id) then gone[#gone + 1] = m end
  end
  zremall(unread, gone)
  zremall(expiring, gone)
  unreaddel(utype, tunread, gone)
  return gone
end
`

// readScript reads entries after a position and tells whether the stream
// was trimmed past it: a position below the trim mark (see publishScript)
// may have missed trimmed entries. The script then reads on from the mark
// and returns it, so that the caller reports a reset and advances.
//
// For a user's inbox the unread set is passed too, and the script returns
// each entry's unread flag, saving a round trip.
//
// When nothing follows the position the script also returns the
// stream's tail (as tailScript would), which lets the instance's cache
// skip this read next time (see view).
//
// KEYS: stream, trim mark[, unread]; ARGV: position, count.
// Returns {new position or "" (no reset), entries, flags(1 = unread; inbox only), tail or ""}.
var readScript = redis.NewScript(luaIDHelpers + `
local from = ARGV[1]
local reset = ''
local mark = redis.call('GET', KEYS[2])
if mark and idless(from, mark) then
  from = mark
  reset = mark
end
local r = redis.call('XRANGE', KEYS[1], '(' .. from, '+', 'COUNT', ARGV[2])
local flags = {}
if #KEYS >= 3 then
  for i, e in ipairs(r) do
    if redis.call('ZSCORE', KEYS[3], e[1]) then flags[i] = 1 else flags[i] = 0 end
  end
end
local tail = ''
if #r == 0 then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 then tail = last[1][1] else tail = mark or '0-0' end
end
return {reset, r, flags, tail}
`)

// stateScript returns one user's read state: it first drops expired ids
// from the unread set (so counts never include expired messages), then
// returns the unread count, the read-up-to hash, the seen and hidden sets,
// the soonest expiry among unread inbox entries ("0" = none), after
// which the count is stale, and the unread count per type (the tunread
// hash, rebuilt first if an older build left it out; see luaUnreadHelpers).
//
// KEYS: unread, expiring, read, seen, hidden, utype, tunread, inbox; ARGV: now(ms)
var stateScript = redis.NewScript(luaIDHelpers + luaUnreadHelpers + `
ensuretypes(KEYS[1], KEYS[2], KEYS[6], KEYS[7], KEYS[8])
while true do
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
  if #expired == 0 then break end
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('ZREM', KEYS[2], unpack(expired))
  unreaddel(KEYS[6], KEYS[7], expired)
end
local soonest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2] or '0'
return {redis.call('ZCARD', KEYS[1]), redis.call('HGETALL', KEYS[3]),
        redis.call('ZRANGE', KEYS[4], 0, -1), redis.call('ZRANGE', KEYS[5], 0, -1), soonest,
        redis.call('HGETALL', KEYS[7])}
`)

// tailScript returns the newest entry ID of a stream: the position that
// means "now". An empty stream that was trimmed before answers its trim
// mark, so the new position is not mistaken for one from before the trim.
//
// KEYS: stream, trim mark.
var tailScript = redis.NewScript(`
local r = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #r > 0 then return r[1][1] end
local mark = redis.call('GET', KEYS[2])
if mark then return mark end
return '0-0'
`)

// sharedUnreadScript counts the entries of a shared stream after a
// read-up-to position that are neither expired nor excluded (read one by
// one or hidden by this user) nor revoke tombstones, looking at no more
// than `cap` entries. Only ids, the type and the expiry field leave the
// server.
//
// KEYS: stream; ARGV: after, cap, now(ms), excluded entry ids…
// Returns {count, earliest expiry among the counted entries (0 = none),
// the stream's newest entry ID ("0-0" when empty), {type, count, …} of the
// counted entries}.
var sharedUnreadScript = redis.NewScript(`
local ex = {}
for i = 4, #ARGV do ex[ARGV[i]] = true end
local r = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local now = tonumber(ARGV[3])
local n = 0
local soonest = 0
local types = {}
for _, e in ipairs(r) do
  if not ex[e[1]] then
    local exp, t, tomb = nil, '', false
    local f = e[2]
    for j = 1, #f - 1, 2 do
      local k = f[j]
      if k == 'expires' then exp = tonumber(f[j+1])
      elseif k == 'type' then t = f[j+1]
      elseif k == 'revoke' then tomb = true end
    end
    if not tomb and (exp == nil or exp > now) then
      n = n + 1
      types[t] = (types[t] or 0) + 1
      if exp ~= nil and (soonest == 0 or exp < soonest) then soonest = exp end
    end
  end
end
local flat = {}
for t, c in pairs(types) do
  flat[#flat + 1] = t
  flat[#flat + 1] = c
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local newest = '0-0'
if #last > 0 then newest = last[1][1] end
return {n, soonest, newest, flat}
`)

// wakeStateScript publishes a read-state wake-up. It is a script only so
// that it names the user's read key: in a cluster it then runs on the node
// that holds the user's inbox, after that node's earlier inbox wake-ups,
// and instances see the two in the order they happened.
//
// KEYS: the user's read key; ARGV: its wake channel, PUBLISH or SPUBLISH.
var wakeStateScript = redis.NewScript(`
return redis.call(ARGV[2], ARGV[1], KEYS[1])
`)

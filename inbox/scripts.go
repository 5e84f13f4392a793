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
// KEYS: stream, idem, trim mark[, unread, expiring]  (the last two for user inboxes)
// ARGV: useIdem, idemTTLsec, maxlen, minid, expiresAt(ms, 0 = never), wakeChannel,
// the fields as the wake-up carries them (or "-"; see wakeFields), field, value, …
// Returns {entryID, created(0|1)}.
var publishScript = redis.NewScript(luaIDHelpers + luaUnreadHelpers + `
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev then return {prev, 0} end
end
local tail0 = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev
if #tail0 > 0 then prev = tail0[1][1] else prev = redis.call('GET', KEYS[3]) or '0-0' end
local len0 = redis.call('XLEN', KEYS[1])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 8))
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
  redis.call('ZADD', KEYS[4], ms, id)
  if ARGV[5] ~= '0' then redis.call('ZADD', KEYS[5], ARGV[5], id) end
  if trimmed and first == nil then
    redis.call('DEL', KEYS[4], KEYS[5])
  elseif trimmed then
    dropunread(KEYS[4], KEYS[5], first, false)
  end
  unread = redis.call('ZCARD', KEYS[4])
end
redis.pcall('PUBLISH', ARGV[6], table.concat({KEYS[1], id, prev, unread, ARGV[5], ARGV[7]}, '\n'))
return {id, 1}
`)

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

// luaUnreadHelpers need luaIDHelpers. dropunread removes from a user's
// unread set (scored by entry millisecond) and expiring set every id below
// id, or at or below it when incl; ids of id's own millisecond are
// compared one by one. When nothing expires, the older ones go by score
// without being fetched.
const luaUnreadHelpers = `
local function dropunread(unread, expiring, id, incl)
  local ms = string.match(id, '^(%d+)')
  local gone = {}
  if redis.call('EXISTS', expiring) == 1 then
    gone = redis.call('ZRANGEBYSCORE', unread, '-inf', '(' .. ms)
  else
    redis.call('ZREMRANGEBYSCORE', unread, '-inf', '(' .. ms)
  end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', unread, ms, ms)) do
    if idless(m, id) or (incl and m == id) then gone[#gone + 1] = m end
  end
  -- In chunks: Lua's unpack has a limit of a few thousand values.
  for i = 1, #gone, 500 do
    local j = math.min(i + 499, #gone)
    redis.call('ZREM', unread, unpack(gone, i, j))
    redis.call('ZREM', expiring, unpack(gone, i, j))
  end
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
// and the soonest expiry among unread inbox entries ("0" = none), after
// which the count is stale.
//
// KEYS: unread, expiring, read, seen, hidden; ARGV: now(ms)
var stateScript = redis.NewScript(`
-- In chunks: Lua's unpack has a limit of a few thousand values.
while true do
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
  if #expired == 0 then break end
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('ZREM', KEYS[2], unpack(expired))
end
local soonest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2] or '0'
return {redis.call('ZCARD', KEYS[1]), redis.call('HGETALL', KEYS[3]),
        redis.call('ZRANGE', KEYS[4], 0, -1), redis.call('ZRANGE', KEYS[5], 0, -1), soonest}
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
// one or hidden by this user), looking at no more than `cap` entries.
// Only ids and the expiry field leave the server.
//
// KEYS: stream; ARGV: after, cap, now(ms), excluded entry ids…
// Returns {count, earliest expiry among the counted entries (0 = none),
// the stream's newest entry ID ("0-0" when empty)}.
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
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local newest = '0-0'
if #last > 0 then newest = last[1][1] end
return {n, soonest, newest}
`)

// wakeStateScript publishes a read-state wake-up. It is a script only so
// that it names the user's read key: in a cluster it then runs on the node
// that holds the user's inbox, after that node's earlier inbox wake-ups,
// and instances see the two in the order they happened.
//
// KEYS: the user's read key; ARGV: wake channel.
var wakeStateScript = redis.NewScript(`
return redis.call('PUBLISH', ARGV[1], KEYS[1])
`)

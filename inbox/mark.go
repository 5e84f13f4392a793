package inbox

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxReadIDs caps the ids in one MarkRead call.
const MaxReadIDs = 1000

// beforeMarkAll maps a *Store to a func() that MarkRead with all runs
// between reading the tails and marking: tests publish there.
var beforeMarkAll sync.Map

// MarkRead marks messages read for the reader (on every device: the state
// is per user) and returns the new unread count (see MarkReadCounts).
func (s *Store) MarkRead(ctx context.Context, r Reader, ids []string, all bool) (int, error) {
	c, err := s.MarkReadCounts(ctx, r, ids, all)
	return c.Total, err
}

// MarkReadCounts marks messages read for the reader (on every device: the
// state is per user) and returns the new unread counts. With all set it
// marks everything up to the tail of every stream read as the call reads
// them; messages that arrive while it runs stay unread. Waiting polls of
// the same user are woken so their unread badges follow.
func (s *Store) MarkReadCounts(ctx context.Context, r Reader, ids []string, all bool) (Counts, error) {
	streams, err := s.streamsOf(r)
	if err != nil {
		return Counts{}, err
	}
	if !all && len(ids) == 0 {
		return Counts{}, fmt.Errorf("%w: ids or all is required", ErrInvalid)
	}
	if len(ids) > MaxReadIDs {
		return Counts{}, fmt.Errorf("%w: more than %d ids", ErrTooLarge, MaxReadIDs)
	}
	var inboxIDs []any
	var seen []any
	for _, id := range ids {
		m, err := parseMsgRef(id)
		if err != nil {
			return Counts{}, err
		}
		if _, err := findStream(streams, m); err != nil {
			return Counts{}, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if m.kind == 'u' {
			inboxIDs = append(inboxIDs, m.entry.String())
		} else {
			// An id from the future names no message; remembering it would
			// let a client grow its read set without bound.
			if int64(m.entry.ms) > ms(s.opt.Now().Add(time.Minute)) {
				return Counts{}, fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			seen = append(seen, m.entry.ms, id)
		}
	}
	u := r.User
	cutoff := strconv.FormatInt(ms(s.opt.Now().Add(-s.opt.Retention)), 10)
	if all {
		// "Everything" is what the streams hold now: the tails, the
		// inbox's among them. A message that arrives before the marks are
		// written is newer than its tail, and nobody has seen it yet.
		tails, err := s.tails(ctx, u, streams)
		if err != nil {
			return Counts{}, err
		}
		if f, ok := beforeMarkAll.Load(s); ok {
			f.(func())()
		}
		args := make([]any, 0, 2+2*len(streams))
		args = append(args, tails["u"].String(), cutoff)
		for _, st := range streams {
			if st.kind != 'u' {
				args = append(args, st.name, tails[st.name].String())
			}
		}
		if _, err := s.evalPipe(ctx, []scriptCall{{sc: markAllScript, args: args,
			keys: []string{s.k.unread(u), s.k.expiring(u), s.k.read(u), s.k.seen(u),
				s.k.utype(u), s.k.tunread(u), s.k.inbox(u)}}}); err != nil {
			return Counts{}, err
		}
	}
	if len(inboxIDs) > 0 || len(seen) > 0 {
		args := make([]any, 0, 2+len(inboxIDs)+len(seen))
		args = append(args, cutoff, len(inboxIDs))
		args = append(append(args, inboxIDs...), seen...)
		if _, err := s.evalPipe(ctx, []scriptCall{{sc: markIDsScript, args: args,
			keys: []string{s.k.inbox(u), s.k.unread(u), s.k.expiring(u), s.k.utype(u), s.k.tunread(u), s.k.seen(u)}}}); err != nil {
			return Counts{}, err
		}
	}
	s.wakeState(ctx, u)
	st, err := s.loadState(ctx, u)
	if err != nil {
		return Counts{}, err
	}
	return s.unreadCounts(ctx, streams, st, false)
}

// markIDsScript marks messages read one by one: inbox ids leave the
// unread bookkeeping (see luaUnreadHelpers), shared ids join the seen set,
// which also loses ids older than the retention.
//
// KEYS: inbox, unread, expiring, utype, tunread, seen; ARGV: retention
// cutoff (ms), number n of inbox ids, the n inbox entry ids, then score
// and public id of each shared message.
var markIDsScript = register(redis.NewScript(luaIDHelpers + luaUnreadHelpers + `
local n = tonumber(ARGV[2])
if n > 0 then
  ensuretypes(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[1])
  for i = 3, 2 + n do unreadrem(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[i]) end
end
if #ARGV > 2 + n then
  for i = 3 + n, #ARGV - 1, 2 do redis.call('ZADD', KEYS[6], ARGV[i], ARGV[i + 1]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. ARGV[1])
end
return 0
`))

// markAllScript marks a user's messages read up to the tails MarkRead
// read, in one step:
//   - inbox ids at or below the inbox tail leave the unread set and the
//     expiring set (which holds only unread ids); newer ones arrived after
//     the tails were read, so nobody has seen them yet;
//   - each shared stream's read-up-to mark moves up to its tail, never
//     down (another device may have moved it further meanwhile);
//   - ids read one by one that the new marks cover, and those older than
//     the retention, leave the seen set; newer ones stay read.
//
// The unread set is scored by entry millisecond, so the ids of the
// tail's own millisecond are compared one by one.
//
// KEYS: unread, expiring, read, seen, utype, tunread, inbox; ARGV: inbox
// tail, retention cutoff (ms), then stream name and tail for each shared
// stream.
var markAllScript = redis.NewScript(luaIDHelpers + luaUnreadHelpers + `
ensuretypes(KEYS[1], KEYS[2], KEYS[5], KEYS[6], KEYS[7])
dropunread(KEYS[1], KEYS[2], KEYS[5], KEYS[6], ARGV[1], true)
local marks = {}
for i = 3, #ARGV - 1, 2 do
  local name, id = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[3], name)
  if old and not idless(old, id) then
    id = old
  else
    redis.call('HSET', KEYS[3], name, id)
  end
  marks[name] = id
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[2])
local covered = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local name, id = string.match(m, '^(.+)%.(%d+%-%d+)$')
  if name and marks[name] and not idless(marks[name], id) then covered[#covered + 1] = m end
end
for i = 1, #covered, 500 do
  redis.call('ZREM', KEYS[4], unpack(covered, i, math.min(i + 499, #covered)))
end
return 0
`)

// Delete removes a message from the reader's view. An inbox entry is
// deleted from the stream; a broadcast or group entry is hidden for this
// user only. It returns ErrNotFound when the message is not in the view.
func (s *Store) Delete(ctx context.Context, r Reader, id string) error {
	streams, err := s.streamsOf(r)
	if err != nil {
		return err
	}
	m, err := parseMsgRef(id)
	if err != nil {
		return err
	}
	st, err := findStream(streams, m)
	if err != nil {
		return err
	}
	u := r.User
	e := m.entry.String()
	if st.kind == 'u' {
		out, err := s.evalPipe(ctx, []scriptCall{{sc: deleteInboxScript, args: []any{e},
			keys: []string{st.key, s.k.unread(u), s.k.expiring(u), s.k.utype(u), s.k.tunread(u)}}})
		if err != nil {
			return err
		}
		s.wakeState(ctx, u)
		if del, _ := out[0].(int64); del == 0 {
			return ErrNotFound
		}
		return nil
	}
	// A shared entry: it must exist (and not be hidden already) to be deleted.
	xs, err := s.rdb.XRangeN(ctx, st.key, e, e, 1).Result()
	if err != nil && err != redis.Nil {
		return wrapRedis("delete", err)
	}
	if len(xs) == 0 {
		return ErrNotFound
	}
	cutoff := strconv.FormatInt(ms(s.opt.Now().Add(-s.opt.Retention)), 10)
	var added *redis.IntCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		added = p.ZAdd(ctx, s.k.hidden(u), redis.Z{Score: float64(m.entry.ms), Member: id})
		p.ZRemRangeByScore(ctx, s.k.hidden(u), "-inf", "("+cutoff)
		return nil
	})
	if err != nil {
		return wrapRedis("delete", err)
	}
	s.wakeState(ctx, u)
	if added.Val() == 0 {
		return ErrNotFound
	}
	return nil
}

// deleteInboxScript deletes an inbox entry with its unread bookkeeping
// (see luaUnreadHelpers).
//
// KEYS: inbox, unread, expiring, utype, tunread; ARGV: entry id.
// Returns the number of entries deleted (0 or 1).
var deleteInboxScript = register(redis.NewScript(luaIDHelpers + luaUnreadHelpers + `
ensuretypes(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[1])
local n = redis.call('XDEL', KEYS[1], ARGV[1])
unreadrem(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
return n
`))

// wakeState tells every instance that a user's read state changed. It is
// sent after the change has committed, from the user's own node (see
// wakeStateScript). A lost wake-up costs only badge freshness (other
// instances trust their cached state for TrustFor at most), so its error
// is not the caller's failure. This instance's caches are
// told at once, so its polls see the change even before the wake-up
// comes back.
func (s *Store) wakeState(ctx context.Context, user string) {
	s.view.userChanged(user, s.k.inbox(user))
	_ = wakeStateScript.Run(ctx, s.rdb, []string{s.k.read(user)}, s.k.wake(s.k.read(user)), s.sharded()).Err()
}

package inbox

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// revokeScript revokes one message from one stream: it deletes the entry,
// drops it from the inbox's unread bookkeeping (the unread and expiring
// sets and the per-type hashes, see luaUnreadHelpers), appends a tombstone entry
// to the same stream and publishes the tombstone's wake-up, atomically.
//
// Every reader reads every entry after its own position, and the
// tombstone is newer than every position that existed when the message
// was revoked, so each device that may show the message reads the
// tombstone (fields revoke = the revoked entry ID, pid, sender) and is
// told; a device whose position is before the message never gets it and
// is told of an id it does not know. No cursor changes. The tombstone's
// wake-up is an ordinary entry wake-up (see publishScript and view): its
// prev is the stream's tail before the delete, the position of a client
// that had read everything, and its fields always ride along.
//
// A message the stream no longer holds (revoked before, deleted by the
// user, trimmed) gets no tombstone: revoking twice writes nothing the
// second time. The tombstone is appended without trimming, which would
// have to move the trim mark; the next publish trims as usual.
//
// When the entry ID is not known (a publish still in flight when the
// revoke read its record) it is looked up under the publish's
// idempotency key; without one there is nothing to revoke yet.
//
// KEYS: stream, idem[, unread, expiring, utype, tunread]  (the last four for user inboxes)
// ARGV: entry ID or "", wake channel, pid, sender, PUBLISH or SPUBLISH
// Returns {entry ID or "", tombstone written (0|1)}.
var revokeScript = register(redis.NewScript(luaIDHelpers + luaUnreadHelpers + `
local id = ARGV[1]
if id == '' then
  id = redis.call('GET', KEYS[2])
  if not id then return {'', 0} end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if redis.call('XDEL', KEYS[1], id) == 0 then return {id, 0} end
local prev = last[1][1]
local unread = -1
if #KEYS >= 6 then
  ensuretypes(KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[1])
  unreadrem(KEYS[3], KEYS[4], KEYS[5], KEYS[6], id)
  unread = redis.call('ZCARD', KEYS[3])
end
local fields = {'revoke', id, 'pid', ARGV[3], 'sender', ARGV[4]}
local tomb = redis.call('XADD', KEYS[1], '*', unpack(fields))
local enc = {}
for i, f in ipairs(fields) do enc[i] = #f .. ':' .. f end
redis.pcall(ARGV[5], ARGV[2], table.concat({KEYS[1], tomb, prev, unread, '0', table.concat(enc)}, '\n'))
return {id, 1}
`))

// revokeTarget is one stream a publish wrote to, to revoke its entry from.
type revokeTarget struct {
	st      stream // the recipient's stream
	user    string // the inbox's user (st.kind == 'u'), else ""
	entry   string // the message's entry ID, or "": look it up under idemKey
	idemKey string // the idempotency key as the publish used it ("<sender>:<key>"), or ""
	pid     string // the publish id, written into the tombstone
	sender  string // written into the tombstone
}

// revokeStreams revokes a publish's entries, one revokeScript per
// stream in pipelines (go-redis splits them per cluster node). It
// returns, per target, whether a tombstone was written (false: nothing to
// revoke, or revoked already): calling it again is harmless. This
// instance's view forgets each revoked entry at once, before the
// tombstones' wake-ups come back.
func (s *Store) revokeStreams(ctx context.Context, rs []revokeTarget) ([]bool, error) {
	out := make([]bool, len(rs))
	var calls []scriptCall
	var which []int
	for i, r := range rs {
		if r.entry == "" && r.idemKey == "" {
			continue // never written under a key: nothing can be found
		}
		if r.entry != "" {
			if _, err := parseEntryID(r.entry); err != nil {
				return nil, fmt.Errorf("revoke: %w", err)
			}
		}
		ik := r.idemKey
		if ik == "" {
			ik = "-" // never read or written; keeps the slot
		}
		ks := []string{r.st.key, s.k.idem(r.st, r.user, ik)}
		if r.st.kind == 'u' {
			ks = append(ks, s.k.unread(r.user), s.k.expiring(r.user), s.k.utype(r.user), s.k.tunread(r.user))
		}
		calls = append(calls, scriptCall{sc: revokeScript, keys: ks, args: []any{r.entry, s.k.wake(r.st.key), r.pid, r.sender, s.sharded()}})
		which = append(which, i)
	}
	res, err := s.evalPipe(ctx, calls)
	for n, i := range which {
		r := rs[i]
		id := r.entry
		if n < len(res) {
			if pair, _ := res[n].([]any); len(pair) == 2 {
				if got, _ := pair[0].(string); got != "" {
					id = got
				}
				w, _ := pair[1].(int64)
				out[i] = w == 1
			}
		}
		// Even after an error: the script may have run.
		if e, perr := parseEntryID(id); perr == nil {
			s.view.revoked(r.st.key, e, r.user)
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

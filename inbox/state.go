package inbox

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// userState is one user's read state as of one read.
type userState struct {
	unreadInbox int                // live unread entries of the inbox
	inboxUnread map[string]bool    // inbox entry id → unread (only for ids asked about)
	readUpTo    map[string]entryID // shared stream name → read up to this entry
	seen        map[string]bool    // shared public ids read one by one
	hidden      map[string]bool    // shared public ids the user deleted
	allInbox    bool               // inboxUnread lists every unread inbox id
}

// loadState reads a user's read state in one script call; inboxIDs are the
// inbox entries whose read flag the caller needs.
func (s *Store) loadState(ctx context.Context, user string, inboxIDs []string) (*userState, error) {
	args := make([]any, 0, 1+len(inboxIDs))
	args = append(args, ms(s.opt.Now()))
	for _, id := range inboxIDs {
		args = append(args, id)
	}
	v, err := s.evalOne(ctx, stateScript,
		[]string{s.k.unread(user), s.k.expiring(user), s.k.read(user), s.k.seen(user), s.k.hidden(user)}, args...)
	if err != nil {
		return nil, err
	}
	parts, _ := v.([]any)
	if len(parts) != 5 {
		return nil, fmt.Errorf("state: unexpected reply %T", v)
	}
	st := &userState{inboxUnread: map[string]bool{}, readUpTo: map[string]entryID{}, seen: map[string]bool{}, hidden: map[string]bool{}}
	n, _ := parts[0].(int64)
	st.unreadInbox = int(n)
	flags, _ := parts[1].([]any)
	for i, f := range flags {
		if i < len(inboxIDs) {
			st.inboxUnread[inboxIDs[i]] = f == int64(1)
		}
	}
	h, _ := parts[2].([]any)
	for i := 0; i+1 < len(h); i += 2 {
		name, _ := h[i].(string)
		val, _ := h[i+1].(string)
		if e, err := parseEntryID(val); err == nil {
			st.readUpTo[name] = e
		}
	}
	for _, pair := range []struct {
		raw any
		set map[string]bool
	}{{parts[3], st.seen}, {parts[4], st.hidden}} {
		list, _ := pair.raw.([]any)
		for _, x := range list {
			if id, ok := x.(string); ok {
				pair.set[id] = true
			}
		}
	}
	return st, nil
}

// isRead tells whether a message is read in this state.
func (st *userState) isRead(m *Message) bool {
	if m.stream == "u" {
		unread, known := st.inboxUnread[m.entry.String()]
		return (known || st.allInbox) && !unread
	}
	w := st.readUpTo[m.stream]
	return !w.less(m.entry) || st.seen[m.ID]
}

// unreadCount returns the reader's unread total: the inbox count kept by
// the publish script, plus for each shared stream the live entries after
// the user's read-up-to mark that were neither read one by one nor hidden
// (at most UnreadScan examined per stream).
func (s *Store) unreadCount(ctx context.Context, streams []stream, st *userState) (int, error) {
	total := st.unreadInbox
	var calls []scriptCall
	now := ms(s.opt.Now())
	for _, sh := range streams {
		if sh.kind == 'u' {
			continue
		}
		w := st.readUpTo[sh.name]
		args := []any{w.String(), s.opt.UnreadScan, now}
		prefix := sh.name + "."
		for _, set := range []map[string]bool{st.seen, st.hidden} {
			for id := range set {
				if strings.HasPrefix(id, prefix) {
					if e, err := parseEntryID(id[len(prefix):]); err == nil && w.less(e) {
						args = append(args, e.String())
					}
				}
			}
		}
		calls = append(calls, scriptCall{keys: []string{sh.key}, args: args})
	}
	res, err := s.evalPipe(ctx, sharedUnreadScript, calls)
	if err != nil {
		return 0, err
	}
	for _, r := range res {
		n, _ := r.(int64)
		total += int(n)
	}
	return total, nil
}

// tails returns the newest entry ID of each stream ("0-0" when empty):
// the position that means "now".
func (s *Store) tails(ctx context.Context, streams []stream) (positions, error) {
	cmds := make([]*redis.XMessageSliceCmd, len(streams))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, st := range streams {
			cmds[i] = p.XRevRangeN(ctx, st.key, "+", "-", 1)
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, wrapRedis("tails", err)
	}
	pos := positions{}
	for i, st := range streams {
		msgs, err := cmds[i].Result()
		if err != nil && err != redis.Nil {
			return nil, wrapRedis("tails", err)
		}
		if len(msgs) > 0 {
			e, err := parseEntryID(msgs[0].ID)
			if err != nil {
				return nil, err
			}
			pos[st.name] = e
		} else {
			pos[st.name] = entryID{}
		}
	}
	return pos, nil
}

// Unread returns the reader's unread count and a cursor at the current tail.
func (s *Store) Unread(ctx context.Context, r Reader) (int, string, error) {
	streams, err := s.streamsOf(r)
	if err != nil {
		return 0, "", err
	}
	pos, err := s.tails(ctx, streams)
	if err != nil {
		return 0, "", err
	}
	st, err := s.loadState(ctx, r.User, nil)
	if err != nil {
		return 0, "", err
	}
	n, err := s.unreadCount(ctx, streams, st)
	if err != nil {
		return 0, "", err
	}
	return n, encodeCursor(streams, pos), nil
}

package inbox

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// emptyRead is a read that found nothing, as readScript answers it. It is
// shared (never modified): most polls' reads are this.
var emptyRead = []any{"", []any(nil), []any(nil)}

// readAfter reads up to limit+1 entries after the position of each stream
// due, merges them oldest first, drops hidden and expired ones, and
// consumes up to limit visible messages, advancing pos past everything
// consumed (including dropped entries). It sets res.More when entries are
// left over and res.Reset when a stream was trimmed past its position.
// When anything was read it also returns the user's state (for read flags).
func (p *pollRun) readAfter(ctx context.Context) ([]Message, *userState, error) {
	// Split so that the Redis calls (whose waits go deepest) are made from
	// small frames: a goroutine's stack grows for its deepest moment and
	// stays grown while the poll waits, for every waiting poll.
	out, found, inboxRead, err := p.fetch(ctx)
	if err != nil || !found {
		// Most reads find nothing (a poll about to wait): they cost one
		// script per stream at most, and no state.
		return nil, nil, err
	}
	// Inbox entries read from Redis may be newer than the wake-ups this
	// instance has seen, and so than the view's unread count: read the
	// state afresh (and keep it) rather than answer with a count that
	// leaves them out.
	var st *userState
	if p.cached && inboxRead {
		st, err = p.s.freshState(ctx, p.user)
	} else {
		st, err = p.s.state(ctx, p.user, p.cached)
	}
	if err != nil {
		return nil, nil, err
	}
	got, err := p.consume(out, st)
	return got, st, err
}

// fetch returns the raw reads of the streams due after their positions
// (from the view where a waiting poll may use it), whether any found
// entries or a reset, and whether Redis (not the view) returned inbox
// entries. It records when what it learnt of each stream was learnt.
func (p *pollRun) fetch(ctx context.Context) (out []any, found, inboxRead bool, err error) {
	s := p.s
	limit := p.o.Limit
	out = make([]any, len(p.toRead))
	var calls []scriptCall
	var missed []int
	var at []version
	for j, i := range p.toRead {
		st := p.streams[i]
		pos := p.pos[st.name]
		// A waiting poll takes a fact from the view only if it is newer than
		// what the poll already knows of the stream: one it re-reads
		// because its knowledge is lapsing must hear from Redis, or from a
		// poll that did since.
		if p.cached {
			if reply, upToDate, learnt, ok := s.view.after(st.key, pos, limit+1, st.kind == 'u'); ok && learnt.After(p.learnt[i]) {
				if upToDate {
					reply = emptyRead
				}
				out[j], p.learnt[i] = reply, learnt
				continue
			}
			if st.kind != 'u' {
				if reply, learnt, ok := s.view.read(st.key, readKey{pos, limit + 1}); ok && learnt.After(p.learnt[i]) {
					out[j], p.learnt[i] = reply, learnt
					continue
				}
			}
		}
		keys := []string{st.key, s.k.trim(st, p.user)}
		if st.kind == 'u' {
			keys = append(keys, s.k.unread(p.user))
		}
		missed = append(missed, j)
		at = append(at, s.view.streamVersion(st.key))
		calls = append(calls, scriptCall{sc: readScript, keys: keys, args: []any{pos.String(), limit + 1}})
	}
	if len(calls) > 0 {
		began := time.Now()
		res, err := s.evalPipe(ctx, calls)
		if err != nil {
			return nil, false, false, err
		}
		for n, j := range missed {
			i := p.toRead[j]
			st := p.streams[i]
			out[j], p.learnt[i] = res[n], began
			if st.kind != 'u' {
				// Kept for other waiting polls at the same position (those a
				// broadcast wakes together); only waiting polls keep them,
				// so the positions kept are ones clients are waiting at.
				if p.cached {
					s.view.putRead(st.key, readKey{p.pos[st.name], limit + 1}, res[n], replySize(res[n]), at[n], began)
				}
			} else if parts, _ := res[n].([]any); len(parts) >= 2 {
				list, _ := parts[1].([]any)
				inboxRead = len(list) > 0
			}
			s.learnTail(st.key, res[n], limit, at[n], began)
		}
	}
	for _, o := range out {
		if parts, _ := o.([]any); len(parts) >= 3 {
			if moved, _ := parts[0].(string); moved != "" {
				found = true
			}
			if list, _ := parts[1].([]any); len(list) > 0 {
				found = true
			}
		}
	}
	return out, found, inboxRead, nil
}

// consume decodes fetched reads, merges them oldest first, drops hidden
// and expired entries and takes up to limit visible messages, advancing
// pos past everything taken (see readAfter). Tombstones it passes add the
// messages they revoke to res.Revoked.
func (p *pollRun) consume(out []any, st *userState) ([]Message, error) {
	limit, pos, res := p.o.Limit, p.pos, &p.res
	var all []*Message
	for j, i := range p.toRead {
		sh := p.streams[i]
		parts, _ := out[j].([]any)
		if len(parts) < 3 {
			return nil, fmt.Errorf("read: unexpected reply %T", out[j])
		}
		if moved, _ := parts[0].(string); moved != "" {
			// Trimmed past the position: report it, and move the position
			// up to the trim so the next poll does not report it again.
			e, err := parseEntryID(moved)
			if err != nil {
				return nil, fmt.Errorf("read: %w", err)
			}
			res.Reset = true
			pos[sh.name] = e
		}
		msgs, err := decodeEntries(sh, parts[1])
		if err != nil {
			return nil, err
		}
		if len(msgs) > limit {
			// The stream may hold more than was read, whatever is consumed below.
			res.More = true
		}
		if sh.kind != 'u' && len(msgs) > 0 {
			if st.newest == nil {
				st.newest = map[string]entryID{}
			}
			st.newest[sh.key] = msgs[len(msgs)-1].entry
		}
		if sh.kind == 'u' {
			flags, _ := parts[2].([]any)
			for j, m := range msgs {
				st.inboxUnread[m.entry.String()] = j < len(flags) && flags[j] == int64(1)
			}
		}
		all = append(all, msgs...)
	}
	if len(all) == 0 {
		return nil, nil
	}
	sort.Slice(all, func(i, j int) bool { return all[i].before(all[j]) })
	now := ms(p.s.opt.Now())
	var got []Message
	for _, m := range all {
		if m.tombstone() {
			// Never a message, and not counted toward the limit: it is
			// consumed like a hidden entry and tells of the revoke.
			pos[m.stream] = m.entry
			p.revoked(stream{name: m.stream}.publicID(m.revokes))
			continue
		}
		visible := !m.expired(now) && !st.hidden[m.ID]
		if visible && len(got) == limit {
			res.More = true
			break
		}
		pos[m.stream] = m.entry
		if visible {
			m.Read = st.isRead(m)
			got = append(got, *m)
		}
	}
	return got, nil
}

// revoked adds a revoked message's public id to the answer, once.
func (p *pollRun) revoked(id string) {
	for _, r := range p.res.Revoked {
		if r == id {
			return
		}
	}
	p.res.Revoked = append(p.res.Revoked, id)
}

// state returns the user's read state, from the view if allowed.
func (s *Store) state(ctx context.Context, user string, cached bool) (*userState, error) {
	if cached {
		if st, _, ok := s.view.state(user, s.opt.Now()); ok {
			return st, nil
		}
	}
	return s.freshState(ctx, user)
}

// learnTail tells the view the stream's tail when a read (made at version
// at, begun at began) returned everything after the position: its last
// entry is the tail, or when it found nothing, the tail the script
// returned.
func (s *Store) learnTail(key string, reply any, limit int, at version, began time.Time) {
	parts, _ := reply.([]any)
	if len(parts) != 4 {
		return
	}
	list, _ := parts[1].([]any)
	if reset, _ := parts[0].(string); reset != "" || len(list) > limit {
		return
	}
	idStr, _ := parts[3].(string)
	if len(list) > 0 {
		last, _ := list[len(list)-1].([]any)
		if len(last) != 2 {
			return
		}
		idStr, _ = last[0].(string)
	}
	if e, err := parseEntryID(idStr); err == nil {
		s.view.putTail(key, e, at, began)
	}
}

// replySize returns the bytes of the entries' fields in a readScript reply.
func replySize(reply any) int {
	parts, _ := reply.([]any)
	if len(parts) < 2 {
		return 0
	}
	list, _ := parts[1].([]any)
	n := 0
	for _, e := range list {
		pair, _ := e.([]any)
		if len(pair) != 2 {
			continue
		}
		kv, _ := pair[1].([]any)
		for _, f := range kv {
			if str, ok := f.(string); ok {
				n += len(str)
			}
		}
	}
	return n
}

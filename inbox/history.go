package inbox

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// History limits.
const (
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = 100
	// historyScan bounds the entries examined per stream for one page, so a
	// filter that matches little cannot make a request scan without end;
	// a page cut short by it still carries `next`.
	historyScan = 2000
)

// HistoryQuery selects a page of history.
type HistoryQuery struct {
	Limit  int    // 0 = DefaultHistoryLimit
	Before string // public id: return messages older than this one
	Type   string // only this type
	Unread bool   // only unread messages
	Since  time.Time
	Until  time.Time
}

// HistoryResult is one page of history, newest first.
type HistoryResult struct {
	Messages []Message
	Next     string // Before value for the next page; "" at the end
	Unread   int
	Cursor   string // the tail at the time of the read: poll from here to miss nothing
}

// bound is an end of a range in one stream.
type bound struct {
	id   entryID
	excl bool
}

func (b bound) arg() string {
	if b.excl {
		return "(" + b.id.String()
	}
	return b.id.String()
}

// History returns messages newest first, merged over the reader's inbox,
// broadcast and group streams: the exact reverse of the order polls
// deliver in (see Message.before). It reads the tails first and never looks
// past them, so the returned cursor continues exactly where the page starts.
func (s *Store) History(ctx context.Context, r Reader, q HistoryQuery) (HistoryResult, error) {
	streams, err := s.streamsOf(r)
	if err != nil {
		return HistoryResult{}, err
	}
	if q.Limit == 0 {
		q.Limit = DefaultHistoryLimit
	}
	if q.Limit < 0 || q.Limit > MaxHistoryLimit {
		return HistoryResult{}, fmt.Errorf("%w: limit must be 1-%d", ErrInvalid, MaxHistoryLimit)
	}
	var before *msgRef
	if q.Before != "" {
		m, err := parseMsgRef(q.Before)
		if err != nil {
			return HistoryResult{}, err
		}
		if _, err := findStream(streams, m); err != nil {
			return HistoryResult{}, fmt.Errorf("%w: before names a stream outside the reader's view", ErrBadID)
		}
		before = &m
	}
	tails, err := s.tails(ctx, r.User, streams)
	if err != nil {
		return HistoryResult{}, err
	}
	st, err := s.loadState(ctx, r.User)
	if err != nil {
		return HistoryResult{}, err
	}
	unreadIDs, err := s.rdb.ZRange(ctx, s.k.unread(r.User), 0, -1).Result()
	if err != nil && err != redis.Nil {
		return HistoryResult{}, wrapRedis("history", err)
	}
	for _, id := range unreadIDs {
		st.inboxUnread[id] = true
	}
	st.allInbox = true

	// Per stream: the upper end (tail, before, until) and the lower end (since).
	type scan struct {
		st      stream
		end     bound
		start   string
		got     []*Message
		done    bool
		capped  bool // stopped by historyScan: examined only down to end
		scanned int
	}
	var scans []*scan
	for _, sh := range streams {
		end := bound{id: tails[sh.name]}
		if end.id.isZero() {
			continue // empty stream
		}
		if before != nil {
			// Order is (entry, stream name): in a stream named before the
			// reference stream, the equal entry ID still comes first.
			b := bound{id: before.entry, excl: !(sh.name < before.streamName())}
			if b.id.less(end.id) || (b.id == end.id && b.excl) {
				end = b
			}
		}
		if !q.Until.IsZero() {
			u := bound{id: entryID{ms: uint64(max(ms(q.Until), 0)), seq: math.MaxUint64}}
			if u.id.less(end.id) {
				end = u
			}
		}
		start := "-"
		if !q.Since.IsZero() {
			start = fmt.Sprintf("%d-0", max(ms(q.Since), 0))
		}
		scans = append(scans, &scan{st: sh, end: end, start: start})
	}

	now := ms(s.opt.Now())
	want := q.Limit + 1
	batch := max(2*want, 50)
	for {
		var active []*scan
		for _, sc := range scans {
			if !sc.done && len(sc.got) < want {
				active = append(active, sc)
			}
		}
		if len(active) == 0 {
			break
		}
		cmds := make([]*redis.XMessageSliceCmd, len(active))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, sc := range active {
				cmds[i] = p.XRevRangeN(ctx, sc.st.key, sc.end.arg(), sc.start, int64(batch))
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			return HistoryResult{}, wrapRedis("history", err)
		}
		for i, sc := range active {
			xs, err := cmds[i].Result()
			if err != nil && err != redis.Nil {
				return HistoryResult{}, wrapRedis("history", err)
			}
			for _, x := range xs {
				m, err := fromXMessage(sc.st, x)
				if err != nil {
					return HistoryResult{}, err
				}
				sc.end = bound{id: m.entry, excl: true}
				if m.expired(now) || st.hidden[m.ID] || (q.Type != "" && m.Type != q.Type) {
					continue
				}
				m.Read = st.isRead(m)
				if q.Unread && m.Read {
					continue
				}
				sc.got = append(sc.got, m)
			}
			sc.scanned += len(xs)
			if len(xs) < batch {
				sc.done = true
			} else if sc.scanned >= historyScan {
				sc.done, sc.capped = true, true
			}
		}
	}
	// A stream cut short was examined only down to its frontier: a message
	// older than that could jump over entries not examined yet. The page
	// stops at the newest frontier, and next continues from there, also
	// when the page is empty.
	var frontier *Message
	for _, sc := range scans {
		if sc.capped {
			f := &Message{ID: sc.st.publicID(sc.end.id), stream: sc.st.name, entry: sc.end.id}
			if frontier == nil || frontier.before(f) {
				frontier = f
			}
		}
	}
	var all []*Message
	for _, sc := range scans {
		for _, m := range sc.got {
			if frontier == nil || !m.before(frontier) {
				all = append(all, m)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[j].before(all[i]) })
	res := HistoryResult{Messages: []Message{}}
	for i, m := range all {
		if i == q.Limit {
			break
		}
		res.Messages = append(res.Messages, *m)
	}
	if len(all) > q.Limit {
		res.Next = res.Messages[len(res.Messages)-1].ID
	} else if frontier != nil {
		res.Next = frontier.ID
	}
	if res.Unread, err = s.unreadCount(ctx, streams, st, false); err != nil {
		return HistoryResult{}, err
	}
	res.Cursor = encodeCursor(streams, tails)
	return res, nil
}

// fromXMessage converts a go-redis stream message.
func fromXMessage(st stream, x redis.XMessage) (*Message, error) {
	kv := make([]any, 0, 2*len(x.Values))
	for k, v := range x.Values {
		kv = append(kv, k, fmt.Sprint(v))
	}
	return decodeEntry(st, []any{x.ID, kv})
}

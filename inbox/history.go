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
	// MaxHistoryTypes caps the types one history query may name.
	MaxHistoryTypes = 16
)

// HistoryQuery selects a page of history.
type HistoryQuery struct {
	Limit  int      // 0 = DefaultHistoryLimit
	Before string   // public id: return messages older than this one
	Types  []string // only these types (any of them); ≤ MaxHistoryTypes
	Unread bool     // only unread messages
	Since  time.Time
	Until  time.Time
}

// HistoryResult is one page of history, newest first.
type HistoryResult struct {
	Messages []Message
	Next     string // Before value for the next page; "" at the end
	Unread   int
	// UnreadByType splits Unread by message type (types with n > 0).
	UnreadByType map[string]int
	Cursor       string // the tail at the time of the read: poll from here to miss nothing
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
// History always reads Redis (see view).
//
// It runs in phases: start (check the query), state (tails and read
// state), plan (each stream's range), scan (read the ranges in rounds
// until the page is full), then answer (merge, page, count).
func (s *Store) History(ctx context.Context, r Reader, q HistoryQuery) (HistoryResult, error) {
	h, err := s.startHistory(r, q)
	if err != nil {
		return HistoryResult{}, err
	}
	if err := h.state(ctx); err != nil {
		return HistoryResult{}, err
	}
	h.plan()
	if err := h.scan(ctx); err != nil {
		return HistoryResult{}, err
	}
	return h.answer(ctx)
}

// historyRun is one history request in progress.
type historyRun struct {
	s       *Store
	user    string
	q       HistoryQuery
	streams []stream
	before  *msgRef
	types   map[string]bool // nil: every type
	tails   positions
	st      *userState
	scans   []*scan
}

// scan is one stream's part of a page: the upper end (tail, before,
// until), the lower end (since), and what was found so far.
type scan struct {
	st      stream
	end     bound
	start   string
	got     []*Message
	done    bool
	capped  bool // stopped by historyScan: examined only down to end
	scanned int
}

// startHistory checks the query.
func (s *Store) startHistory(r Reader, q HistoryQuery) (*historyRun, error) {
	streams, err := s.streamsOf(r)
	if err != nil {
		return nil, err
	}
	if q.Limit == 0 {
		q.Limit = DefaultHistoryLimit
	}
	if q.Limit < 0 || q.Limit > MaxHistoryLimit {
		return nil, fmt.Errorf("%w: limit must be 1-%d", ErrInvalid, MaxHistoryLimit)
	}
	h := &historyRun{s: s, user: r.User, q: q, streams: streams}
	types := q.Types
	if len(types) > MaxHistoryTypes {
		return nil, fmt.Errorf("%w: more than %d types", ErrInvalid, MaxHistoryTypes)
	}
	for _, t := range types {
		if len(t) > MaxTypeLen {
			return nil, fmt.Errorf("%w: type longer than %d bytes", ErrInvalid, MaxTypeLen)
		}
		if h.types == nil {
			h.types = map[string]bool{}
		}
		h.types[t] = true
	}
	if q.Before != "" {
		m, err := parseMsgRef(q.Before)
		if err != nil {
			return nil, err
		}
		if _, err := findStream(streams, m); err != nil {
			return nil, fmt.Errorf("%w: before names a stream outside the reader's view", ErrBadID)
		}
		h.before = &m
	}
	return h, nil
}

// state reads the streams' tails and the user's read state, with every
// unread inbox id (for read flags).
func (h *historyRun) state(ctx context.Context) error {
	s := h.s
	var err error
	if h.tails, err = s.tails(ctx, h.user, h.streams); err != nil {
		return err
	}
	if h.st, err = s.loadState(ctx, h.user); err != nil {
		return err
	}
	unreadIDs, err := s.rdb.ZRange(ctx, s.k.unread(h.user), 0, -1).Result()
	if err != nil && err != redis.Nil {
		return wrapRedis("history", err)
	}
	for _, id := range unreadIDs {
		h.st.inboxUnread[id] = true
	}
	h.st.allInbox = true
	return nil
}

// plan sets each non-empty stream's range.
func (h *historyRun) plan() {
	q := h.q
	for _, sh := range h.streams {
		end := bound{id: h.tails[sh.name]}
		if end.id.isZero() {
			continue // empty stream
		}
		if h.before != nil {
			// Order is (entry, stream name): in a stream named before the
			// reference stream, the equal entry ID still comes first.
			b := bound{id: h.before.entry, excl: !(sh.name < h.before.streamName())}
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
		h.scans = append(h.scans, &scan{st: sh, end: end, start: start})
	}
}

// scan reads the ranges newest first, in rounds, until each stream has
// given a page and one more, is exhausted, or reached historyScan.
func (h *historyRun) scan(ctx context.Context) error {
	want := h.q.Limit + 1
	batch := max(2*want, 50)
	for {
		var active []*scan
		for _, sc := range h.scans {
			if !sc.done && len(sc.got) < want {
				active = append(active, sc)
			}
		}
		if len(active) == 0 {
			return nil
		}
		if err := h.round(ctx, active, batch); err != nil {
			return err
		}
	}
}

// round reads one batch of each active stream and keeps what matches.
func (h *historyRun) round(ctx context.Context, active []*scan, batch int) error {
	rdb, q, st := h.s.rdb, h.q, h.st
	now := ms(h.s.opt.Now())
	cmds := make([]*redis.XMessageSliceCmd, len(active))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sc := range active {
			cmds[i] = p.XRevRangeN(ctx, sc.st.key, sc.end.arg(), sc.start, int64(batch))
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return wrapRedis("history", err)
	}
	for i, sc := range active {
		xs, err := cmds[i].Result()
		if err != nil && err != redis.Nil {
			return wrapRedis("history", err)
		}
		for _, x := range xs {
			m, err := fromXMessage(sc.st, x)
			if err != nil {
				return err
			}
			sc.end = bound{id: m.entry, excl: true}
			// A revoke's tombstone is no message (what it revokes is gone).
			if m.tombstone() || m.expired(now) || st.hidden[m.ID] || (h.types != nil && !h.types[m.Type]) {
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
	return nil
}

// answer merges what the scans found into one page, newest first, with
// the next page's start, the unread count and the cursor at the tails.
func (h *historyRun) answer(ctx context.Context) (HistoryResult, error) {
	// A stream cut short was examined only down to its frontier: a message
	// older than that could jump over entries not examined yet. The page
	// stops at the newest frontier, and next continues from there, also
	// when the page is empty.
	var frontier *Message
	for _, sc := range h.scans {
		if sc.capped {
			f := &Message{ID: sc.st.publicID(sc.end.id), stream: sc.st.name, entry: sc.end.id}
			if frontier == nil || frontier.before(f) {
				frontier = f
			}
		}
	}
	var all []*Message
	for _, sc := range h.scans {
		for _, m := range sc.got {
			if frontier == nil || !m.before(frontier) {
				all = append(all, m)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[j].before(all[i]) })
	res := HistoryResult{Messages: []Message{}}
	for i, m := range all {
		if i == h.q.Limit {
			break
		}
		res.Messages = append(res.Messages, *m)
	}
	if len(all) > h.q.Limit {
		res.Next = res.Messages[len(res.Messages)-1].ID
	} else if frontier != nil {
		res.Next = frontier.ID
	}
	c, err := h.s.unreadCounts(ctx, h.streams, h.st, false)
	if err != nil {
		return HistoryResult{}, err
	}
	res.Unread, res.UnreadByType = c.Total, c.ByType
	res.Cursor = encodeCursor(h.streams, h.tails)
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

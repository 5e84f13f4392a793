package inbox

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The in-memory model of the contract that TestModel checks the stores
// against. It is plain bookkeeping: streams in publish order, and per user
// what was read and what was deleted. Read state is per user (shared by
// all of a user's clients), also for broadcast and group messages; "mark
// all read" marks everything published before the call. Visibility only
// ever ends (a deletion, a hide or an expiry is forever), so a message the
// store skipped because it was invisible can never be owed again.
//
// Every change remembers when it happened (span): a waiting poll's answer
// may reflect any state of its own time, or (a cache's trust bound) a
// state up to TrustFor older, and the checks need to know which states
// those were.

// span is when an operation ran, by the wall clock: its change may be
// seen from start on and is complete at end.
type span struct{ start, end time.Time }

// modelMsg is one stream entry.
type modelMsg struct {
	id        string // public id, as Publish returned it
	stream    string // model stream: "in:<user>", "b" or "g:<group>"
	index     int    // position in its stream, from 0
	ms, seq   uint64 // entry ID
	title     string
	typ       string
	sender    string
	expiresAt int64 // unix ms by the stores' clock; 0 = never
	pub       span
	op        int   // the operation that published it
	dropped   bool  // B loses its wake-ups
	expired   *span // the clock advance that expired it
	revoked   *span // the revoke that took it from its stream, for everyone
}

func (m *modelMsg) String() string { return m.id + " (" + m.title + ")" }

// userMsg is one user's relation to one message.
type userMsg struct {
	read *span // first marked read
	gone *span // deleted (inbox) or hidden (shared) by this user
}

// countEv is a change of a user's unread count.
type countEv struct {
	sp span
	n  int
	op int
}

// idemPub is a publish made with an idempotency key, to be retried.
type idemPub struct {
	target byte
	to     []int
	sender int
	key    string
	draft  Draft
	op     int
}

type model struct {
	groupsOf [][]int
	inGroup  [modelUsers][modelGroups]bool
	streams  map[string][]*modelMsg
	all      []*modelMsg // publish order
	shared   map[string]*modelMsg
	inbox    [modelUsers]map[string]*modelMsg
	rel      [modelUsers]map[*modelMsg]*userMsg
	idem     map[string]*modelMsg
	idemPubs []idemPub
	counts   [modelUsers][]countEv
	last     [modelUsers]int
	nowMS    int64
}

func newModel(groupsOf [][]int) *model {
	m := &model{groupsOf: groupsOf, streams: map[string][]*modelMsg{}, shared: map[string]*modelMsg{}, idem: map[string]*modelMsg{}}
	for u := range modelUsers {
		for _, g := range groupsOf[u] {
			m.inGroup[u][g] = true
		}
		m.inbox[u] = map[string]*modelMsg{}
		m.rel[u] = map[*modelMsg]*userMsg{}
	}
	return m
}

func inboxStream(u int) string   { return "in:" + strconv.Itoa(u) }
func groupStream(g int) string   { return "g:" + strconv.Itoa(g) }
func isInbox(stream string) bool { return strings.HasPrefix(stream, "in:") }

// userStreams lists the model streams user u reads.
func (m *model) userStreams(u int) []string {
	out := []string{inboxStream(u), "b"}
	for _, g := range m.groupsOf[u] {
		out = append(out, groupStream(g))
	}
	return out
}

// reads tells whether user u reads stream s.
func (m *model) reads(u int, s string) bool {
	switch {
	case s == "b":
		return true
	case isInbox(s):
		return s == inboxStream(u)
	}
	g, _ := strconv.Atoi(strings.TrimPrefix(s, "g:"))
	return m.inGroup[u][g]
}

// idPrefix is the public id prefix of a model stream's entries.
func idPrefix(s string) string {
	switch {
	case s == "b":
		return "b."
	case isInbox(s):
		return "u."
	}
	g, _ := strconv.Atoi(strings.TrimPrefix(s, "g:"))
	return "g." + groupName(g) + "."
}

// source is the Message.Source of a model stream's entries.
func source(s string) string {
	switch {
	case s == "b":
		return "broadcast"
	case isInbox(s):
		return "user"
	}
	g, _ := strconv.Atoi(strings.TrimPrefix(s, "g:"))
	return "group:" + groupName(g)
}

// parseModelEntry returns the entry ID part of a public id.
func parseModelEntry(id string) (ms, seq uint64, err error) {
	dot := strings.LastIndexByte(id, '.')
	a, b, ok := strings.Cut(id[dot+1:], "-")
	if !ok {
		return 0, 0, fmt.Errorf("id %q has no entry ID", id)
	}
	if ms, err = strconv.ParseUint(a, 10, 64); err == nil {
		seq, err = strconv.ParseUint(b, 10, 64)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("id %q: %v", id, err)
	}
	return ms, seq, nil
}

// destStreams resolves a publish target to model streams, one per element.
func (m *model) destStreams(target byte, to []int) []string {
	switch target {
	case 'u':
		out := make([]string, len(to))
		for i, u := range to {
			out[i] = inboxStream(u)
		}
		return out
	case 'g':
		out := make([]string, len(to))
		for i, g := range to {
			out[i] = groupStream(g)
		}
		return out
	}
	return []string{"b"}
}

// published records a publish's outcome: for each destination either the
// original message of the idempotency key or a new message, and checks
// the ids the store returned against that.
func (m *model) published(op int, dests, ids []string, p idemPub, expiresAt int64, dropped bool, sp span) error {
	if len(ids) != len(dests) {
		return fmt.Errorf("Publish returned %d ids for %d recipients: %v", len(ids), len(dests), ids)
	}
	made := map[string]*modelMsg{}
	for i, s := range dests {
		id := ids[i]
		if x := made[s]; x != nil {
			if id != x.id {
				return fmt.Errorf("Publish returned %s and %s for the same recipient", x.id, id)
			}
			continue
		}
		ik := s + "|" + p.draft.Sender + "|" + p.key
		if p.key != "" {
			if orig := m.idem[ik]; orig != nil {
				if id != orig.id {
					return fmt.Errorf("retry with key %q returned %s, the original (op #%d) is %s", p.key, id, orig.op, orig.id)
				}
				made[s] = orig
				continue
			}
		}
		if !strings.HasPrefix(id, idPrefix(s)) {
			return fmt.Errorf("Publish returned id %s for a message to %s", id, source(s))
		}
		ms, seq, err := parseModelEntry(id)
		if err != nil {
			return err
		}
		list := m.streams[s]
		if n := len(list); n > 0 && (ms < list[n-1].ms || ms == list[n-1].ms && seq <= list[n-1].seq) {
			return fmt.Errorf("Publish returned %s, not after the stream's previous entry %s", id, list[n-1].id)
		}
		msg := &modelMsg{id: id, stream: s, index: len(list), ms: ms, seq: seq, title: p.draft.Title,
			typ: p.draft.Type, sender: p.draft.Sender, expiresAt: expiresAt, pub: sp, op: op, dropped: dropped}
		m.streams[s] = append(list, msg)
		m.all = append(m.all, msg)
		if isInbox(s) {
			u, _ := strconv.Atoi(strings.TrimPrefix(s, "in:"))
			m.inbox[u][id] = msg
		} else {
			if m.shared[id] != nil {
				return fmt.Errorf("Publish returned %s twice", id)
			}
			m.shared[id] = msg
		}
		made[s] = msg
		if p.key != "" {
			m.idem[ik] = msg
		}
	}
	return nil
}

// lookup finds the message a store returned to user u.
func (m *model) lookup(u int, id string) (*modelMsg, error) {
	var msg *modelMsg
	if strings.HasPrefix(id, "u.") {
		msg = m.inbox[u][id]
	} else {
		msg = m.shared[id]
	}
	if msg == nil {
		return nil, fmt.Errorf("%s got %s, which the model never published to it", userName(u), id)
	}
	if !m.reads(u, msg.stream) {
		return nil, fmt.Errorf("%s got %s from %s, which it does not read", userName(u), msg, source(msg.stream))
	}
	return msg, nil
}

func (m *model) relOf(u int, msg *modelMsg) *userMsg {
	r := m.rel[u][msg]
	if r == nil {
		r = &userMsg{}
		m.rel[u][msg] = r
	}
	return r
}

// visible tells whether user u sees msg now.
func (m *model) visible(u int, msg *modelMsg) bool {
	return msg.expired == nil && msg.revoked == nil && m.relOf(u, msg).gone == nil
}

func (m *model) isRead(u int, msg *modelMsg) bool { return m.relOf(u, msg).read != nil }

// goneBy tells whether msg's visibility for u may have ended before t.
func (m *model) goneBy(u int, msg *modelMsg, t time.Time) bool {
	r := m.relOf(u, msg)
	return msg.expired != nil && msg.expired.start.Before(t) || r.gone != nil && r.gone.start.Before(t) ||
		msg.revoked != nil && msg.revoked.start.Before(t)
}

// goneBefore returns the change that had surely ended msg's visibility
// for u before t, or nil.
func (m *model) goneBefore(u int, msg *modelMsg, t time.Time) *span {
	if msg.expired != nil && msg.expired.end.Before(t) {
		return msg.expired
	}
	if r := m.relOf(u, msg); r.gone != nil && r.gone.end.Before(t) {
		return r.gone
	}
	if msg.revoked != nil && msg.revoked.end.Before(t) {
		return msg.revoked
	}
	return nil
}

// userMsgs lists every message user u reads, in publish order.
func (m *model) userMsgs(u int) []*modelMsg {
	var out []*modelMsg
	for _, msg := range m.all {
		if m.reads(u, msg.stream) {
			out = append(out, msg)
		}
	}
	return out
}

// unread is user u's unread count now.
func (m *model) unread(u int) int {
	n := 0
	for _, msg := range m.all {
		if m.reads(u, msg.stream) && m.visible(u, msg) && !m.isRead(u, msg) {
			n++
		}
	}
	return n
}

// unreadByType is user u's unread count per type now (types with n > 0).
func (m *model) unreadByType(u int) map[string]int {
	out := map[string]int{}
	for _, msg := range m.all {
		if m.reads(u, msg.stream) && m.visible(u, msg) && !m.isRead(u, msg) {
			out[msg.typ]++
		}
	}
	return out
}

// byTime orders messages oldest first: by entry ID, then stream (only
// for a stable order: the checks never rely on how ties are ordered).
func byTime(ms []*modelMsg) {
	sort.Slice(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if a.ms != b.ms {
			return a.ms < b.ms
		}
		if a.seq != b.seq {
			return a.seq < b.seq
		}
		return a.stream < b.stream
	})
}

// available lists the messages user u sees now after the positions (per
// stream: how many of its entries the client is past), oldest first.
func (m *model) available(u int, pos map[string]int) []*modelMsg {
	var out []*modelMsg
	for _, s := range m.userStreams(u) {
		for _, msg := range m.streams[s][min(pos[s], len(m.streams[s])):] {
			if m.visible(u, msg) {
				out = append(out, msg)
			}
		}
	}
	byTime(out)
	return out
}

// tails returns positions past every entry published so far.
func (m *model) tails(u int) map[string]int {
	pos := map[string]int{}
	for _, s := range m.userStreams(u) {
		pos[s] = len(m.streams[s])
	}
	return pos
}

func (m *model) markRead(u int, msgs []*modelMsg, sp span) {
	for _, msg := range msgs {
		if r := m.relOf(u, msg); r.read == nil {
			r.read = &sp
		}
	}
}

func (m *model) readAll(u int, sp span) { m.markRead(u, m.userMsgs(u), sp) }

// remove deletes or hides msg for u; it reports whether it was already gone.
func (m *model) remove(u int, msg *modelMsg, sp span) (already bool) {
	r := m.relOf(u, msg)
	if r.gone != nil {
		return true
	}
	r.gone = &sp
	return false
}

// advance moves the model's clock, expiring messages.
func (m *model) advance(nowMS int64, sp span) {
	m.nowMS = nowMS
	for _, msg := range m.all {
		if msg.expiresAt != 0 && msg.expiresAt <= nowMS && msg.expired == nil {
			msg.expired = &sp
		}
	}
}

// recordCounts notes the users whose unread count operation op's change
// (at sp) moved.
func (m *model) recordCounts(op int, sp span) {
	for u := range modelUsers {
		if n := m.unread(u); n != m.last[u] {
			m.last[u] = n
			m.counts[u] = append(m.counts[u], countEv{sp, n, op})
		}
	}
}

// countHistory describes user u's last count changes relative to t.
func (m *model) countHistory(u int, t time.Time) string {
	evs := m.counts[u]
	var parts []string
	for _, ev := range evs[max(0, len(evs)-6):] {
		parts = append(parts, fmt.Sprintf("%d by op #%d at %v..%v", ev.n, ev.op,
			ev.sp.start.Sub(t).Round(time.Millisecond), ev.sp.end.Sub(t).Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// countRange returns the lowest and highest unread count of user u that
// an answer given at to may hold if it saw each message in any state the
// message had at some time in [from, to]. Caches keep parts of the state
// (read marks, stream tails, counts) each for up to the trust bound, so
// the parts of one answer may be of different ages: only messages whose
// own state changed in the window can make the count differ from the
// exact one, and each of them by one.
func (m *model) countRange(u int, from, to time.Time) (lo, hi int) {
	for _, x := range m.userMsgs(u) {
		r := m.relOf(u, x)
		// It counts at some time of the window if it may have been published
		// by then and may still have been visible and unread.
		begin, stop := from, to
		if x.pub.start.After(begin) {
			begin = x.pub.start
		}
		mayNot := from.Before(x.pub.end)
		for _, sp := range []*span{r.gone, r.read, x.expired, x.revoked} {
			if sp == nil {
				continue
			}
			if sp.end.Before(stop) {
				stop = sp.end
			}
			mayNot = mayNot || sp.start.Before(to)
		}
		if !stop.Before(begin) {
			hi++
		}
		if !mayNot {
			lo++
		}
	}
	return lo, hi
}

// countAt is user u's unread count once every change that ended by t is in.
func (m *model) countAt(u int, t time.Time) int {
	n := 0
	for _, ev := range m.counts[u] {
		if ev.sp.end.After(t) {
			break
		}
		n = ev.n
	}
	return n
}

// countMoves returns by how much user u's unread count moved, summed over
// the changes that may have been under way in [from, to]: an answer that
// saw each of them partly or not at all is off the exact count by that
// much at most.
func (m *model) countMoves(u int, from, to time.Time) int {
	moved, prev := 0, 0
	for _, ev := range m.counts[u] {
		if ev.sp.start.After(to) {
			break
		}
		if !ev.sp.end.Before(from) {
			moved += max(ev.n-prev, prev-ev.n)
		}
		prev = ev.n
	}
	return moved
}

// countAge returns how far before t an answer's unread count n looked:
// the shortest lookback, in steps of 5 ms up to limit, whose window's
// range holds n (0: a count of the moment t, with the changes under way
// then seen or not), or limit if none does.
func (m *model) countAge(u, n int, t time.Time, limit time.Duration) time.Duration {
	for d := time.Duration(0); d < limit; d += 5 * time.Millisecond {
		if lo, hi := m.countRange(u, t.Add(-d), t); lo <= n && n <= hi {
			return d
		}
	}
	return limit
}

package inbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentQuery pages an owner's publishes, newest first.
type SentQuery struct {
	Limit  int    // default 20, at most 100
	Before string // a publish id: list only older ones; "" = from the newest
}

// SentRecord is one publish as its owner sees it.
type SentRecord struct {
	PublishID, State, Target string // target: users, groups or broadcast
	To                       []string
	Count                    int
	Type, Title, Level, Link string
	Created, SendAt, StateAt time.Time // SendAt zero: not scheduled
	// Recipients of a sent direct publish by status; nil when not
	// reported (group and broadcast sends, and sends not in state sent).
	Read, Unread, Deleted, Expired *int
}

// SentResult is a page of publishes; Next is the Before of the next page ("" = end).
type SentResult struct {
	Sends []SentRecord
	Next  string
}

// SentDetailQuery pages one publish's recipients, sorted by user id.
type SentDetailQuery struct {
	State string // read, unread, deleted or expired; "" = all
	Limit int    // default 100, at most 1,000
	After string // a user id: list only later ones
}

// RecipientStatus is one recipient of a direct publish: the user, their
// message id and its status: deleted (no longer in the inbox: deleted by
// the user, or trimmed), expired (its expiry has passed, read or not),
// unread, or read.
type RecipientStatus struct{ User, ID, State string }

// SentDetailResult is one publish and a page of its recipients
// (Recipients nil for group and broadcast sends).
type SentDetailResult struct {
	Send       SentRecord
	Recipients []RecipientStatus
	Next       string
}

// recipientStatusScript tells what became of one inbox message:
// deleted (gone from the stream: deleted by the user, revoked or
// trimmed), expired, unread or read.
//
// KEYS: inbox, unread; ARGV: entry id, now ms.
var recipientStatusScript = register(redis.NewScript(`
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return 'deleted' end
local f = e[1][2]
for i = 1, #f - 1, 2 do
  if f[i] == 'expires' and tonumber(f[i + 1]) <= tonumber(ARGV[2]) then return 'expired' end
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 'unread' end
return 'read'
`))

// Paging limits of Sent and SentDetail, and the most recipient statuses
// one Sent page reads (a page ends early rather than exceed it, but
// always lists one publish).
const (
	sentDefaultLimit   = 20
	sentMaxLimit       = 100
	detailDefaultLimit = 100
	detailMaxLimit     = 1000
	sentStatusBudget   = 20000
)

// incompleteAfter is how long after its start a publish still sending
// (a publish that failed half-way) is reported as incomplete.
const incompleteAfter = time.Minute

// Sent lists o's publishes, newest first. Each direct publish in state
// sent gets its recipients' statuses, read from their own keys now:
// exact, never counted ahead.
func (s *Store) Sent(ctx context.Context, o Owner, q SentQuery) (SentResult, error) {
	if !o.valid() {
		return SentResult{}, fmt.Errorf("%w: owner %q", ErrBadName, o.Name)
	}
	limit := q.Limit
	if limit == 0 {
		limit = sentDefaultLimit
	}
	if limit < 0 || limit > sentMaxLimit {
		return SentResult{}, fmt.Errorf("%w: limit must be 1-%d", ErrInvalid, sentMaxLimit)
	}
	var before *entryID
	if q.Before != "" {
		p, err := parsePubID(q.Before)
		if err != nil {
			return SentResult{}, err
		}
		before = &p.at
	}
	ats, err := s.sentIndex(ctx, o, before, limit+1)
	if err != nil {
		return SentResult{}, err
	}
	more := len(ats) > limit
	if more {
		ats = ats[:limit]
	}
	recs, err := s.readRecords(ctx, o, ats)
	if err != nil {
		return SentResult{}, err
	}
	// Within the budget of status reads, always at least one publish.
	var counted []*pubRecord
	budget := 0
	for i, r := range recs {
		if r != nil && r.direct() && r.f["state"] == "sent" {
			n := int(r.num("count"))
			if budget+n > sentStatusBudget && i > 0 {
				recs, more = recs[:i], true
				break
			}
			budget += n
			counted = append(counted, r)
		}
	}
	statuses, err := s.statuses(ctx, counted)
	if err != nil {
		return SentResult{}, err
	}
	res := SentResult{Sends: []SentRecord{}}
	for _, r := range recs {
		if r == nil {
			continue // expired
		}
		sr := s.sentRecord(r)
		if st, ok := statuses[r]; ok {
			sr.count(st)
		}
		res.Sends = append(res.Sends, sr)
	}
	if more {
		res.Next = pubID{owner: o, at: ats[len(recs)-1]}.String()
	}
	return res, nil
}

// sentIndex returns up to n of o's publishes (their <ms>-<seq>), newest
// first, older than before when set. Members of one millisecond sort by
// name in the index ("1-10" before "1-9"), so a millisecond cut by the
// window is read whole and sorted here.
func (s *Store) sentIndex(ctx context.Context, o Owner, before *entryID, n int) ([]entryID, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	key := s.k.sent(o.tag())
	maxS := "+inf"
	if before != nil {
		maxS = strconv.FormatUint(before.ms, 10)
	}
	var out []entryID
	add := func(ms []string) {
		for _, m := range ms {
			if e, err := parseEntryID(m); err == nil && (before == nil || e.less(*before)) {
				out = append(out, e)
			}
		}
	}
	for len(out) < n {
		win, err := s.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Max: maxS, Min: "-inf", Count: int64(n)}).Result()
		if err != nil {
			return nil, wrapRedis("sent index", err)
		}
		if len(win) == 0 {
			break
		}
		last := int64(win[len(win)-1].Score)
		var ms []string
		for _, z := range win {
			if m, _ := z.Member.(string); int64(z.Score) > last || len(win) < n {
				ms = append(ms, m)
			}
		}
		if len(win) == n {
			// The window may end inside a millisecond: read all of it.
			all, err := s.rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: strconv.FormatInt(last, 10), Max: strconv.FormatInt(last, 10)}).Result()
			if err != nil {
				return nil, wrapRedis("sent index", err)
			}
			ms = append(ms, all...)
		}
		add(ms)
		if len(win) < n {
			break
		}
		maxS = "(" + strconv.FormatInt(last, 10)
	}
	sort.Slice(out, func(i, j int) bool { return out[j].less(out[i]) })
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// readRecords reads o's records at ats in one pipeline (nil: expired).
func (s *Store) readRecords(ctx context.Context, o Owner, ats []entryID) ([]*pubRecord, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	cmds := make([]*redis.MapStringStringCmd, len(ats))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, at := range ats {
			cmds[i] = p.HGetAll(ctx, s.k.pub(o.tag(), at.String()))
		}
		return nil
	})
	if err != nil {
		return nil, wrapRedis("publish records", err)
	}
	out := make([]*pubRecord, len(ats))
	for i, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			out[i] = recordFrom(pubID{owner: o, at: ats[i]}, m)
		}
	}
	return out, nil
}

// direct reports whether the record is a publish to listed users.
func (r *pubRecord) direct() bool { return r.f["target"] == "users" }

// sentRecord is r as Sent shows it.
func (s *Store) sentRecord(r *pubRecord) SentRecord {
	sr := SentRecord{PublishID: r.p.String(), State: r.f["state"], Target: r.f["target"],
		Count: int(r.num("count")), Type: r.f["type"], Title: r.f["title"], Level: r.f["level"], Link: r.f["link"],
		Created: r.time("created"), SendAt: r.time("send_at"), StateAt: r.time("state_at"), To: []string{}}
	if v := r.f["to"]; v != "" {
		_ = json.Unmarshal([]byte(v), &sr.To)
	}
	if sr.State == "sending" && r.f["send_at"] == "" && s.opt.Now().Sub(sr.StateAt) > s.opt.CallTimeout+incompleteAfter {
		sr.State = "incomplete" // failed half-way, never retried
	}
	return sr
}

// count fills in the status counts.
func (sr *SentRecord) count(st []RecipientStatus) {
	n := map[string]int{}
	for _, r := range st {
		n[r.State]++
	}
	read, unread, deleted, expired := n["read"], n["unread"], n["deleted"], n["expired"]
	sr.Read, sr.Unread, sr.Deleted, sr.Expired = &read, &unread, &deleted, &expired
}

// statuses reads the status of every recipient of the records (direct
// publishes in state sent), sorted by user id: one recipient hash read
// per record, then one recipientStatusScript per recipient, pipelined.
func (s *Store) statuses(ctx context.Context, recs []*pubRecord) (map[*pubRecord][]RecipientStatus, error) {
	out := map[*pubRecord][]RecipientStatus{}
	if len(recs) == 0 {
		return out, nil
	}
	ctx2, cancel := s.bounded(ctx)
	defer cancel()
	cmds := make([]*redis.MapStringStringCmd, len(recs))
	_, err := s.rdb.Pipelined(ctx2, func(p redis.Pipeliner) error {
		for i, r := range recs {
			cmds[i] = p.HGetAll(ctx2, s.k.prcpt(r.p.owner.tag(), r.p.seq()))
		}
		return nil
	})
	if err != nil {
		return nil, wrapRedis("publish recipients", err)
	}
	now := ms(s.opt.Now())
	var calls []scriptCall
	for i, r := range recs {
		got := cmds[i].Val()
		users := make([]string, 0, len(got))
		for u := range got {
			users = append(users, u)
		}
		sort.Strings(users)
		list := make([]RecipientStatus, 0, len(users))
		for _, u := range users {
			e, err := parseEntryID(got[u])
			if err != nil || !ValidUser(u) {
				continue
			}
			list = append(list, RecipientStatus{User: u, ID: s.k.userStream(u).publicID(e)})
			calls = append(calls, scriptCall{sc: recipientStatusScript, keys: []string{s.k.inbox(u), s.k.unread(u)}, args: []any{e.String(), now}})
		}
		out[r] = list
	}
	res, err := s.evalPipe(ctx, calls)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, r := range recs {
		for j := range out[r] {
			out[r][j].State, _ = res[n].(string)
			n++
		}
	}
	return out, nil
}

// SentDetail returns one publish with a page of its recipients' statuses
// (for a direct publish in state sent; Recipients is empty for one in
// another state, nil for group and broadcast publishes). A publish that
// is not by's (unless admin) is ErrNotFound, as is one that expired.
func (s *Store) SentDetail(ctx context.Context, by Owner, admin bool, publishID string, q SentDetailQuery) (SentDetailResult, error) {
	p, err := parsePubID(publishID)
	if err != nil {
		return SentDetailResult{}, err
	}
	switch q.State {
	case "", "read", "unread", "deleted", "expired":
	default:
		return SentDetailResult{}, fmt.Errorf("%w: state must be read, unread, deleted or expired", ErrInvalid)
	}
	limit := q.Limit
	if limit == 0 {
		limit = detailDefaultLimit
	}
	if limit < 0 || limit > detailMaxLimit {
		return SentDetailResult{}, fmt.Errorf("%w: limit must be 1-%d", ErrInvalid, detailMaxLimit)
	}
	if p.owner != by && !admin {
		return SentDetailResult{}, fmt.Errorf("%w: publish %s", ErrNotFound, publishID)
	}
	rec, err := s.readRecord(ctx, p)
	if err != nil {
		return SentDetailResult{}, err
	}
	if rec == nil {
		return SentDetailResult{}, fmt.Errorf("%w: publish %s", ErrNotFound, publishID)
	}
	res := SentDetailResult{Send: s.sentRecord(rec)}
	if !rec.direct() {
		return res, nil
	}
	res.Recipients = []RecipientStatus{}
	if rec.f["state"] != "sent" {
		return res, nil
	}
	all, err := s.statuses(ctx, []*pubRecord{rec})
	if err != nil {
		return SentDetailResult{}, err
	}
	list := all[rec]
	res.Send.count(list)
	for _, r := range list {
		if r.User <= q.After || (q.State != "" && r.State != q.State) {
			continue
		}
		if len(res.Recipients) == limit {
			res.Next = res.Recipients[limit-1].User
			break
		}
		res.Recipients = append(res.Recipients, r)
	}
	return res, nil
}

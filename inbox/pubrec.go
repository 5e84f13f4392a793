package inbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A publish record (key pub:{<owner>}:<ms>-<seq>, see keys.go) says what
// a publish was and what became of it; prcpt:{<owner>}:<ms>-<seq> lists
// the entry each recipient got, and sent:{<owner>} indexes an owner's
// records by time. All three carry the owner's tag: one slot, so each
// script below touches one slot only.
//
// States: scheduled → sending → sent, scheduled → cancelled, and
// sending|sent → revoking → revoked. A publish made now starts in
// sending. pubStateScript makes every transition a compare-and-set, so of
// two racing parties (a scheduler delivering, a user cancelling) exactly
// one wins.

// pubBeginScript creates a publish record, or finds the one an earlier
// call made under the same client idempotency key.
//
// KEYS: sent index, pidem (or an unused key of the slot), record
// ARGV: index trim score, proposed member <ms>-<seq>, publish id, useIdem,
// idem TTL (s), record expiry (unix ms), created ms, field, value, …
// Returns {publish id, 1} (created), {earlier publish id, 0}, or
// {"taken", 0} when the proposed id is in use (propose the next seq).
var pubBeginScript = register(redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if ARGV[4] == '1' then
  local p = redis.call('GET', KEYS[2])
  if p then return {p, 0} end
end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('EXISTS', KEYS[3]) == 1 then
  return {'taken', 0}
end
redis.call('HSET', KEYS[3], unpack(ARGV, 8))
redis.call('PEXPIREAT', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[7], ARGV[2])
if ARGV[4] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[5]) end
return {ARGV[3], 1}
`))

// pubFinishScript records the entries a publish wrote and moves it from
// sending to sent. A record being revoked stays so: the caller then
// revokes the entries it has just written (a revoke that read the
// recipient hash before they were there could not).
//
// KEYS: record, recipients; ARGV: now ms, expiry (unix ms), recipient, entry id, …
// Returns {old state, new state} ("" when the record is gone).
var pubFinishScript = register(redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'', ''} end
for i = 3, #ARGV, 1000 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if #ARGV >= 3 then redis.call('PEXPIREAT', KEYS[2], ARGV[2]) end
local to = st
if st == 'sending' then
  to = 'sent'
  redis.call('HSET', KEYS[1], 'state', to, 'state_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'draft')
end
return {st, to}
`))

// pubStateScript moves a record between states, compare-and-set:
//
//	deliver:  scheduled, or sending begun before ARGV[3] (a deliverer that
//	          lost its lease) → sending; returns the record
//	withdraw: scheduled → cancelled; sending|sent|revoking → revoking;
//	          returns the record
//	revoked:  revoking → revoked
//
// KEYS: record; ARGV: op, now ms, stale-before ms, by (owner tag or "").
// Returns {old state, new state, record as HGETALL (not for revoked),
// moved (0|1)}: old "" when there is no record; new = old when nothing
// moved, and also when sending was taken over (moved 1).
var pubStateScript = register(redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'', '', {}, 0} end
local op, to = ARGV[1], nil
if op == 'deliver' then
  if st == 'scheduled' or (st == 'sending' and tonumber(redis.call('HGET', KEYS[1], 'state_at') or '0') < tonumber(ARGV[3])) then
    to = 'sending'
  end
elseif op == 'withdraw' then
  if st == 'scheduled' then to = 'cancelled'
  elseif st == 'sending' or st == 'sent' or st == 'revoking' then to = 'revoking' end
elseif op == 'revoked' then
  if st == 'revoking' then to = 'revoked' end
end
if to and to ~= st then
  redis.call('HSET', KEYS[1], 'state', to, 'state_at', ARGV[2])
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'by', ARGV[4]) end
  if to == 'cancelled' or to == 'revoked' then redis.call('HDEL', KEYS[1], 'draft') end
elseif to == st then
  redis.call('HSET', KEYS[1], 'state_at', ARGV[2])
end
local rec = {}
if op ~= 'revoked' then rec = redis.call('HGETALL', KEYS[1]) end
local moved = 0
if to then moved = 1 end
return {st, to or st, rec, moved}
`))

// pubRecord is a publish record's fields (see newPubRecord).
type pubRecord struct {
	p        pubID
	f        map[string]string
	expireAt int64 // unix ms
}

// newPubRecord describes a publish of d to t (resolved as rt) made at
// now, for sendAt (zero: now). It lives Retention past the later of both.
func (s *Store) newPubRecord(o Owner, d Draft, t Target, rt *targets, now, sendAt time.Time, idemKey string) *pubRecord {
	f := map[string]string{
		"owner": o.tag(), "sender": d.Sender, "type": d.Type, "title": d.Title, "level": d.Level,
		"link": d.Link, "created": strconv.FormatInt(ms(now), 10), "state": "sending",
		"state_at": strconv.FormatInt(ms(now), 10),
		"count":    strconv.Itoa(len(rt.streams)),
	}
	if d.ExpiresIn > 0 {
		f["expires_in"] = strconv.FormatInt(d.ExpiresIn.Milliseconds(), 10)
	}
	if idemKey != "" {
		f["idem"] = idemKey
	}
	var to []string
	switch {
	case len(t.Users) > 0:
		f["target"] = "users"
		to = rt.users
	case len(t.Groups) > 0:
		f["target"] = "groups"
		for _, st := range rt.streams {
			to = append(to, st.group)
		}
	default:
		f["target"] = "broadcast"
		f["count"] = "0"
	}
	if to != nil {
		b, _ := json.Marshal(to)
		f["to"] = string(b)
	}
	last := now
	if !sendAt.IsZero() {
		f["send_at"] = strconv.FormatInt(ms(sendAt), 10)
		f["state"] = "scheduled"
		b, _ := json.Marshal(draftBody{Body: d.Body, Data: d.Data})
		f["draft"] = string(b)
		last = sendAt
	}
	return &pubRecord{p: pubID{owner: o}, f: f, expireAt: ms(last.Add(s.opt.Retention))}
}

// draftBody is what a scheduled record keeps of the draft besides the
// fields it lists anyway.
type draftBody struct {
	Body string          `json:"body,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// recordFrom parses a record read with HGETALL (a flat list or a map).
func recordFrom(p pubID, raw any) *pubRecord {
	r := &pubRecord{p: p, f: map[string]string{}}
	switch v := raw.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			k, _ := v[i].(string)
			val, _ := v[i+1].(string)
			r.f[k] = val
		}
	case map[string]string:
		r.f = v
	}
	return r
}

func (r *pubRecord) num(field string) int64 {
	n, _ := strconv.ParseInt(r.f[field], 10, 64)
	return n
}

func (r *pubRecord) time(field string) time.Time {
	if n := r.num(field); n > 0 {
		return time.UnixMilli(n).UTC()
	}
	return time.Time{}
}

// target is the record's target as PublishWith took it.
func (r *pubRecord) target() (Target, error) {
	var to []string
	if v := r.f["to"]; v != "" {
		if err := json.Unmarshal([]byte(v), &to); err != nil {
			return Target{}, fmt.Errorf("publish record %s: to: %w", r.p, err)
		}
	}
	switch r.f["target"] {
	case "users":
		return Target{Users: to}, nil
	case "groups":
		return Target{Groups: to}, nil
	case "broadcast":
		return Target{Broadcast: true}, nil
	}
	return Target{}, fmt.Errorf("publish record %s: target %q", r.p, r.f["target"])
}

// draft rebuilds a scheduled record's draft.
func (r *pubRecord) draft() (Draft, error) {
	var b draftBody
	if err := json.Unmarshal([]byte(r.f["draft"]), &b); err != nil {
		return Draft{}, fmt.Errorf("publish record %s: draft: %w", r.p, err)
	}
	return Draft{Type: r.f["type"], Title: r.f["title"], Body: b.Body, Link: r.f["link"], Level: r.f["level"],
		Sender: r.f["sender"], Data: b.Data, ExpiresIn: time.Duration(r.num("expires_in")) * time.Millisecond}, nil
}

// streamIdem is the per-stream idempotency key the publish's entries were
// written under ("<sender>:<key>"), or "" for none: the client's key, or
// for a scheduled publish one derived from its id ('~' is outside the key
// alphabet, so it never equals a client's), so that a delivery run again
// after a crash writes nothing twice.
func (r *pubRecord) streamIdem() string {
	switch {
	case r.f["send_at"] != "":
		return r.f["sender"] + ":~" + r.p.owner.tag()[:1] + "." + r.p.seq()
	case r.f["idem"] != "":
		return r.f["sender"] + ":" + r.f["idem"]
	}
	return ""
}

// bounded returns ctx bounded by the store's call timeout, for the plain
// commands that do not go through the batcher.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opt.CallTimeout)
}

// readRecord reads p's record (nil when there is none).
func (s *Store) readRecord(ctx context.Context, p pubID) (*pubRecord, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	m, err := s.rdb.HGetAll(ctx, s.k.pub(p.owner.tag(), p.seq())).Result()
	if err != nil {
		return nil, wrapRedis("publish record", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return recordFrom(p, m), nil
}

// pubSeqs remembers, per owner and millisecond, the next sequence number
// this instance proposes for a publish id. One owner (a busy API key)
// publishing thousands of times a second has several publishes per
// millisecond: proposing from 0 each time would cost a script call for
// every id already taken. Concurrent publishes may be made at slightly
// different clock readings, so recent milliseconds are kept side by side.
type pubSeqs struct {
	mu   sync.Mutex
	next map[pubSeqKey]uint64
}

type pubSeqKey struct {
	tag string
	ms  uint64
}

// maxPubSeqHints bounds the hints kept; past it those more than a second
// old are dropped, and if that is not enough, all.
const maxPubSeqHints = 4096

// take returns the sequence number to propose for owner tag in
// millisecond ms: from, or past every one handed out for that millisecond
// already, and reserves it.
func (h *pubSeqs) take(tag string, ms, from uint64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == nil {
		h.next = map[pubSeqKey]uint64{}
	}
	if len(h.next) >= maxPubSeqHints {
		for k := range h.next {
			if k.ms+1000 < ms {
				delete(h.next, k)
			}
		}
		if len(h.next) >= maxPubSeqHints {
			clear(h.next)
		}
	}
	k := pubSeqKey{tag, ms}
	seq := max(from, h.next[k])
	h.next[k] = seq + 1
	return seq
}

// give hands back seq, taken for owner tag in millisecond ms and not used
// (an earlier publish under the same idempotency key answered), unless a
// later one was taken since.
func (h *pubSeqs) give(tag string, ms, seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := pubSeqKey{tag, ms}
	if n, ok := h.next[k]; ok && n == seq+1 {
		h.next[k] = seq
	}
}

// maxPubSeq bounds the publish ids of one owner in one millisecond.
const maxPubSeq = 10000

// begin creates rec's record under a free id of its millisecond (from
// the first one this instance has not proposed yet), and returns it, or
// returns the record an earlier publish made under the same client
// idempotency key. For a scheduled record, propose is called with each id
// before the record is written (it adds the id to the due queue, see
// schedule) and unpropose when the id is not used after all.
func (s *Store) begin(ctx context.Context, rec *pubRecord, now time.Time, idemKey string,
	propose func(pubID) (bool, error), unpropose func(pubID) error) (*pubRecord, error) {
	o := rec.p.owner
	tag := o.tag()
	pk := s.k.pidem(tag, "-") // never read or written; keeps the slot
	useIdem := "0"
	if idemKey != "" {
		pk, useIdem = s.k.pidem(tag, idemKey), "1"
	}
	fv := make([]any, 0, 2*len(rec.f))
	for k, v := range rec.f {
		fv = append(fv, k, v)
	}
	trim := ms(now.Add(-2 * s.opt.Retention))
	at := uint64(ms(now))
	for seq := s.pubSeq.take(tag, at, 0); seq < maxPubSeq; seq = s.pubSeq.take(tag, at, seq+1) {
		p := pubID{owner: o, at: entryID{ms: at, seq: seq}}
		if propose != nil {
			ok, err := propose(p)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		args := append([]any{trim, p.seq(), p.String(), useIdem, int64(s.opt.IdempotentFor.Seconds()), rec.expireAt, rec.f["created"]}, fv...)
		res, err := s.evalPipe(ctx, []scriptCall{{sc: pubBeginScript, keys: []string{s.k.sent(tag), pk, s.k.pub(tag, p.seq())}, args: args}})
		if err != nil {
			return nil, err
		}
		pair, _ := res[0].([]any)
		if len(pair) != 2 {
			return nil, fmt.Errorf("publish begin: unexpected reply %v", res[0])
		}
		id, _ := pair[0].(string)
		created, _ := pair[1].(int64)
		if created == 1 {
			rec.p = p
			return rec, nil
		}
		if id == "taken" {
			if unpropose != nil {
				if err := unpropose(p); err != nil {
					return nil, err
				}
			}
			continue
		}
		// An earlier publish under the same idempotency key.
		s.pubSeq.give(tag, at, seq)
		old, err := parsePubID(id)
		if err != nil {
			return nil, fmt.Errorf("publish begin: %w", err)
		}
		if unpropose != nil && old != p {
			if err := unpropose(p); err != nil {
				return nil, err
			}
		}
		r, err := s.readRecord(ctx, old)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = &pubRecord{p: old, f: map[string]string{}}
		}
		return r, nil
	}
	return nil, fmt.Errorf("%w: no free publish id", ErrUnavailable)
}

// finishPublish records the entries es (of rt's streams) as delivered and moves
// the record to sent. If a revoke came first, it revokes them and
// answers revoked. It returns the record's old and new state.
func (s *Store) finishPublish(ctx context.Context, rec *pubRecord, rt *targets, es []entryID) (string, string, error) {
	tag, seq := rec.p.owner.tag(), rec.p.seq()
	args := make([]any, 0, 2+2*len(es))
	args = append(args, ms(s.opt.Now()), rec.expireAt)
	for i, e := range es {
		args = append(args, rt.rcpt(i), e.String())
	}
	res, err := s.evalPipe(ctx, []scriptCall{{sc: pubFinishScript, keys: []string{s.k.pub(tag, seq), s.k.prcpt(tag, seq)}, args: args}})
	if err != nil {
		return "", "", err
	}
	pair, _ := res[0].([]any)
	if len(pair) != 2 {
		return "", "", fmt.Errorf("publish finish: unexpected reply %v", res[0])
	}
	old, _ := pair[0].(string)
	st, _ := pair[1].(string)
	if st == "revoking" || st == "revoked" {
		rs := make([]revokeTarget, len(es))
		for i, e := range es {
			rs[i] = revokeTarget{st: rt.streams[i], user: rt.users[i], entry: e.String(), pid: rec.p.String(), sender: rec.f["sender"]}
		}
		if err := s.revokeAll(ctx, rec, rs); err != nil {
			return "", "", err
		}
		return old, "revoked", nil
	}
	return old, st, nil
}

// setState runs pubStateScript and returns the old and new state and the
// record. A deliver that did not move the record (another scheduler's
// delivery still within its lease) answers new state "busy".
func (s *Store) setState(ctx context.Context, p pubID, op string, staleBefore int64, by string) (string, string, *pubRecord, error) {
	tag := p.owner.tag()
	res, err := s.evalPipe(ctx, []scriptCall{{sc: pubStateScript, keys: []string{s.k.pub(tag, p.seq())},
		args: []any{op, ms(s.opt.Now()), staleBefore, by}}})
	if err != nil {
		return "", "", nil, err
	}
	v, _ := res[0].([]any)
	if len(v) != 4 {
		return "", "", nil, fmt.Errorf("publish state: unexpected reply %v", res[0])
	}
	old, _ := v[0].(string)
	st, _ := v[1].(string)
	if moved, _ := v[3].(int64); op == "deliver" && st == "sending" && moved == 0 {
		st = "busy"
	}
	return old, st, recordFrom(p, v[2]), nil
}

// revokeAll revokes rs and moves the record from revoking to revoked.
func (s *Store) revokeAll(ctx context.Context, rec *pubRecord, rs []revokeTarget) error {
	if _, err := s.revokeStreams(ctx, rs); err != nil {
		return err
	}
	old, st, _, err := s.setState(ctx, rec.p, "revoked", 0, "")
	if err != nil {
		return err
	}
	if old == "revoking" && st == "revoked" && s.opt.OnNotice != nil {
		s.opt.OnNotice("revoked", 0)
	}
	return nil
}

// Withdraw cancels a scheduled publish or revokes a sent one and returns
// its state then: cancelled or revoked. A publish that does not exist, or
// is not by's while admin is false, is ErrNotFound; a malformed id ErrBadID.
// Withdrawing again answers the same state and writes nothing more.
//
// A revoke removes every entry the record lists from its stream and
// appends a tombstone there (see revokeScript), which ends waiting polls
// and tells every device. Entries not yet listed (a publish still
// writing) are found under the publish's per-stream idempotency key if it
// has one; the publisher revokes the rest itself when it finishes (see
// finish).
func (s *Store) Withdraw(ctx context.Context, by Owner, admin bool, publishID string) (string, error) {
	p, err := parsePubID(publishID)
	if err != nil {
		return "", err
	}
	if p.owner != by && !admin {
		return "", fmt.Errorf("%w: publish %s", ErrNotFound, publishID)
	}
	old, st, rec, err := s.setState(ctx, p, "withdraw", 0, by.tag())
	if err != nil {
		return "", err
	}
	switch st {
	case "":
		return "", fmt.Errorf("%w: publish %s", ErrNotFound, publishID)
	case "cancelled":
		ctx2, cancel := s.bounded(ctx)
		defer cancel()
		if err := s.rdb.ZRem(ctx2, s.k.due(), p.String()).Err(); err != nil {
			return "", wrapRedis("due", err)
		}
		if old == "scheduled" && s.opt.OnNotice != nil {
			s.opt.OnNotice("cancelled", 0)
		}
		return st, nil
	case "revoked":
		return st, nil
	}
	rs, err := s.revokeTargets(ctx, rec)
	if err != nil {
		return "", err
	}
	if err := s.revokeAll(ctx, rec, rs); err != nil {
		return "", err
	}
	return "revoked", nil
}

// revokeTargets lists what revoking rec's publish must reach: per
// stream the entry the recipient hash lists, or else the per-stream
// idempotency key to look it up under.
func (s *Store) revokeTargets(ctx context.Context, rec *pubRecord) ([]revokeTarget, error) {
	t, err := rec.target()
	if err != nil {
		return nil, err
	}
	rt, err := s.resolveTargets(t)
	if err != nil {
		return nil, fmt.Errorf("publish record %s: %w", rec.p, err)
	}
	ctx2, cancel := s.bounded(ctx)
	defer cancel()
	got, err := s.rdb.HGetAll(ctx2, s.k.prcpt(rec.p.owner.tag(), rec.p.seq())).Result()
	if err != nil {
		return nil, wrapRedis("publish recipients", err)
	}
	idem := rec.streamIdem()
	rs := make([]revokeTarget, 0, len(rt.streams))
	for i, st := range rt.streams {
		e := got[rt.rcpt(i)]
		if e == "" && idem == "" {
			continue
		}
		rs = append(rs, revokeTarget{st: st, user: rt.users[i], entry: e, idemKey: idem, pid: rec.p.String(), sender: rec.f["sender"]})
	}
	return rs, nil
}

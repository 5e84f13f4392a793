package inbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scheduled publishes wait in the due queue (zset <p>due: member the
// publish id, score its send_at in ms) beside their record in state
// scheduled. Every instance runs a scheduler (RunScheduler) that claims
// due members with claimScript, which moves their score a lease ahead in
// the same step: while the lease runs no other scheduler can claim them.
// The claimer moves the record to sending (a compare-and-set that a
// cancel can win first), writes the entries under an idempotency key
// derived from the publish id, records them, and removes the member. If
// it dies at any point, the member stays, with its lease; once the lease
// ends another scheduler claims it again and the idempotency keys (kept
// far longer than a lease) make the second run write nothing twice.

// claimScript claims up to n due members: those scored at or before now
// get the score leaseEnd.
//
// KEYS: due; ARGV: now ms, lease end ms, n
// Returns {claimed members, lowest score left (or -1)}.
var claimScript = register(redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nxt = '-1'
if #first > 0 then nxt = first[2] end
return {due, nxt}
`))

// Scheduler pacing: claims per round, deliveries at once, the longest
// sleep between rounds (how late a publish may be while schedulers run)
// and the jitter that keeps instances' rounds apart.
const (
	claimBatch      = 64
	deliverParallel = 4
	schedulerTick   = 500 * time.Millisecond
	schedulerJitter = 50 * time.Millisecond
	// orphanRelease re-leases a claimed member whose record is not there
	// yet (its publish may still be writing it).
	orphanRelease = time.Second
)

// schedule records a publish for delivery at o.SendAt (see PublishWith).
// The due member is added before the record, so that a record in state
// scheduled always has one; a member whose record never came (the
// publish failed in between) is dropped by the scheduler.
func (s *Store) schedule(ctx context.Context, t Target, d Draft, o PublishOptions, rt *targets, now time.Time) (PublishResult, error) {
	rec := s.newPubRecord(o.Owner, d, t, rt, now, o.SendAt, o.IdemKey)
	at := ms(o.SendAt)
	propose := func(p pubID) (bool, error) {
		ctx, cancel := s.bounded(ctx)
		defer cancel()
		n, err := s.rdb.ZAddNX(ctx, s.k.due(), redis.Z{Score: float64(at), Member: p.String()}).Result()
		return n == 1, wrapRedis("due", err)
	}
	unpropose := func(p pubID) error {
		ctx, cancel := s.bounded(ctx)
		defer cancel()
		return wrapRedis("due", s.rdb.ZRem(ctx, s.k.due(), p.String()).Err())
	}
	rec, err := s.begin(ctx, rec, now, o.IdemKey, propose, unpropose)
	if err != nil {
		return PublishResult{}, err
	}
	res := PublishResult{PublishID: rec.p.String(), Count: len(rt.order)}
	if rec.f["state"] == "scheduled" && rec.f["send_at"] != "" {
		// An earlier call's publish (or this one's): make sure it is queued.
		ctx2, cancel := s.bounded(ctx)
		defer cancel()
		err := s.rdb.ZAddNX(ctx2, s.k.due(), redis.Z{Score: float64(rec.num("send_at")), Member: rec.p.String()}).Err()
		if err != nil {
			return PublishResult{}, wrapRedis("due", err)
		}
	}
	return s.scheduledAnswer(ctx, rec, rt, res)
}

// scheduledAnswer answers a publish call from a scheduled publish's
// record: scheduled (or being delivered), sent with the ids it got, or
// cancelled/revoked. It also answers a call that found an earlier
// immediate publish under its idempotency key in a final state.
func (s *Store) scheduledAnswer(ctx context.Context, rec *pubRecord, rt *targets, res PublishResult) (PublishResult, error) {
	res.SendAt = rec.time("send_at")
	res.IDs = []string{}
	switch st := rec.f["state"]; st {
	case "scheduled", "sending":
		res.State = "scheduled"
	case "sent":
		ctx2, cancel := s.bounded(ctx)
		defer cancel()
		got, err := s.rdb.HGetAll(ctx2, s.k.prcpt(rec.p.owner.tag(), rec.p.seq())).Result()
		if err != nil {
			return PublishResult{}, wrapRedis("publish recipients", err)
		}
		res.State = st
		ids := make([]string, len(rt.order))
		for j, i := range rt.order {
			e, err := parseEntryID(got[rt.rcpt(i)])
			if err != nil {
				// Not a recipient of that publish: a retry with other targets.
				return res, nil
			}
			ids[j] = rt.streams[i].publicID(e)
		}
		res.IDs = ids
	case "revoking", "revoked":
		res.State = "revoked"
	case "cancelled":
		res.State = st
	default:
		return PublishResult{}, fmt.Errorf("%w: publish record %s is gone", ErrUnavailable, rec.p)
	}
	return res, nil
}

// RunScheduler delivers scheduled publishes when they are due, until ctx
// ends; it returns nil then. Every instance runs one; a publish is
// delivered once however many run (see claimScript). Errors (Redis down)
// are retried on the next round.
func (s *Store) RunScheduler(ctx context.Context) error {
	for {
		next, err := s.schedulerRound(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := schedulerTick
		if err == nil && next >= 0 {
			if d := time.Duration(next-ms(s.opt.Now())) * time.Millisecond; d < wait {
				wait = max(d, 0)
			}
		}
		wait += time.Duration(rand.Int64N(int64(schedulerJitter)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// schedulerRound claims what is due and delivers it; it returns the
// lowest score left in the queue (-1: empty), which is 0 or less when more
// is due already.
func (s *Store) schedulerRound(ctx context.Context) (int64, error) {
	now := ms(s.opt.Now())
	res, err := s.evalPipe(ctx, []scriptCall{{sc: claimScript, keys: []string{s.k.due()},
		args: []any{now, now + s.opt.ScheduleLease.Milliseconds(), claimBatch}}})
	if err != nil {
		return -1, err
	}
	v, _ := res[0].([]any)
	if len(v) != 2 {
		return -1, fmt.Errorf("claim: unexpected reply %v", res[0])
	}
	claimed, _ := v[0].([]any)
	nextStr, _ := v[1].(string)
	next, _ := strconv.ParseFloat(nextStr, 64)
	var wg sync.WaitGroup
	sem := make(chan struct{}, deliverParallel)
	for _, m := range claimed {
		pid, _ := m.(string)
		if s.testHook != nil && s.testHook("claimed", pid) {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.deliver(ctx, pid) // a failure leaves it queued: retried after the lease
		}()
	}
	wg.Wait()
	if len(claimed) == claimBatch {
		return 0, nil // more may be due
	}
	return int64(next), nil
}

// deliver delivers one claimed publish (see RunScheduler).
func (s *Store) deliver(ctx context.Context, pid string) error {
	unqueue := func() error {
		ctx, cancel := s.bounded(ctx)
		defer cancel()
		return wrapRedis("due", s.rdb.ZRem(ctx, s.k.due(), pid).Err())
	}
	p, err := parsePubID(pid)
	if err != nil {
		return unqueue() // not ours to deliver
	}
	now := s.opt.Now()
	old, st, rec, err := s.setState(ctx, p, "deliver", ms(now.Add(-s.opt.ScheduleLease)), "")
	if err != nil {
		return err
	}
	switch {
	case old == "":
		// No record: its publish may still be writing it; after that, an
		// orphan of a publish that failed.
		if time.Duration(ms(now)-int64(p.at.ms))*time.Millisecond < s.opt.CallTimeout+s.opt.ScheduleLease {
			ctx2, cancel := s.bounded(ctx)
			defer cancel()
			return wrapRedis("due", s.rdb.ZAddXX(ctx2, s.k.due(), redis.Z{Score: float64(ms(now.Add(orphanRelease))), Member: pid}).Err())
		}
		return unqueue()
	case old == "revoking" || old == "revoked":
		// Withdrawn while being delivered: what an earlier, failed
		// delivery wrote is found under the idempotency key.
		rs, err := s.revokeTargets(ctx, rec)
		if err != nil {
			return err
		}
		if err := s.revokeAll(ctx, rec, rs); err != nil {
			return err
		}
		return unqueue()
	case st == "busy":
		// Another scheduler's delivery, still within its lease (which
		// this claim has extended).
		return nil
	case st != "sending":
		return unqueue() // cancelled or sent
	}
	t, err := rec.target()
	if err != nil {
		return err
	}
	d, err := rec.draft()
	if err != nil {
		return err
	}
	rt, err := s.resolveTargets(t)
	if err != nil {
		return err
	}
	rec.expireAt = ms(rec.time("send_at").Add(s.opt.Retention))
	es, err := s.writeStreams(ctx, d, rt, rec.streamIdem(), pid)
	if err != nil {
		return err
	}
	if s.testHook != nil && s.testHook("written", pid) {
		return nil
	}
	old, st, err = s.finishPublish(ctx, rec, rt, es)
	if err != nil {
		return err
	}
	if old == "sending" && st == "sent" && s.opt.OnNotice != nil {
		s.opt.OnNotice("delivered", s.opt.Now().Sub(rec.time("send_at")))
	}
	return unqueue()
}

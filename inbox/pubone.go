package inbox

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// publishOneScript makes a publish to one stream in one call: what
// pubBeginScript, publishScript and pubFinishScript do in turn on the
// plain path (see PublishWith), with the same checks and the same keys
// and entries written, the record written once in its final state.
// Its keys lie in two slots (the owner's and the stream's), so it runs
// on a single Redis node only; a cluster takes the plain path.
//
// Nothing is written when the proposed id is taken or an earlier publish
// holds the client's idempotency key (apart from trimming the owner's
// index, which begin does too): the caller proposes the next id, or takes
// the plain path for the earlier publish.
//
// KEYS: sent index, pidem (or an unused key of the owner's slot), record,
// recipients, then publishScript's keys.
// ARGV: index trim score, member <ms>-<seq>, publish id, useIdem, idem TTL
// (s), record expiry (unix ms), created ms, recipient field, n, then
// publishScript's n arguments, then the record's fields and values.
// Returns {"sent", entry id}, {"earlier", publish id} or {"taken", ""}.
var publishOneScript = register(redis.NewScript(luaIDHelpers + luaUnreadHelpers +
	"local function publish(KEYS, ARGV)\n" + publishBody + "end\n" + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if ARGV[4] == '1' then
  local p = redis.call('GET', KEYS[2])
  if p then return {'earlier', p} end
end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('EXISTS', KEYS[3]) == 1 then
  return {'taken', ''}
end
local n = tonumber(ARGV[9])
local r = publish({unpack(KEYS, 5)}, {unpack(ARGV, 10, 9 + n)})
redis.call('HSET', KEYS[3], unpack(ARGV, 10 + n))
redis.call('PEXPIREAT', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[7], ARGV[2])
if ARGV[4] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[5]) end
redis.call('HSET', KEYS[4], ARGV[8], r[1])
redis.call('PEXPIREAT', KEYS[4], ARGV[6])
return {'sent', r[1]}
`))

// oneCall tells whether a publish to rt may take publishOne: one stream,
// a single Redis node, and no test stopping a publish half-way.
func (s *Store) oneCall(rt *targets) bool {
	return s.single && len(rt.streams) == 1 && s.testHook == nil
}

// publishOne publishes rec (made now, to rt's one stream) in one script
// call, as begin, writeStreams and finishPublish would in three. ok is
// false, with nothing written, when an earlier publish holds the client's
// idempotency key: the caller then takes the plain path, which answers
// with that publish.
func (s *Store) publishOne(ctx context.Context, d Draft, rt *targets, rec *pubRecord, now time.Time, idemKey string) (res PublishResult, ok bool, err error) {
	o := rec.p.owner
	tag := o.tag()
	pk, useIdem := s.k.pidem(tag, "-"), "0"
	if idemKey != "" {
		pk, useIdem = s.k.pidem(tag, idemKey), "1"
	}
	// The record as finishPublish leaves it.
	f := maps.Clone(rec.f)
	f["state"], f["state_at"] = "sent", strconv.FormatInt(ms(s.opt.Now()), 10)
	fv := make([]any, 0, 2*len(f))
	for k, v := range f {
		fv = append(fv, k, v)
	}
	trim := ms(now.Add(-2 * s.opt.Retention))
	idem := rec.streamIdem()
	at := uint64(ms(now))
	for seq := s.pubSeq.take(tag, at, 0); seq < maxPubSeq; seq = s.pubSeq.take(tag, at, seq+1) {
		p := pubID{owner: o, at: entryID{ms: at, seq: seq}}
		call := s.streamCalls(d, rt, idem, p.String())[0]
		args := make([]any, 0, 9+len(call.args)+len(fv))
		args = append(args, trim, p.seq(), p.String(), useIdem, int64(s.opt.IdempotentFor.Seconds()), rec.expireAt,
			rec.f["created"], rt.rcpt(0), len(call.args))
		args = append(args, call.args...)
		args = append(args, fv...)
		keys := append([]string{s.k.sent(tag), pk, s.k.pub(tag, p.seq()), s.k.prcpt(tag, p.seq())}, call.keys...)
		out, err := s.evalPipe(ctx, []scriptCall{{sc: publishOneScript, keys: keys, args: args}})
		s.view.touch(rt.streams[0].key)
		if err != nil {
			return PublishResult{}, false, err
		}
		pair, _ := out[0].([]any)
		if len(pair) != 2 {
			return PublishResult{}, false, fmt.Errorf("publish: unexpected reply %v", out[0])
		}
		switch what, _ := pair[0].(string); what {
		case "taken":
			continue
		case "earlier":
			s.pubSeq.give(tag, at, seq)
			return PublishResult{}, false, nil
		case "sent":
			idStr, _ := pair[1].(string)
			e, err := parseEntryID(idStr)
			if err != nil {
				return PublishResult{}, false, fmt.Errorf("publish: %w", err)
			}
			return PublishResult{PublishID: p.String(), IDs: rt.publicIDs([]entryID{e}), Count: len(rt.order), State: "sent"}, true, nil
		default:
			return PublishResult{}, false, fmt.Errorf("publish: unexpected reply %v", out[0])
		}
	}
	return PublishResult{}, false, fmt.Errorf("%w: no free publish id", ErrUnavailable)
}

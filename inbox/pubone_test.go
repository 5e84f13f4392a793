package inbox

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pollbox/internal/redistest"
)

// TestPublishOneAsPlain: a publish to one stream made in one script call
// (publishOne) leaves Redis exactly as the plain path's three calls do —
// every key, field, member, score and expiry, entry ids aside, which
// Redis's clock picks — and answers the same, for users, a group,
// broadcast, a repeated recipient, expiring messages with data, and a
// retry under an idempotency key.
func TestPublishOneAsPlain(t *testing.T) {
	opt, err := redis.ParseURL(redistest.URL(t))
	must(t, err, "parse url")
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	at := time.Now()
	clock := Options{Now: func() time.Time { return at }}
	one := newStore(t, rdb, clock)
	plain := newStore(t, rdb, clock, func(s *Store) { s.single = false })
	if !one.oneCall(&targets{streams: make([]stream, 1)}) || plain.oneCall(&targets{streams: make([]stream, 1)}) {
		t.Fatal("the stores do not take the paths this test compares")
	}
	type step struct {
		tgt Target
		d   Draft
		o   PublishOptions
	}
	owner := PublishOptions{Owner: Owner{Kind: 'k', Name: "job"}}
	idem := owner
	idem.IdemKey = "order-1"
	steps := []step{
		{Target{Users: []string{"bob"}}, Draft{Title: "a", Type: "like"}, owner},
		{Target{Users: []string{"bob"}}, Draft{Body: "b", Link: "/x", Level: "warning", Data: []byte(`{"n":1}`), ExpiresIn: time.Hour}, owner},
		{Target{Users: []string{"carol"}}, Draft{Title: "c", Type: "reply"}, idem},
		{Target{Users: []string{"carol"}}, Draft{Title: "c", Type: "reply"}, idem}, // a retry
		{Target{Users: []string{"bob", "bob"}}, Draft{Title: "twice"}, PublishOptions{}},
		{Target{Groups: []string{"ops"}}, Draft{Title: "g"}, owner},
		{Target{Broadcast: true}, Draft{Title: "all", ExpiresIn: time.Minute}, owner},
		{Target{Users: []string{"bob", "carol"}}, Draft{Title: "two"}, owner}, // plain on both
	}
	answers := map[*Store][]string{}
	for _, s := range []*Store{one, plain} {
		before := s.scripts.Load()
		for _, st := range steps {
			r := publishWith(t, s, st.tgt, st.d, st.o)
			answers[s] = append(answers[s], fmt.Sprintf("%s %s %d %d", r.PublishID, r.State, r.Count, len(r.IDs)))
		}
		t.Logf("%d script calls", s.scripts.Load()-before)
	}
	if a, b := strings.Join(answers[one], "\n"), strings.Join(answers[plain], "\n"); a != b {
		t.Fatalf("answers differ:\none call:\n%s\nplain:\n%s", a, b)
	}
	if a, b := dumpKeys(t, rdb, one.opt.Prefix), dumpKeys(t, rdb, plain.opt.Prefix); a != b {
		t.Fatalf("Redis differs:\none call:\n%s\nplain:\n%s", a, b)
	}
	// Both stores' readers see the same messages (in the same order
	// within each stream: across streams it follows Redis's clock).
	for _, u := range []string{"bob", "carol"} {
		r := Reader{User: u, Groups: []string{"ops"}}
		h1, h2 := history(t, one, r, HistoryQuery{Limit: 50}), history(t, plain, r, HistoryQuery{Limit: 50})
		if a, b := describe(h1), describe(h2); a != b {
			t.Fatalf("%s: history differs:\none call:\n%s\nplain:\n%s", u, a, b)
		}
	}
}

// describe lists a history's messages by stream, entry ids left out, and
// its unread count.
func describe(h HistoryResult) string {
	var lines []string
	for i, m := range h.Messages {
		lines = append(lines, fmt.Sprintf("%s %03d %s|%s|%s|%s|%s|%s|%v|%v", m.Source, len(h.Messages)-i, m.Type, m.Title,
			m.Body, m.Link, m.Level, m.Sender, string(m.Data), m.Expires))
	}
	sort.Strings(lines)
	// Renumber within each stream: the numbers above only keep the order.
	n := map[string]int{}
	for i, l := range lines {
		src, rest, _ := strings.Cut(l, " ")
		_, rest, _ = strings.Cut(rest, " ")
		n[src]++
		lines[i] = fmt.Sprintf("%s %d %s", src, n[src], rest)
	}
	return fmt.Sprintf("unread %d\n%s", h.Unread, strings.Join(lines, "\n"))
}

var (
	entryIDRe = regexp.MustCompile(`\b\d{13}-\d+\b`)
	userTagRe = regexp.MustCompile(`^(?:unread|expiring|utype|idem|trim):\{([^}]*)\}`)
)

// dumpKeys describes every key under prefix (without it): type, content
// and expiry. An entry id becomes #n, its place in its stream (found from
// the key, or for a recipient hash from the field, that refers to it), and
// an unread score (the entry's millisecond) "ms"; publish ids and record
// times come from the store's clock and stay.
func dumpKeys(t *testing.T, rdb *redis.Client, prefix string) string {
	t.Helper()
	ctx := testCtx(t)
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	must(t, err, "keys")
	sort.Strings(keys)
	places := map[string]map[string]string{} // stream (without prefix) → entry id → #n
	for _, k := range keys {
		if rdb.Type(ctx, k).Val() != "stream" {
			continue
		}
		xs, err := rdb.XRange(ctx, k, "-", "+").Result()
		must(t, err, "xrange")
		m := map[string]string{}
		for i, x := range xs {
			m[x.ID] = fmt.Sprintf("#%d", i+1)
		}
		places[strings.TrimPrefix(k, prefix)] = m
	}
	// streamOf names the stream that ids in key (or in its field f) are of.
	streamOf := func(key, f string) string {
		if strings.HasPrefix(key, "prcpt:") {
			switch {
			case f == "b":
				return "broadcast"
			case strings.HasPrefix(f, "g."):
				return "group:{" + f[2:] + "}"
			}
			return "inbox:{" + f + "}"
		}
		if m := userTagRe.FindStringSubmatch(key); m != nil {
			return "inbox:{" + m[1] + "}"
		}
		return key
	}
	norm := func(stream, s string) string {
		return entryIDRe.ReplaceAllStringFunc(s, func(id string) string {
			if n, ok := places[stream][id]; ok {
				return n
			}
			return id
		})
	}
	var b strings.Builder
	for _, k := range keys {
		key := strings.TrimPrefix(k, prefix)
		typ := rdb.Type(ctx, k).Val()
		fmt.Fprintf(&b, "%s %s", key, typ)
		switch typ {
		case "string":
			fmt.Fprintf(&b, " %s", norm(streamOf(key, ""), rdb.Get(ctx, k).Val()))
		case "hash":
			var fs []string
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				st := streamOf(key, f)
				fs = append(fs, norm(st, f)+"="+norm(st, v))
			}
			sort.Strings(fs)
			fmt.Fprintf(&b, " %v", fs)
		case "zset":
			st := streamOf(key, "")
			for _, z := range rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
				m := z.Member.(string)
				score := fmt.Sprint(int64(z.Score))
				if e, err := parseEntryID(m); err == nil && float64(e.ms) == z.Score && places[st][m] != "" {
					score = "ms"
				}
				fmt.Fprintf(&b, " %s:%s", norm(st, m), score)
			}
		case "stream":
			for _, x := range rdb.XRange(ctx, k, "-", "+").Val() {
				var fs []string
				for f, v := range x.Values {
					fs = append(fs, f+"="+fmt.Sprint(v))
				}
				sort.Strings(fs)
				fmt.Fprintf(&b, " %s%v", places[key][x.ID], fs)
			}
		}
		// Expiries set from the store's clock are compared exactly; those
		// set relative to Redis's (EX) only for being there.
		if strings.Contains(key, "idem:") {
			fmt.Fprintf(&b, " ttl>0:%v", rdb.TTL(ctx, k).Val() > 0)
		} else {
			fmt.Fprintf(&b, " expires:%d", rdb.PExpireTime(ctx, k).Val().Milliseconds())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

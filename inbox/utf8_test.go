package inbox

import (
	"testing"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// TestEntriesWithInvalidUTF8 checks that an entry holding invalid UTF-8
// (written by other means than Publish, which refuses it) is served as
// valid UTF-8, by polls and by history.
func TestEntriesWithInvalidUTF8(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "bytes"}
		c0 := tail(t, s, r)
		if err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.k.inbox(r.User),
			Values: []string{"type", "t", "title", "bad \xff title", "data", "{\"k\":\"\xff\"}"}}).Err(); err != nil {
			t.Fatal(err)
		}
		res := poll(t, s, r, PollOptions{Cursor: c0})
		hist := history(t, s, r, HistoryQuery{})
		for what, ms := range map[string][]Message{"poll": res.Messages, "history": hist.Messages} {
			if len(ms) != 1 {
				t.Fatalf("%s: %d messages, want 1", what, len(ms))
			}
			if !utf8.Valid(ms[0].Data) {
				t.Errorf("%s: data %q is not valid UTF-8", what, ms[0].Data)
			}
			if len(ms[0].Data) == 0 {
				t.Errorf("%s: data dropped, want it kept with the bad bytes replaced", what)
			}
		}
	})
}

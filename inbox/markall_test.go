package inbox

import (
	"testing"
	"time"
)

// TestMarkAllSparesLaterMessages marks everything read while messages
// arrive between the moment MarkRead reads the streams' tails and the
// moment it writes: those messages, which nobody can have seen, stay
// unread, and one that another device marked read in that window stays
// read.
func TestMarkAllSparesLaterMessages(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := newStore(t, b.rdb, Options{})
		r := Reader{User: "42", Groups: []string{"ops"}}
		seen := []string{
			toUser(t, s, "42", "seen"),
			publish(t, s, Target{Users: []string{"42"}}, Draft{Title: "seen, expiring", ExpiresIn: time.Hour}, "")[0],
			toAll(t, s, "seen"),
			toGroup(t, s, "ops", "seen"),
		}
		var later []string
		var readElsewhere string
		beforeMarkAll.Store(s, func() {
			later = []string{
				toUser(t, s, "42", "later"),
				publish(t, s, Target{Users: []string{"42"}}, Draft{Title: "later, expiring", ExpiresIn: time.Hour}, "")[0],
				toAll(t, s, "later"),
				toGroup(t, s, "ops", "later"),
			}
			readElsewhere = toAll(t, s, "later, read on another device")
			_, err := s.MarkRead(ctx, r, []string{readElsewhere}, false)
			must(t, err, "MarkRead %s", readElsewhere)
		})
		t.Cleanup(func() { beforeMarkAll.Delete(s) })

		n, err := s.MarkRead(ctx, r, nil, true)
		must(t, err, "MarkRead all")
		if n != len(later) {
			t.Errorf("MarkRead all returned %d unread, want %d (the messages published meanwhile)", n, len(later))
		}
		flags := readFlags(t, s, r)
		for _, id := range seen {
			if !flags[id] {
				t.Errorf("%s, there before the call, is unread", id)
			}
		}
		for _, id := range later {
			if flags[id] {
				t.Errorf("%s, published during the call, was marked read", id)
			}
		}
		if !flags[readElsewhere] {
			t.Errorf("%s, read on another device during the call, is unread again", readElsewhere)
		}
		if _, err := b.rdb.ZScore(ctx, s.k.expiring("42"), entryOf(t, later[1])).Result(); err != nil {
			t.Errorf("%s, published during the call, left the expiring set: %v", later[1], err)
		}
		wantUnread(t, s, r, len(later), "after mark all")
		if len(history(t, s, r, HistoryQuery{Unread: true}).Messages) != len(later) {
			t.Errorf("history lists other unread messages than those published during the call")
		}
	})
}

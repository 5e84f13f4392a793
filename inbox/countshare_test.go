package inbox

import (
	"context"
	"maps"
	"reflect"
	"testing"
	"time"
)

// TestUnreadCountsShared: a waiting poll's counts equal the plain
// count's; they share the read state's per-type map (no copy per answer)
// while no shared stream adds to it, and adding a shared stream's types
// never changes the state's map.
func TestUnreadCountsShared(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := newStore(t, b.rdb, Options{})
		ctx := testCtx(t)
		r := Reader{User: "bob", Groups: []string{"ops"}}
		streams, err := s.streamsOf(r)
		must(t, err, "streams")
		check := func(what string, same bool) {
			t.Helper()
			st, err := s.loadState(ctx, "bob")
			must(t, err, "state")
			before := maps.Clone(st.unreadByType)
			shared, err := s.unreadCounts(ctx, streams, st, true)
			must(t, err, "counts (waiting poll)")
			plain, err := s.unreadCounts(ctx, streams, st, false)
			must(t, err, "counts")
			if shared.Total != plain.Total || !maps.Equal(shared.ByType, plain.ByType) {
				t.Fatalf("%s: waiting poll's counts %d %v, plain %d %v", what, shared.Total, shared.ByType, plain.Total, plain.ByType)
			}
			if sameMap(shared.ByType, st.unreadByType) != same {
				t.Fatalf("%s: the answer shares the state's map: %v, want %v", what, !same, same)
			}
			if !maps.Equal(st.unreadByType, before) {
				t.Fatalf("%s: the state's counts changed from %v to %v", what, before, st.unreadByType)
			}
		}
		check("nothing", true)
		publish(t, s, Target{Users: []string{"bob"}}, Draft{Title: "a", Type: "like"}, "")
		publish(t, s, Target{Users: []string{"bob"}}, Draft{Title: "b", Type: "reply"}, "")
		check("inbox only", true)
		publish(t, s, Target{Broadcast: true}, Draft{Title: "c", Type: "like"}, "")
		publish(t, s, Target{Groups: []string{"ops"}}, Draft{Title: "d", Type: "news"}, "")
		check("inbox, broadcast and group", false)
	})
}

// sameMap tells whether a and b are the same map.
func sameMap(a, b map[string]int) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// BenchmarkUnreadCounts counts for an answer to a waiting poll whose
// read state the view holds (inbox messages of two types, nothing unread
// in broadcast), as most poll answers do.
func BenchmarkUnreadCounts(b *testing.B) {
	st := &userState{unreadInbox: 3, unreadByType: map[string]int{"like": 2, "reply": 1}}
	s := New(nil, Options{})
	defer s.Close()
	streams := streamsFor(s.opt.Prefix, "bob", nil)
	// The broadcast count as the view holds it once a poll has counted it.
	s.view.live = func(string) bool { return true }
	c := s.countCallFor(streams[1], st, s.opt.Now())
	s.view.putCount(c.key, countFact{byType: map[string]int{}, learnt: time.Now()}, s.view.streamVersion(streams[1].key))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if c, err := s.unreadCounts(ctx, streams, st, true); err != nil || c.Total != 3 {
			b.Fatal(c, err)
		}
	}
}

package inbox

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// pubSeqs returns the sequence numbers of publish ids, sorted.
func pubSeqsOf(t *testing.T, ids []string) []uint64 {
	t.Helper()
	out := make([]uint64, 0, len(ids))
	for _, id := range ids {
		p, err := parsePubID(id)
		if err != nil {
			t.Fatalf("publish id %q: %v", id, err)
		}
		out = append(out, p.at.seq)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestPublishIDsOneCallEach: publishes of one owner in one millisecond
// take the ids the plain search from 0 takes (0, 1, 2, …), but each
// costs one begin call, not one per id already taken. A second instance,
// which has not seen those ids, still finds free ones after them.
func TestPublishIDsOneCallEach(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		at := time.Now()
		opt := Options{Now: func() time.Time { return at }}
		s := newStore(t, b.rdb, opt)
		const n = 20
		var ids []string
		before := s.scripts.Load()
		for i := range n {
			ids = append(ids, publishWith(t, s, Target{Users: []string{"bob"}}, Draft{Title: fmt.Sprint(i)}, PublishOptions{}).PublishID)
		}
		// begin, write and finish: three calls per publish, or one (see publishOne).
		want := int64(3 * n)
		if s.single {
			want = n
		}
		if calls := s.scripts.Load() - before; calls != want {
			t.Fatalf("%d publishes in one millisecond made %d script calls, want %d", n, calls, want)
		}
		opt.Prefix = s.opt.Prefix
		s2 := newStore(t, b.rdb, opt)
		for i := range n {
			ids = append(ids, publishWith(t, s2, Target{Users: []string{"bob"}}, Draft{Title: fmt.Sprint(i)}, PublishOptions{}).PublishID)
		}
		for i, seq := range pubSeqsOf(t, ids) {
			if seq != uint64(i) {
				t.Fatalf("sequence numbers %v, want 0 to %d", pubSeqsOf(t, ids), 2*n-1)
			}
		}
	})
}

// TestPubSeqsInterleaved: publishes of one owner whose clock readings
// interleave (concurrent callers read the clock at slightly different
// moments) each get the next free number of their own millisecond, not
// one already handed out because another millisecond came between.
func TestPubSeqsInterleaved(t *testing.T) {
	var h pubSeqs
	for i := range uint64(5) {
		for _, ms := range []uint64{1000, 1001, 999} {
			if got := h.take("k.job", ms, 0); got != i {
				t.Fatalf("round %d, millisecond %d: sequence %d, want %d", i, ms, got, i)
			}
		}
		if got := h.take("u.other", 1000, 0); got != i {
			t.Fatalf("round %d, another owner: sequence %d, want %d", i, got, i)
		}
	}
	h.give("k.job", 1000, 4)
	if got := h.take("k.job", 1000, 0); got != 4 {
		t.Fatalf("after giving back 4: %d", got)
	}
	// Past the bound, old milliseconds go.
	for ms := range uint64(maxPubSeqHints) {
		h.take("k.job", 2000+ms, 0)
	}
	if len(h.next) >= maxPubSeqHints {
		t.Fatalf("%d hints kept", len(h.next))
	}
}

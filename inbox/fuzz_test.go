package inbox

import (
	"encoding/base64"
	"errors"
	"maps"
	"strings"
	"testing"
)

// fuzzReader is the reader every fuzzed cursor is decoded for.
var fuzzReader = Reader{User: "42", Groups: []string{"user:list", "ops", "a.b", "dept:edit"}}

func fuzzStreams(tb testing.TB) []stream {
	gs, err := fuzzReader.normalize()
	if err != nil {
		tb.Fatal(err)
	}
	return streamsFor("", fuzzReader.User, gs)
}

func FuzzDecodeCursor(f *testing.F) {
	streams := fuzzStreams(f)
	all := func(p positions) positions {
		for _, s := range streams {
			if _, ok := p[s.name]; !ok {
				p[s.name] = entryID{}
			}
		}
		return p
	}
	const now, year = 1764092400123, 365 * 24 * 3600 * 1000
	for _, p := range []positions{
		all(positions{}),
		all(positions{"u": {now, 0}, "b": {now - 100000, 3}, "g.ops": {now, 1}}),
		all(positions{"u": {5, 0}, "g.user:list": {1<<64 - 1, 1<<64 - 1}}),
		// Trim marks years behind, and sequences of every form.
		all(positions{"u": {now, 0}, "b": {now - 3*year, 1<<64 - 1}, "g.ops": {now - 7*year, 1<<64 - 1},
			"g.a.b": {now - 1, 18}, "g.dept:edit": {now - 2, 19}, "g.user:list": {0, 1<<64 - 2}}),
		all(positions{"u": {0, 1}, "b": {1<<64 - 1, 1<<16 - 1}, "g.ops": {1 << 40, 1 << 24}}),
	} {
		f.Add(encodeCursor(streams, p))
		f.Add(encodeCursorV1(streams, p))
	}
	f.Add(encodeCursor(streams[:3], positions{"u": {7, 7}, "b": {}, streams[2].name: {6, 0}}))
	f.Add(encodeCursorV1(streams[:3], positions{"u": {7, 7}, "b": {}, streams[2].name: {6, 0}}))
	f.Add("")
	f.Add("AQ")
	f.Add("AQAAAAA")
	f.Add("AgAAAAA")
	f.Add("AgAKAAA")
	f.Add(strings.Repeat("A", MaxCursorLen+1))
	f.Fuzz(func(t *testing.T, c string) {
		err := DecodeCursorCheck(c, fuzzReader)
		pos, err2 := decodeCursor(c, streams)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("DecodeCursorCheck: %v, decodeCursor: %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		// What the cursor covers, in the reader's order, spelled the way
		// the store spells it, must be the cursor itself.
		var covered []stream
		for _, s := range streams {
			if _, ok := pos[s.name]; ok {
				covered = append(covered, s)
			}
		}
		if len(covered) != len(pos) || covered[0].name != "u" || covered[1].name != "b" {
			t.Fatalf("decoded positions %v do not match the reader's streams", pos)
		}
		// Version 1 cursors are spelled the way pollbox once spelled them,
		// and move to the current version with the same positions.
		again := encodeCursor(covered, pos)
		if raw, _ := base64.RawURLEncoding.DecodeString(c); raw[0] == cursorV1 {
			if old := encodeCursorV1(covered, pos); old != c {
				t.Fatalf("accepted version 1 cursor %q, which re-encodes as %q (positions %v)", c, old, pos)
			}
			if now, err := decodeCursor(again, streams); err != nil || !maps.Equal(now, pos) {
				t.Fatalf("version 1 cursor %q rewritten as %q: %v, %v; want %v", c, again, now, err, pos)
			}
			return
		}
		if again != c {
			t.Fatalf("accepted %q, which re-encodes as %q (positions %v)", c, again, pos)
		}
	})
}

func FuzzParseMessageID(f *testing.F) {
	for _, id := range []string{
		"u.1-0", "b.1764092400123-17", "g.user:list.1764092400123-0", "g.a.b.c.1-2",
		"g.x-1.2-3", "u.18446744073709551615-18446744073709551615", "u.01-0", "g..1-0",
		"g.ops.1-0.", "u.1-0-0", "", ".", "g.",
	} {
		f.Add(id)
	}
	k := keys{"p:"}
	f.Fuzz(func(t *testing.T, id string) {
		err := ParseMessageID(id)
		m, err2 := parseMsgRef(id)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("ParseMessageID: %v, parseMsgRef: %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrBadID) {
				t.Fatalf("error %v is not ErrBadID", err)
			}
			return
		}
		var st stream
		switch m.kind {
		case 'u':
			st = k.userStream("x")
		case 'b':
			st = k.broadcastStream()
		case 'g':
			if !ValidGroup(m.group) {
				t.Fatalf("%q names invalid group %q", id, m.group)
			}
			st = k.groupStream(m.group)
		default:
			t.Fatalf("%q parsed to kind %q", id, m.kind)
		}
		if st.name != m.streamName() {
			t.Fatalf("%q: stream %q, ref names %q", id, st.name, m.streamName())
		}
		if again := st.publicID(m.entry); again != id {
			t.Fatalf("accepted %q, which re-renders as %q", id, again)
		}
	})
}

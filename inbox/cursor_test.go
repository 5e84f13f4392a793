package inbox

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
)

// authorities returns n distinct group names shaped like smpe-admin
// authorities ("user:list", "dept:edit", …).
func authorities(n int) []string {
	resources := []string{"user", "roles", "menu", "dept", "job", "dict", "storage", "pictures",
		"timing", "log", "monitor", "server", "gen", "email", "app", "deploy"}
	actions := []string{"list", "add", "edit", "del", "export", "import", "view", "audit"}
	var out []string
	for i := 0; len(out) < n; i++ {
		name := resources[i/len(actions)%len(resources)] + ":" + actions[i%len(actions)]
		if i >= len(resources)*len(actions) {
			name += fmt.Sprint(i)
		}
		out = append(out, name)
	}
	return out
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	const now = 1764092400123 // 2025-11-25, ms
	const day = 24 * 3600 * 1000
	for _, tc := range []struct {
		name   string
		groups []string
		pos    func(streams []stream) positions
	}{
		{"no groups, empty streams", nil, func([]stream) positions { return positions{"u": {}, "b": {}} }},
		{"no groups", nil, func([]stream) positions {
			return positions{"u": {now, 0}, "b": {now - 3*day, 7}}
		}},
		{"one group", []string{"user:list"}, func([]stream) positions {
			return positions{"u": {now - 5, 1}, "b": {}, "g.user:list": {now, 0}}
		}},
		{"seq only", []string{"ops"}, func([]stream) positions {
			return positions{"u": {0, 5}, "b": {0, 1}, "g.ops": {}}
		}},
		{"extremes", []string{"ops"}, func([]stream) positions {
			return positions{"u": {1<<64 - 1, 1<<64 - 1}, "b": {1, 0}, "g.ops": {}}
		}},
		{"MaxGroups silent groups", authorities(MaxGroups), func(ss []stream) positions {
			p := positions{"u": {now, 3}, "b": {now - 20*day, 0}}
			for _, s := range ss[2:] {
				p[s.name] = entryID{}
			}
			return p
		}},
		{"MaxGroups groups, all with messages this month", authorities(MaxGroups), func(ss []stream) positions {
			// The worst case within retention: every position far from the
			// newest one, with multi-byte sequence numbers.
			p := positions{"u": {now, 3}, "b": {now - 29*day, 300}}
			for i, s := range ss[2:] {
				p[s.name] = entryID{now - 29*day + uint64(i), 16000}
			}
			return p
		}},
		{"MaxGroups trim marks, years behind", authorities(MaxGroups), func(ss []stream) positions {
			p := positions{"u": {now, 0}, "b": {now - 5*365*day, 1<<64 - 1}}
			for i, s := range ss[2:] {
				p[s.name] = entryID{now - 5*365*day - uint64(i), 1<<64 - 1}
			}
			return p
		}},
		{"every sequence form", authorities(30), func(ss []stream) positions {
			p := positions{"u": {now, 18}, "b": {now - 1, 19}}
			seqs := []uint64{0, 1, 17, 18, 19, 20, 255, 256, 1<<16 - 1, 1 << 16, 1<<24 - 1, 1 << 24,
				1<<32 - 1, 1 << 40, 1<<56 - 1, 1 << 56, 1<<64 - 2, 1<<64 - 1}
			for i, s := range ss[2:] {
				p[s.name] = entryID{now - uint64(1)<<(i%41) + 1, seqs[i%len(seqs)]}
			}
			return p
		}},
		{"position at ms 0", []string{"ops"}, func([]stream) positions {
			return positions{"u": {0, 1}, "b": {1<<64 - 1, 0}, "g.ops": {0, 1<<64 - 1}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := Reader{User: "42", Groups: tc.groups}
			gs, err := r.normalize()
			if err != nil {
				t.Fatal(err)
			}
			streams := streamsFor("p:", r.User, gs)
			pos := tc.pos(streams)
			c := encodeCursor(streams, pos)
			if len(c) > MaxCursorLen {
				t.Fatalf("cursor is %d characters, limit %d", len(c), MaxCursorLen)
			}
			if strings.Trim(c, b64Alphabet) != "" {
				t.Fatalf("cursor %q is not URL-safe", c)
			}
			got, err := decodeCursor(c, streams)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !maps.Equal(got, pos) {
				t.Fatalf("round trip:\n got  %v\n want %v", got, pos)
			}
			if err := DecodeCursorCheck(c, r); err != nil {
				t.Fatalf("DecodeCursorCheck: %v", err)
			}
			// Clients may still hold version 1 cursors.
			if c1 := encodeCursorV1(streams, pos); len(c1) <= MaxCursorLen && v1Fits(streams, pos) {
				if got, err := decodeCursor(c1, streams); err != nil || !maps.Equal(got, pos) {
					t.Fatalf("version 1 cursor: %v\n got  %v\n want %v", err, got, pos)
				}
			}
		})
	}
}

// v1Fits tells whether version 1 can spell the positions: it cannot spell
// a position at ms 0 when another is at ms 2^64−1.
func v1Fits(streams []stream, pos positions) bool {
	var base uint64
	for _, s := range streams {
		base = max(base, pos[s.name].ms)
	}
	for _, p := range pos {
		if !p.isZero() && base-p.ms+1 == 0 {
			return false
		}
	}
	return true
}

// encodeCursorV1 writes a version 1 cursor, as pollbox once did.
func encodeCursorV1(streams []stream, pos positions) string {
	var base uint64
	for _, s := range streams {
		if p := pos[s.name]; p.ms > base {
			base = p.ms
		}
	}
	buf := []byte{cursorV1}
	buf = binary.AppendUvarint(buf, base)
	putPos := func(p entryID) {
		if p.isZero() {
			buf = binary.AppendUvarint(buf, 0)
			return
		}
		buf = binary.AppendUvarint(buf, base-p.ms+1)
		buf = binary.AppendUvarint(buf, p.seq)
	}
	putPos(pos["u"])
	putPos(pos["b"])
	var groups []stream
	for _, s := range streams {
		if s.kind == 'g' {
			groups = append(groups, s)
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(groups)))
	for _, g := range groups {
		buf = binary.BigEndian.AppendUint32(buf, groupHash(g.group))
		putPos(pos[g.name])
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

// TestCursorWorstCase builds the longest cursors the store can hand out:
// MaxGroups groups and every position as long as its form allows within
// the bound the cursor layout states (newest position before 2109,
// sequences below 2^16 — 2^24 when less than 34 years behind — or a trim
// mark's 2^64−1, positions as far behind the newest as possible).
func TestCursorWorstCase(t *testing.T) {
	t.Parallel()
	const newest = 1<<42 - 1
	r := Reader{User: strings.Repeat("u", MaxNameLen), Groups: authorities(MaxGroups)}
	gs, err := r.normalize()
	if err != nil {
		t.Fatal(err)
	}
	streams := streamsFor("p:", r.User, gs)
	longest := 0
	for _, tc := range []struct {
		name   string
		behind uint64 // ms below the newest position
		seq    uint64
	}{
		{"trim marks at ms 1", newest - 1, 1<<64 - 1},
		{"trim marks 2^40 ms behind", 1 << 40, 1<<64 - 1},
		{"16-bit sequences at ms 1", newest - 1, 1<<16 - 1},
		{"24-bit sequences 2^40-1 ms behind", 1<<40 - 1, 1<<24 - 1},
		{"recent", 1, 1<<64 - 1},
	} {
		// One stream at the newest position sets the base; every other is
		// as far behind as the case allows.
		pos := positions{"u": {newest, tc.seq}}
		for _, s := range streams[1:] {
			pos[s.name] = entryID{newest - tc.behind, tc.seq}
		}
		c := encodeCursor(streams, pos)
		longest = max(longest, len(c))
		if len(c) > MaxCursorLen {
			t.Errorf("%s: cursor is %d characters, limit %d", tc.name, len(c), MaxCursorLen)
			continue
		}
		got, err := decodeCursor(c, streams)
		if err != nil || !maps.Equal(got, pos) {
			t.Errorf("%s: round trip: %v", tc.name, err)
		}
	}
	if longest != 972 {
		t.Errorf("the longest cursor is %d characters; the cursor layout's comment says 972", longest)
	}
}

// tag and groupSet are cursorBytes parts: a group's tag, and the set hash
// of a list of group names (version 2).
type (
	tag      string
	groupSet []string
)

// hdr is a version 2 position header: d in dLen bytes, sequence form f.
func hdr(dLen, f int) []byte { return []byte{byte(1 + dLen + dLens*f)} }

// cursorBytes builds a raw cursor from parts: []byte values are copied,
// uint64 values are written as uvarints, strings as group hashes (version
// 1), tags and group sets as version 2 writes them.
func cursorBytes(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case []byte:
			b = append(b, v...)
		case int:
			b = binary.AppendUvarint(b, uint64(v))
		case uint64:
			b = binary.AppendUvarint(b, v)
		case tag:
			b = binary.BigEndian.AppendUint16(b, groupTag(string(v)))
		case groupSet:
			h := uint32(fnvOffset)
			for _, g := range v {
				h = addSetHash(h, g)
			}
			b = binary.BigEndian.AppendUint32(b, h)
		case string:
			b = binary.BigEndian.AppendUint32(b, groupHash(v))
		default:
			panic(fmt.Sprintf("cursorBytes: %T", p))
		}
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// TestCursorStrict checks that a version 2 cursor is accepted only as
// encodeCursor spells it.
func TestCursorStrict(t *testing.T) {
	t.Parallel()
	r := Reader{User: "u", Groups: []string{"user:list", "ops"}} // sorted: ops, user:list
	v := []byte{cursorVersion}
	both := groupSet{"ops", "user:list"}
	// base 1000; u at 1000-0; b at 0-0; ops at 0-0; user:list at 999-300.
	valid := cursorBytes(v, 1000, hdr(0, 1), 0, 2, both, tag("ops"), 0, tag("user:list"), hdr(1, 21), []byte{1, 1, 44})
	if got, err := decodeCursor(b64(valid), streamsFor("", r.User, []string{"ops", "user:list"})); err != nil ||
		got["g.user:list"] != (entryID{999, 300}) || got["u"] != (entryID{1000, 0}) {
		t.Fatalf("valid cursor: %v, %v", got, err)
	}
	ones := bytes.Repeat([]byte{0xff}, 8)
	for _, tc := range []struct {
		name   string
		cursor []byte
		ok     bool
	}{
		{"valid", valid, true},
		{"valid, lacking a group added since", cursorBytes(v, 1000, hdr(0, 1), 0, 1, groupSet{"ops"}, tag("ops"), 0), true},
		{"valid, no groups yet", cursorBytes(v, 1000, hdr(0, 1), 0, 0), true},
		{"all zero", cursorBytes(v, 0, 0, 0, 0), true},
		{"trim mark", cursorBytes(v, 1000, hdr(0, 0), 0, 0), true},
		{"sequence 18 inline", cursorBytes(v, 1000, hdr(0, 19), 0, 0), true},
		{"sequence 19 in a byte", cursorBytes(v, 1000, hdr(0, 20), []byte{19}, 0, 0), true},
		{"sequence 2^64-2", cursorBytes(v, 1000, hdr(0, 27), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, 0, 0), true},
		{"position at ms 0", cursorBytes(v, 1000, hdr(0, 1), hdr(2, 2), []byte{3, 0xe8}, 0), true},
		{"version only", v, false},
		{"truncated", valid[:len(valid)-1], false},
		{"trailing byte", append(append([]byte(nil), valid...), 0), false},
		{"version 0", append([]byte{0}, valid[1:]...), false},
		{"version 3", append([]byte{3}, valid[1:]...), false},
		{"unknown position form", cursorBytes(v, 1000, []byte{maxHeader + 1}, 0, 0), false},
		{"d with a leading zero", cursorBytes(v, 1000, hdr(1, 1), []byte{0}, 0, 0), false},
		{"d above base", cursorBytes(v, 1000, hdr(0, 1), hdr(2, 1), []byte{3, 0xe9}, 0), false},
		{"inline sequence spelled long", cursorBytes(v, 1000, hdr(0, 20), []byte{18}, 0, 0), false},
		{"sequence with a leading zero", cursorBytes(v, 1000, hdr(0, 21), []byte{0, 19}, 0, 0), false},
		{"trim mark spelled long", cursorBytes(v, 1000, hdr(0, 27), ones, 0, 0), false},
		{"truncated sequence", cursorBytes(v, 1000, hdr(0, 22), []byte{1, 2}), false},
		{"zero position spelled long", cursorBytes(v, 0, hdr(0, 1), 0, 0), false},
		{"base above every position", cursorBytes(v, 2000, hdr(2, 1), []byte{3, 0xe8}, 0, 0), false},
		{"non-minimal varint", cursorBytes(v, []byte{0xe8, 0x87, 0x00}, hdr(0, 1), 0, 0), false},
		{"missing set hash", cursorBytes(v, 1000, hdr(0, 1), 0, 1, tag("ops"), 0), false},
		{"wrong set hash", cursorBytes(v, 1000, hdr(0, 1), 0, 1, groupSet{"user:list"}, tag("ops"), 0), false},
		{"set hash of the reader's groups", cursorBytes(v, 1000, hdr(0, 1), 0, 1, both, tag("ops"), 0), false},
		{"too many groups", cursorBytes(v, 1000, hdr(0, 1), 0, MaxGroups+1), false},
		{"unknown group", cursorBytes(v, 1000, hdr(0, 1), 0, 1, groupSet{"dev"}, tag("dev"), 0), false},
		{"group listed twice", cursorBytes(v, 1000, hdr(0, 1), 0, 2, groupSet{"ops", "ops"}, tag("ops"), 0, tag("ops"), 0), false},
		{"groups out of order", cursorBytes(v, 1000, hdr(0, 1), 0, 2, groupSet{"user:list", "ops"}, tag("user:list"), 0, tag("ops"), 0), false},
	} {
		err := DecodeCursorCheck(b64(tc.cursor), r)
		if tc.ok && err != nil {
			t.Errorf("%s: % x rejected: %v", tc.name, tc.cursor, err)
		}
		if !tc.ok && !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s: % x: err = %v, want ErrBadCursor", tc.name, tc.cursor, err)
		}
	}
}

// TestCursorTagCollision: tags are short, so two groups of one reader may
// share one. A cursor still maps them right when it covers the reader's
// groups; when the reader has gained the first since, the set hash turns
// what would be a silent mix-up into ErrBadCursor.
func TestCursorTagCollision(t *testing.T) {
	t.Parallel()
	byTag := map[uint16]string{}
	var g1, g2 string
	for i := 0; g2 == ""; i++ {
		name := fmt.Sprintf("role:%d", i)
		if other, ok := byTag[groupTag(name)]; ok {
			g1, g2 = min(name, other), max(name, other)
		}
		byTag[groupTag(name)] = name
	}
	k := keys{"p:"}
	both := streamsFor("p:", "u", []string{g1, g2})
	pos := positions{"u": {100, 0}, "b": {}, k.groupStream(g1).name: {50, 1}, k.groupStream(g2).name: {70, 2}}
	got, err := decodeCursor(encodeCursor(both, pos), both)
	if err != nil || !maps.Equal(got, pos) {
		t.Fatalf("%s and %s share a tag: round trip %v, %v", g1, g2, got, err)
	}
	only2 := streamsFor("p:", "u", []string{g2})
	c := encodeCursor(only2, positions{"u": {100, 0}, "b": {}, k.groupStream(g2).name: {70, 2}})
	if got, err := decodeCursor(c, both); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("cursor for %s read by a reader that gained %s: %v, %v; want ErrBadCursor", g2, g1, got, err)
	}
}

// TestCursorV1Strict checks that a version 1 cursor, which clients may
// still hold, is accepted only as pollbox spelled it.
func TestCursorV1Strict(t *testing.T) {
	t.Parallel()
	r := Reader{User: "u", Groups: []string{"user:list", "ops"}} // sorted: ops, user:list
	v := []byte{cursorV1}
	// base 1000; u at 1000-0; b at 0-0; ops at 0-0; user:list at 999-300.
	valid := cursorBytes(v, 1000, 1, 0, 0, 2, "ops", 0, "user:list", 2, 300)
	validStr := b64(valid)
	if len(validStr)%4 == 0 {
		t.Fatal("the valid cursor needs a partial last base64 group")
	}
	// The last character of a partial group carries spare bits, which must be zero.
	last := strings.IndexByte(b64Alphabet, validStr[len(validStr)-1])
	spareBits := validStr[:len(validStr)-1] + string(b64Alphabet[last|1])
	padded := base64.URLEncoding.EncodeToString(valid)
	// A valid cursor whose encoding uses '-' or '_', to spell in the standard alphabet.
	var urlOnly string
	for seq := 0; urlOnly == ""; seq++ {
		if c := b64(cursorBytes(v, 1000, 1, seq, 0, 0)); strings.ContainsAny(c, "-_") {
			urlOnly = c
		}
	}
	if DecodeCursorCheck(urlOnly, Reader{User: "u"}) != nil {
		t.Fatalf("%q should be valid", urlOnly)
	}
	for _, tc := range []struct {
		name   string
		cursor string
		ok     bool
	}{
		{"valid", validStr, true},
		{"valid, lacking a group added since", b64(cursorBytes(v, 1000, 1, 0, 0, 1, "ops", 0)), true},
		{"valid, no groups yet", b64(cursorBytes(v, 1000, 1, 0, 0, 0)), true},
		{"all zero", b64(cursorBytes(v, 0, 0, 0, 0)), true},
		{"empty", "", false},
		{"version only", b64(v), false},
		{"truncated", b64(valid[:len(valid)-1]), false},
		{"truncated group hash", b64(cursorBytes(v, 1000, 1, 0, 0, 1, []byte{1, 2})), false},
		{"truncated base64", validStr[:len(validStr)-1], false},
		{"trailing byte", b64(append(append([]byte(nil), valid...), 0)), false},
		{"version 0", b64(append([]byte{0}, valid[1:]...)), false},
		{"version 3", b64(append([]byte{3}, valid[1:]...)), false},
		{"not base64", "AQ!!", false},
		{"padding", padded, false},
		{"padding appended", validStr + "=", false},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(urlOnly), false},
		{"spare bits set", spareBits, false},
		{"space", " " + validStr, false},
		{"non-minimal varint", b64(cursorBytes(v, []byte{0xe8, 0x87, 0x00}, 1, 0, 0, 0)), false},
		{"varint overflow", b64(cursorBytes(v, append(bytes.Repeat([]byte{0xff}, 10), 1), 0, 0, 0)), false},
		{"position before 0", b64(cursorBytes(v, 1000, 1002, 0, 0, 0)), false},
		{"too many groups", b64(cursorBytes(v, 1000, 1, 0, 0, MaxGroups+1)), false},
		{"unknown group", b64(cursorBytes(v, 1000, 1, 0, 0, 1, "dev", 0)), false},
		{"group listed twice", b64(cursorBytes(v, 1000, 1, 0, 0, 2, "ops", 0, "ops", 0)), false},
		{"groups out of order", b64(cursorBytes(v, 1000, 1, 0, 0, 2, "user:list", 2, 300, "ops", 0)), false},
		{"base above every position", b64(cursorBytes(v, 2000, 1001, 0, 0, 0)), false},
		{"zero position spelled long", b64(cursorBytes(v, 1000, 1, 0, 1001, 0, 0)), false},
		{"too long", strings.Repeat("A", MaxCursorLen+1), false},
	} {
		err := DecodeCursorCheck(tc.cursor, r)
		if tc.ok && err != nil {
			t.Errorf("%s: %q rejected: %v", tc.name, tc.cursor, err)
		}
		if !tc.ok && !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s: %q: err = %v, want ErrBadCursor", tc.name, tc.cursor, err)
		}
	}
	if err := DecodeCursorCheck(validStr, Reader{User: "bad user"}); !errors.Is(err, ErrBadName) {
		t.Errorf("bad reader: err = %v, want ErrBadName", err)
	}
	if err := DecodeCursorCheck(validStr, Reader{User: "u", Groups: []string{"ops"}}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("reader without user:list: err = %v, want ErrBadCursor", err)
	}
}

func TestParseMessageID(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("g", MaxNameLen)
	for _, tc := range []struct {
		id    string
		kind  byte
		group string
		entry entryID
	}{
		{"u.1-0", 'u', "", entryID{1, 0}},
		{"u.0-0", 'u', "", entryID{0, 0}},
		{"b.1764092400123-17", 'b', "", entryID{1764092400123, 17}},
		{"u.18446744073709551615-18446744073709551615", 'u', "", entryID{1<<64 - 1, 1<<64 - 1}},
		{"g.ops.5-6", 'g', "ops", entryID{5, 6}},
		{"g.user:list.1764092400123-0", 'g', "user:list", entryID{1764092400123, 0}},
		{"g.a.b.c.1-2", 'g', "a.b.c", entryID{1, 2}},
		{"g.x-1.2-3", 'g', "x-1", entryID{2, 3}},
		{"g.u.1-0", 'g', "u", entryID{1, 0}},
		{"g.@_.-:9.1-0", 'g', "@_.-:9", entryID{1, 0}},
		{"g." + long + ".1-0", 'g', long, entryID{1, 0}},
	} {
		m, err := parseMsgRef(tc.id)
		if err != nil || ParseMessageID(tc.id) != nil {
			t.Errorf("%q rejected: %v", tc.id, err)
			continue
		}
		if m.kind != tc.kind || m.group != tc.group || m.entry != tc.entry {
			t.Errorf("%q parsed as %+v", tc.id, m)
		}
		st := keys{"p:"}.userStream("x")
		switch m.kind {
		case 'b':
			st = keys{"p:"}.broadcastStream()
		case 'g':
			st = keys{"p:"}.groupStream(m.group)
		}
		if got := st.publicID(m.entry); got != tc.id {
			t.Errorf("%q re-renders as %q", tc.id, got)
		}
	}
	for _, id := range []string{
		"", "u", "u.", ".1-0", "u.1", "u.1-", "u.-1", "u.1-0-0", "u.01-0", "u.1-00", "u.+1-0",
		"u. 1-0", "u.1-0 ", "u.1-0\n", "u.18446744073709551616-0", "u.1-18446744073709551616",
		"x.1-0", "U.1-0", "ub.1-0", "b.b.1-0", "u.1.0", "g.1-0", "g..1-0", "g.a b.1-0",
		"g.{ops}.1-0", "g.ops}.1-0", "g.é.1-0", "g.a/b.1-0", "g." + long + "x.1-0",
		"g.ops.1-0" + strings.Repeat("0", 400), "u.1-٣",
	} {
		if err := ParseMessageID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("%q: err = %v, want ErrBadID", id, err)
		}
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s           string
		user, group bool
	}{
		{"42", true, true},
		{"a.b@c-d_E", true, true},
		{"user:list", false, true},
		{strings.Repeat("a", MaxNameLen), true, true},
		{strings.Repeat("a", MaxNameLen+1), false, false},
		{"", false, false},
		{"a{b}", false, false},
		{"a b", false, false},
		{"a/b", false, false},
		{"a*", false, false},
		{"é", false, false},
		{"a\x00", false, false},
	} {
		if ValidUser(tc.s) != tc.user || ValidGroup(tc.s) != tc.group {
			t.Errorf("%q: ValidUser %v ValidGroup %v, want %v %v", tc.s, ValidUser(tc.s), ValidGroup(tc.s), tc.user, tc.group)
		}
	}
	if _, err := (Reader{User: "u", Groups: authorities(MaxGroups + 1)}).normalize(); !errors.Is(err, ErrInvalid) {
		t.Errorf("reader with %d groups: err = %v, want ErrInvalid", MaxGroups+1, err)
	}
	gs, err := Reader{User: "u", Groups: []string{"b", "a", "b"}}.normalize()
	if err != nil || strings.Join(gs, ",") != "a,b" {
		t.Errorf("normalize = %v, %v; want [a b]", gs, err)
	}
}

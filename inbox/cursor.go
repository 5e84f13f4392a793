package inbox

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/bits"
)

// A cursor records a position (the last entry delivered or skipped) in each
// stream a reader reads. Its wire form is base64url (no padding) of:
//
//	version byte (1)
//	uvarint base          — the largest millisecond value of any position
//	pos(user) pos(broadcast)
//	uvarint n             — number of groups
//	n × { 4-byte FNV-1a of the group name, pos }
//
// where pos is uvarint 0 for "0-0", else uvarint (base-ms+1) then uvarint seq.
// Delta-encoding against base keeps recent positions to a few bytes, so a
// token with MaxGroups groups still yields a cursor under 1 KiB. Group names
// are hashed rather than spelled out for the same reason; decoding maps the
// hashes back through the reader's own groups, so a cursor can never name a
// group its holder may not read.
const cursorVersion = 1

// MaxCursorLen is the longest cursor accepted.
const MaxCursorLen = 1024

type positions map[string]entryID // stream name → last position

func groupHash(g string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(g))
	return h.Sum32()
}

func encodeCursor(streams []stream, pos positions) string {
	var base uint64
	for _, s := range streams {
		if p := pos[s.name]; p.ms > base {
			base = p.ms
		}
	}
	buf := make([]byte, 0, 16+len(streams)*9)
	buf = append(buf, cursorVersion)
	buf = binary.AppendUvarint(buf, base)
	putPos := func(p entryID) {
		if p.isZero() {
			buf = binary.AppendUvarint(buf, 0)
			return
		}
		buf = binary.AppendUvarint(buf, base-p.ms+1)
		buf = binary.AppendUvarint(buf, p.seq)
	}
	var groups []stream
	for _, s := range streams {
		if s.kind == 'g' {
			groups = append(groups, s)
		}
	}
	putPos(pos["u"])
	putPos(pos["b"])
	buf = binary.AppendUvarint(buf, uint64(len(groups)))
	for _, g := range groups {
		buf = binary.BigEndian.AppendUint32(buf, groupHash(g.group))
		putPos(pos[g.name])
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

var errTruncated = errors.New("truncated")

// decodeCursor parses a cursor for a reader whose streams are given. Groups
// of the reader that the cursor lacks are absent from the result (the caller
// starts them from "now"); a group in the cursor that the reader lacks, or
// any malformation, is ErrBadCursor.
// findGroup returns the index of the first group stream at or after from
// whose name hashes to h, or -1.
func findGroup(streams []stream, h uint32, from int) int {
	for i := max(from, 0); i < len(streams); i++ {
		if streams[i].kind == 'g' && groupHash(streams[i].group) == h {
			return i
		}
	}
	return -1
}

// uvarintLen is the length of v's minimal uvarint encoding.
func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

// badCursor is kept out of line: inlined at each of decodeCursor's many
// exits it made that frame large, and polls hold it on their stacks.
//
//go:noinline
func badCursor(why string) error { return fmt.Errorf("%w: %s", ErrBadCursor, why) }

func decodeCursor(c string, streams []stream) (positions, error) {
	bad := func(why string) (positions, error) { return nil, badCursor(why) }
	if len(c) > MaxCursorLen {
		return bad("too long")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil || base64.RawURLEncoding.EncodeToString(raw) != c {
		return bad("not base64url")
	}
	if len(raw) == 0 || raw[0] != cursorVersion {
		return bad("unknown version")
	}
	rest := raw[1:]
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, errTruncated
		}
		// Reject over-long (non-minimal) varints so each position has one spelling.
		if n != uvarintLen(v) {
			return 0, errors.New("non-minimal varint")
		}
		rest = rest[n:]
		return v, nil
	}
	base, err := uv()
	if err != nil {
		return bad(err.Error())
	}
	// Each cursor has one spelling, the one encodeCursor writes: base is
	// the newest position, "0-0" is the single byte 0, and groups come in
	// the reader's order.
	var newest uint64
	getPos := func() (entryID, error) {
		d, err := uv()
		if err != nil || d == 0 {
			return entryID{}, err
		}
		if d-1 > base {
			return entryID{}, errors.New("position out of range")
		}
		seq, err := uv()
		if err != nil {
			return entryID{}, err
		}
		e := entryID{ms: base - (d - 1), seq: seq}
		if e.isZero() {
			return entryID{}, errors.New("zero position spelled long")
		}
		newest = max(newest, e.ms)
		return e, nil
	}
	pos := positions{}
	for _, name := range []string{"u", "b"} {
		p, err := getPos()
		if err != nil {
			return bad(err.Error())
		}
		pos[name] = p
	}
	n, err := uv()
	if err != nil {
		return bad(err.Error())
	}
	if n > MaxGroups {
		return bad("too many groups")
	}
	// Groups come in the reader's order, so each is found by scanning on
	// from the previous one (no maps: this runs on every poll).
	last := -1
	for i := uint64(0); i < n; i++ {
		if len(rest) < 4 {
			return bad("truncated")
		}
		h := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		at := findGroup(streams, h, last+1)
		if at < 0 {
			switch before := findGroup(streams, h, 0); {
			case before < 0:
				return bad("names a group the reader does not have")
			case before == last:
				return bad("group listed twice")
			default:
				return bad("groups out of order")
			}
		}
		last = at
		name := streams[at].name
		p, err := getPos()
		if err != nil {
			return bad(err.Error())
		}
		pos[name] = p
	}
	if len(rest) != 0 {
		return bad("trailing bytes")
	}
	if newest != base {
		return bad("base is not the newest position")
	}
	return pos, nil
}

// DecodeCursorCheck validates a cursor's syntax for a reader with the given
// groups, without touching Redis. Exposed for fuzzing and request validation.
func DecodeCursorCheck(c string, r Reader) error {
	gs, err := r.normalize()
	if err != nil {
		return err
	}
	_, err = decodeCursor(c, streamsFor("", r.User, gs))
	return err
}

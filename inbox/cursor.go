package inbox

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// A cursor records a position (the last entry delivered or skipped) in each
// stream a reader reads. Its wire form is base64url (no padding) of:
//
//	version byte (2)
//	uvarint base          — the largest millisecond value of any position
//	pos(user) pos(broadcast)
//	uvarint n             — number of groups
//	if n > 0: 4 bytes     — FNV-1a of the n group names, each followed by a 0 byte
//	n × { 2-byte tag of the group name (see groupTag), pos }
//
// A pos is a header byte h, then d = base−ms big-endian in the fewest bytes
// (none when d is 0), then the sequence number when h does not hold it:
//
//	h = 0                 the position "0-0" (a stream never written); nothing follows
//	h = 1 + len(d) + 9×f  f = 0: sequence 2^64−1, "every entry of that millisecond",
//	                      the form of a trim mark (see publishScript)
//	                      f = 1…19: sequence f−1
//	                      f = 20…27: a sequence of 19 or more follows in f−19 bytes
//
// Groups are named by a short tag rather than spelled out, and decoding
// maps the tags back through the reader's own groups (the set hash then
// confirms the whole mapping), so a cursor can never name a group its
// holder may not read. Positions are counted back from the newest one, so
// recent ones take a few bytes and years-old ones six at most.
//
// Size: with MaxGroups groups a cursor is at most 972 characters (under
// MaxCursorLen) as long as the newest position is before the year 2109
// (ms < 2^42) and every sequence number is below 2^16, or below 2^24 for
// positions less than 34 years (2^40 ms) older than the newest, or is a
// trim mark's 2^64−1. A stream's sequence numbers count its entries within
// one millisecond, so real ones stay far below that.
//
// Version 1 cursors (which spelled every sequence out as a uvarint and
// named groups by 4-byte hashes) are still accepted; see decodeCursorV1.
const cursorVersion = 2

// MaxCursorLen is the longest cursor accepted.
const MaxCursorLen = 1024

// Position header forms (see the cursor layout above).
const (
	dLens      = 9                  // d takes 0–8 bytes
	inlineSeqs = 19                 // sequences 0–18 ride in the header
	seqForms   = 1 + inlineSeqs + 8 // whole millisecond, inline, 1–8 bytes
	maxHeader  = 1 + (dLens - 1) + dLens*(seqForms-1)
	fnvOffset  = 2166136261
	fnvPrime   = 16777619
	wholeMilli = math.MaxUint64 // the sequence of "every entry of the millisecond"
)

type positions map[string]entryID // stream name → last position

// fnvAdd continues an FNV-1a hash over s.
func fnvAdd(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= fnvPrime
	}
	return h
}

// groupHash is the 32-bit FNV-1a of a name.
func groupHash(g string) uint32 { return fnvAdd(fnvOffset, g) }

// groupTag is the 16-bit tag that names a group in a cursor.
func groupTag(g string) uint16 {
	h := groupHash(g)
	return uint16(h>>16) ^ uint16(h)
}

// addSetHash adds one group name to a cursor's set hash.
func addSetHash(h uint32, g string) uint32 { return fnvAdd(h, g) * fnvPrime } // name, then a 0 byte

// byteLen is the number of bytes v takes big-endian without leading zeros.
func byteLen(v uint64) int { return (bits.Len64(v) + 7) / 8 }

func appendBigEndian(b []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendPos appends one position relative to base (p.ms ≤ base).
func appendPos(b []byte, base uint64, p entryID) []byte {
	if p.isZero() {
		return append(b, 0)
	}
	d := base - p.ms
	var f, seqLen int
	switch {
	case p.seq == wholeMilli:
		f = 0
	case p.seq < inlineSeqs:
		f = 1 + int(p.seq)
	default:
		seqLen = byteLen(p.seq)
		f = inlineSeqs + seqLen
	}
	dLen := byteLen(d)
	b = append(b, byte(1+dLen+dLens*f))
	b = appendBigEndian(b, d, dLen)
	return appendBigEndian(b, p.seq, seqLen)
}

func encodeCursor(streams []stream, pos positions) string {
	var base uint64
	for _, s := range streams {
		if p := pos[s.name]; p.ms > base {
			base = p.ms
		}
	}
	buf := make([]byte, 0, 24+len(streams)*9)
	buf = append(buf, cursorVersion)
	buf = binary.AppendUvarint(buf, base)
	buf = appendPos(buf, base, pos["u"])
	buf = appendPos(buf, base, pos["b"])
	n := 0
	set := uint32(fnvOffset)
	for _, s := range streams {
		if s.kind == 'g' {
			n++
			set = addSetHash(set, s.group)
		}
	}
	buf = binary.AppendUvarint(buf, uint64(n))
	if n > 0 {
		buf = binary.BigEndian.AppendUint32(buf, set)
	}
	for _, s := range streams {
		if s.kind == 'g' {
			buf = binary.BigEndian.AppendUint16(buf, groupTag(s.group))
			buf = appendPos(buf, base, pos[s.name])
		}
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

var errTruncated = errors.New("truncated")

// cursorReader reads a raw cursor, accepting each value only in the one
// spelling the encoder writes.
type cursorReader struct{ rest []byte }

func (r *cursorReader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.rest)
	if n <= 0 {
		return 0, errTruncated
	}
	// Reject over-long (non-minimal) varints so each position has one spelling.
	if n != uvarintLen(v) {
		return 0, errors.New("non-minimal varint")
	}
	r.rest = r.rest[n:]
	return v, nil
}

func (r *cursorReader) bytes(n int) ([]byte, error) {
	if len(r.rest) < n {
		return nil, errTruncated
	}
	b := r.rest[:n]
	r.rest = r.rest[n:]
	return b, nil
}

// bigEndian reads n bytes without leading zeros.
func (r *cursorReader) bigEndian(n int) (uint64, error) {
	b, err := r.bytes(n)
	if err != nil {
		return 0, err
	}
	if n > 0 && b[0] == 0 {
		return 0, errors.New("leading zero byte")
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// pos reads one position relative to base.
func (r *cursorReader) pos(base uint64) (entryID, error) {
	hb, err := r.bytes(1)
	if err != nil {
		return entryID{}, err
	}
	h := int(hb[0])
	if h == 0 {
		return entryID{}, nil
	}
	if h > maxHeader {
		return entryID{}, errors.New("unknown position form")
	}
	dLen, f := (h-1)%dLens, (h-1)/dLens
	d, err := r.bigEndian(dLen)
	if err != nil {
		return entryID{}, err
	}
	if d > base {
		return entryID{}, errors.New("position out of range")
	}
	var seq uint64
	switch {
	case f == 0:
		seq = wholeMilli
	case f <= inlineSeqs:
		seq = uint64(f - 1)
	default:
		if seq, err = r.bigEndian(f - inlineSeqs); err != nil {
			return entryID{}, err
		}
		if seq < inlineSeqs || seq == wholeMilli {
			return entryID{}, errors.New("sequence spelled long")
		}
	}
	e := entryID{ms: base - d, seq: seq}
	if e.isZero() {
		return entryID{}, errors.New("zero position spelled long")
	}
	return e, nil
}

// findGroup returns the index of the first group stream at or after from
// whose name matches, or -1.
func findGroup(streams []stream, from int, match func(g string) bool) int {
	for i := max(from, 0); i < len(streams); i++ {
		if streams[i].kind == 'g' && match(streams[i].group) {
			return i
		}
	}
	return -1
}

// groupError says why a group named by a cursor does not follow the
// previous one (at index last) among the reader's groups.
func groupError(streams []stream, last int, match func(g string) bool) error {
	switch before := findGroup(streams, 0, match); {
	case before < 0:
		return badCursor("names a group the reader does not have")
	case before == last:
		return badCursor("group listed twice")
	}
	return badCursor("groups out of order")
}

// uvarintLen is the length of v's minimal uvarint encoding.
func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

// badCursor is kept out of line: inlined at each of decodeCursor's many
// exits it made that frame large, and polls hold it on their stacks.
//
//go:noinline
func badCursor(why string) error { return fmt.Errorf("%w: %s", ErrBadCursor, why) }

// decodeCursor parses a cursor for a reader whose streams are given. Groups
// of the reader that the cursor lacks are absent from the result (the caller
// starts them from "now"); a group in the cursor that the reader lacks, or
// any malformation, is ErrBadCursor.
func decodeCursor(c string, streams []stream) (positions, error) {
	if len(c) > MaxCursorLen {
		return nil, badCursor("too long")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil || base64.RawURLEncoding.EncodeToString(raw) != c {
		return nil, badCursor("not base64url")
	}
	if len(raw) == 0 {
		return nil, badCursor("unknown version")
	}
	switch raw[0] {
	case cursorVersion:
		return decodeCursorV2(raw[1:], streams)
	case cursorV1:
		return decodeCursorV1(raw[1:], streams)
	}
	return nil, badCursor("unknown version")
}

func decodeCursorV2(raw []byte, streams []stream) (positions, error) {
	r := cursorReader{rest: raw}
	base, err := r.uvarint()
	if err != nil {
		return nil, badCursor(err.Error())
	}
	// Each cursor has one spelling, the one encodeCursor writes: base is
	// the newest position, and groups come in the reader's order.
	var newest uint64
	pos := positions{}
	read := func(name string) error {
		p, err := r.pos(base)
		if err != nil {
			return badCursor(err.Error())
		}
		newest = max(newest, p.ms)
		pos[name] = p
		return nil
	}
	if err := read("u"); err != nil {
		return nil, err
	}
	if err := read("b"); err != nil {
		return nil, err
	}
	n, err := r.uvarint()
	if err != nil {
		return nil, badCursor(err.Error())
	}
	if n > MaxGroups {
		return nil, badCursor("too many groups")
	}
	var want uint32
	if n > 0 {
		b, err := r.bytes(4)
		if err != nil {
			return nil, badCursor(err.Error())
		}
		want = binary.BigEndian.Uint32(b)
	}
	// Groups come in the reader's order, so each is found by scanning on
	// from the previous one (no maps: this runs on every poll).
	set := uint32(fnvOffset)
	last := -1
	for i := uint64(0); i < n; i++ {
		b, err := r.bytes(2)
		if err != nil {
			return nil, badCursor(err.Error())
		}
		tag := binary.BigEndian.Uint16(b)
		match := func(g string) bool { return groupTag(g) == tag }
		at := findGroup(streams, last+1, match)
		if at < 0 {
			return nil, groupError(streams, last, match)
		}
		last = at
		set = addSetHash(set, streams[at].group)
		if err := read(streams[at].name); err != nil {
			return nil, err
		}
	}
	if n > 0 && set != want {
		// Tags are short: when the reader has groups the cursor lacks,
		// one of them may share a later group's tag.
		return nil, badCursor("groups do not match the reader's")
	}
	if len(r.rest) != 0 {
		return nil, badCursor("trailing bytes")
	}
	if newest != base {
		return nil, badCursor("base is not the newest position")
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

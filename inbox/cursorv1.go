package inbox

import "encoding/binary"

// cursorV1 is the first cursor version, still accepted from clients that
// hold one. Its wire form after the version byte:
//
//	uvarint base          — the largest millisecond value of any position
//	pos(user) pos(broadcast)
//	uvarint n             — number of groups
//	n × { 4-byte FNV-1a of the group name, pos }
//
// where pos is uvarint 0 for "0-0", else uvarint (base-ms+1) then uvarint
// seq. A trim mark's sequence (2^64−1) took ten bytes here, which is why
// cursors are now written as version 2.
const cursorV1 = 1

func decodeCursorV1(raw []byte, streams []stream) (positions, error) {
	r := cursorReader{rest: raw}
	base, err := r.uvarint()
	if err != nil {
		return nil, badCursor(err.Error())
	}
	var newest uint64
	pos := positions{}
	read := func(name string) error {
		d, err := r.uvarint()
		if err != nil {
			return badCursor(err.Error())
		}
		if d == 0 {
			pos[name] = entryID{}
			return nil
		}
		if d-1 > base {
			return badCursor("position out of range")
		}
		seq, err := r.uvarint()
		if err != nil {
			return badCursor(err.Error())
		}
		e := entryID{ms: base - (d - 1), seq: seq}
		if e.isZero() {
			return badCursor("zero position spelled long")
		}
		newest = max(newest, e.ms)
		pos[name] = e
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
	last := -1
	for i := uint64(0); i < n; i++ {
		b, err := r.bytes(4)
		if err != nil {
			return nil, badCursor(err.Error())
		}
		h := binary.BigEndian.Uint32(b)
		match := func(g string) bool { return groupHash(g) == h }
		at := findGroup(streams, last+1, match)
		if at < 0 {
			return nil, groupError(streams, last, match)
		}
		last = at
		if err := read(streams[at].name); err != nil {
			return nil, err
		}
	}
	if len(r.rest) != 0 {
		return nil, badCursor("trailing bytes")
	}
	if newest != base {
		return nil, badCursor("base is not the newest position")
	}
	return pos, nil
}

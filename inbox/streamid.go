package inbox

import (
	"fmt"
	"strconv"
	"strings"
)

// entryID is a Redis stream entry ID: milliseconds and a sequence number.
type entryID struct{ ms, seq uint64 }

func (e entryID) String() string {
	return strconv.FormatUint(e.ms, 10) + "-" + strconv.FormatUint(e.seq, 10)
}

func (e entryID) less(o entryID) bool {
	return e.ms < o.ms || (e.ms == o.ms && e.seq < o.seq)
}

func (e entryID) isZero() bool { return e.ms == 0 && e.seq == 0 }

// parseEntryID parses "ms-seq" strictly: digits only, no sign, no leading
// zeros except "0", both parts present.
func parseEntryID(s string) (entryID, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return entryID{}, fmt.Errorf("entry id %q: missing '-'", s)
	}
	ms, err1 := parseCanonUint(a)
	seq, err2 := parseCanonUint(b)
	if err1 != nil || err2 != nil {
		return entryID{}, fmt.Errorf("entry id %q: not ms-seq", s)
	}
	return entryID{ms, seq}, nil
}

func parseCanonUint(s string) (uint64, error) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// stream is one stream a reader reads: the user's inbox, broadcast, or a group.
type stream struct {
	name  string // "u", "b" or "g.<group>": prefix of public ids, field in the read-state hash
	key   string // Redis key
	group string // group name for kind 'g'
	kind  byte   // 'u', 'b' or 'g'
}

// source is the "source" field of messages from this stream.
func (s stream) source() string {
	switch s.kind {
	case 'u':
		return "user"
	case 'b':
		return "broadcast"
	}
	return "group:" + s.group
}

// publicID is the message id clients see: stream name, '.', entry ID.
// Group names may contain '.', entry IDs never do, so the last '.' splits.
func (s stream) publicID(e entryID) string { return s.name + "." + e.String() }

// msgRef is a parsed public message id.
type msgRef struct {
	kind  byte
	group string
	entry entryID
}

func (m msgRef) streamName() string {
	switch m.kind {
	case 'u':
		return "u"
	case 'b':
		return "b"
	}
	return "g." + m.group
}

// ParseMessageID checks a public message id ("u.<ms>-<seq>",
// "b.<ms>-<seq>" or "g.<group>.<ms>-<seq>") and returns ErrBadID when it is
// malformed. It does not check that the reader may see it.
func ParseMessageID(id string) error {
	_, err := parseMsgRef(id)
	return err
}

func parseMsgRef(id string) (msgRef, error) {
	if len(id) > 2*MaxNameLen+64 {
		return msgRef{}, fmt.Errorf("%w: too long", ErrBadID)
	}
	dot := strings.LastIndexByte(id, '.')
	if dot < 1 {
		return msgRef{}, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	e, err := parseEntryID(id[dot+1:])
	if err != nil {
		return msgRef{}, fmt.Errorf("%w: %v", ErrBadID, err)
	}
	head := id[:dot]
	switch {
	case head == "u":
		return msgRef{kind: 'u', entry: e}, nil
	case head == "b":
		return msgRef{kind: 'b', entry: e}, nil
	case strings.HasPrefix(head, "g.") && ValidGroup(head[2:]):
		return msgRef{kind: 'g', group: head[2:], entry: e}, nil
	}
	return msgRef{}, fmt.Errorf("%w: %q", ErrBadID, id)
}

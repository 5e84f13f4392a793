package inbox

import (
	"strconv"
	"strings"
)

// wake is a parsed wake-up for a new entry (see publishScript).
type wake struct {
	key      string
	id, prev entryID
	unread   int // the inbox's unread count after the publish; -1 for shared streams
	// typeUnread is the inbox's unread count of the entry's type after the
	// publish, when the wake-up carries one ("<n>,<m>"); else -1.
	typeUnread int
	revokes    entryID // set when the entry is a tombstone (see revokeScript)
	expires    int64   // the entry's expiry (unix ms), 0 = never
	raw        []any   // nil when the fields were left out
	size       int     // bytes of the fields
}

// parseWake parses "key\nid\nprev\nunread\nexpires\nfields", where
// unread is "<n>" or "<n>,<count of the entry's type>". fields is
// "-" when left out, else each field and value as "<len>:<bytes>". A
// payload that is only a key (a read-state change) returns ok = false.
func parseWake(p string) (w wake, ok bool) {
	var parts [5]string
	rest := p
	for i := range parts {
		j := strings.IndexByte(rest, '\n')
		if j < 0 {
			return wake{}, false
		}
		parts[i], rest = rest[:j], rest[j+1:]
	}
	var err error
	w.key = parts[0]
	if w.id, err = parseEntryID(parts[1]); err != nil {
		return wake{}, false
	}
	if w.prev, err = parseEntryID(parts[2]); err != nil {
		return wake{}, false
	}
	w.typeUnread = -1
	n, m, two := strings.Cut(parts[3], ",")
	if w.unread, err = strconv.Atoi(n); err != nil {
		return wake{}, false
	}
	if two {
		if w.typeUnread, err = strconv.Atoi(m); err != nil {
			return wake{}, false
		}
	}
	if w.expires, err = strconv.ParseInt(parts[4], 10, 64); err != nil {
		return wake{}, false
	}
	if rest == "-" {
		return w, true
	}
	var kv []any
	for rest != "" {
		j := strings.IndexByte(rest, ':')
		if j < 0 {
			return wake{}, false
		}
		n, err := strconv.Atoi(rest[:j])
		if err != nil || n < 0 || n > len(rest)-j-1 {
			return wake{}, false
		}
		kv = append(kv, rest[j+1:j+1+n])
		w.size += n
		rest = rest[j+1+n:]
	}
	if len(kv)%2 != 0 {
		return wake{}, false
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == "revoke" {
			if r, err := parseEntryID(kv[i+1].(string)); err == nil {
				w.revokes = r
			}
		}
	}
	w.raw = []any{parts[1], kv}
	return w, true
}

// entryType returns the entry's type field ("" when it has none), and
// false when the wake-up left the fields out.
func (w *wake) entryType() (string, bool) {
	if w.raw == nil {
		return "", false
	}
	kv, _ := w.raw[1].([]any)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "type" {
			t, _ := kv[i+1].(string)
			return t, true
		}
	}
	return "", true
}

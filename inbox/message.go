package inbox

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one entry of a stream as a reader sees it.
type Message struct {
	ID      string // public id, unique in the reader's view
	Source  string // "user", "broadcast" or "group:<name>"
	Type    string
	Title   string
	Body    string
	Link    string
	Level   string
	Sender  string
	Data    json.RawMessage // JSON object or nil
	Created time.Time
	Expires time.Time // zero: never
	Read    bool

	stream string // stream name ("u", "b", "g.<group>")
	entry  entryID
	// revokes is set on a tombstone (an entry with a "revoke" field, see
	// revokeScript): the entry it revokes. A tombstone is never shown as a
	// message; polls report what it revokes, history skips it.
	revokes entryID
}

// tombstone tells whether the entry is a revoke's tombstone.
func (m *Message) tombstone() bool { return !m.revokes.isZero() }

// before is the order of every answer that merges streams (polls oldest
// first, history in exact reverse; README, "Order"): by entry ID, that is
// by millisecond and then by sequence number, and for equal IDs by stream
// name in byte order, "b" < "g.<group>" < "u": broadcast, then groups by
// name, then the inbox. Within one stream this is publish order.
func (m *Message) before(o *Message) bool {
	if m.entry != o.entry {
		return m.entry.less(o.entry)
	}
	return m.stream < o.stream
}

func (m *Message) expired(nowMS int64) bool {
	return !m.Expires.IsZero() && ms(m.Expires) <= nowMS
}

// Levels are the accepted message levels.
var Levels = []string{"info", "success", "warning", "error"}

// Limits on a draft's fields.
const (
	MaxTypeLen  = 64
	MaxTitleLen = 1024
	MaxLinkLen  = 2048
	MaxKeyLen   = 128
)

// Draft is a message to publish.
type Draft struct {
	Type, Title, Body, Link, Level, Sender string
	Data                                   json.RawMessage // a JSON object, or empty
	ExpiresIn                              time.Duration   // 0: never
}

// Target says where a draft goes: exactly one of the three.
type Target struct {
	Users     []string
	Groups    []string
	Broadcast bool
}

// Validate checks a draft against the field limits; maxBody bounds Body
// plus Data in bytes. It fills in default type and level.
func (d *Draft) Validate(maxBody int) error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrInvalid}, a...)...) }
	if d.Type == "" {
		d.Type = "notification"
	}
	if d.Level == "" {
		d.Level = "info"
	}
	if d.Title == "" && d.Body == "" {
		return bad("title or body is required")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"type", d.Type, MaxTypeLen}, {"title", d.Title, MaxTitleLen}, {"link", d.Link, MaxLinkLen}, {"sender", d.Sender, MaxNameLen}} {
		if len(f.v) > f.max {
			return bad("%s longer than %d bytes", f.name, f.max)
		}
		if !utf8.ValidString(f.v) {
			return bad("%s is not UTF-8", f.name)
		}
		for _, r := range f.v {
			if r < 0x20 || r == 0x7f {
				return bad("%s has control characters", f.name)
			}
		}
	}
	if !utf8.ValidString(d.Body) {
		return bad("body is not UTF-8")
	}
	if len(d.Body)+len(d.Data) > maxBody {
		return fmt.Errorf("%w: body and data exceed %d bytes", ErrTooLarge, maxBody)
	}
	ok := false
	for _, l := range Levels {
		ok = ok || d.Level == l
	}
	if !ok {
		return bad("level must be one of info, success, warning, error")
	}
	if len(d.Data) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(d.Data, &obj); err != nil || obj == nil {
			return bad("data must be a JSON object")
		}
	}
	if d.ExpiresIn < 0 {
		return bad("expires_in must not be negative")
	}
	return nil
}

// fields renders a draft as the plain stream entry fields that redis-cli shows.
func (d *Draft) fields(now time.Time) (fv []any, expiresAt int64) {
	fv = []any{"type", d.Type}
	add := func(k, v string) {
		if v != "" {
			fv = append(fv, k, v)
		}
	}
	add("title", d.Title)
	add("body", d.Body)
	add("link", d.Link)
	add("level", d.Level)
	add("sender", d.Sender)
	if len(d.Data) > 0 {
		fv = append(fv, "data", string(d.Data))
	}
	if d.ExpiresIn > 0 {
		expiresAt = ms(now.Add(d.ExpiresIn))
		fv = append(fv, "expires", strconv.FormatInt(expiresAt, 10))
	}
	return fv, expiresAt
}

// decodeEntry turns a raw script reply entry ([id, [f, v, …]]) into a Message.
func decodeEntry(st stream, raw any) (*Message, error) {
	pair, ok := raw.([]any)
	if !ok || len(pair) != 2 {
		return nil, fmt.Errorf("unexpected entry shape %T", raw)
	}
	idStr, _ := pair[0].(string)
	e, err := parseEntryID(idStr)
	if err != nil {
		return nil, err
	}
	kv, _ := pair[1].([]any)
	m := &Message{ID: st.publicID(e), Source: st.source(), stream: st.name, entry: e,
		Created: time.UnixMilli(int64(e.ms)).UTC()}
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		v, _ := kv[i+1].(string)
		switch k {
		case "type":
			m.Type = v
		case "title":
			m.Title = v
		case "body":
			m.Body = v
		case "link":
			m.Link = v
		case "level":
			m.Level = v
		case "sender":
			m.Sender = v
		case "data":
			// Publishing refuses invalid UTF-8, but an entry written by
			// other means may hold some: no answer may carry it.
			v = strings.ToValidUTF8(v, "\uFFFD")
			if json.Valid([]byte(v)) {
				m.Data = json.RawMessage(v)
			}
		case "expires":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				m.Expires = time.UnixMilli(n).UTC()
			}
		case "revoke":
			if r, err := parseEntryID(v); err == nil {
				m.revokes = r
			}
		}
	}
	return m, nil
}

// decodeEntries decodes a list of raw entries.
func decodeEntries(st stream, raw any) ([]*Message, error) {
	list, _ := raw.([]any)
	out := make([]*Message, 0, len(list))
	for _, r := range list {
		m, err := decodeEntry(st, r)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

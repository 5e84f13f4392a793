package poll

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"pollbox/inbox"
)

// Poll answers are the hottest output of the server (every delivery is
// one), so they are encoded by hand into pooled buffers instead of
// through encoding/json's reflection. The bytes are exactly what
// encoding/json produces for pollResponse (wire_test.go compares the two).

var wireBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBuf keeps a rare huge answer from pinning its buffer in the pool.
const maxPooledBuf = 64 << 10

var (
	jsonContentType = []string{"application/json; charset=utf-8"}
)

// writePoll writes a poll answer with its Content-Length, in one Write.
func writePoll(w http.ResponseWriter, res inbox.PollResult) {
	bp := wireBufs.Get().(*[]byte)
	b := appendPollResponse((*bp)[:0], res)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	if cap(b) <= maxPooledBuf {
		*bp = b
		wireBufs.Put(bp)
	}
}

// appendPollResponse appends the JSON of pollResponse for res, newline-terminated as json.Encoder does.
func appendPollResponse(b []byte, res inbox.PollResult) []byte {
	b = append(b, `{"messages":[`...)
	for i := range res.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMessage(b, &res.Messages[i])
	}
	b = append(b, `],"cursor":`...)
	b = appendJSONString(b, res.Cursor)
	b = append(b, `,"unread":`...)
	b = strconv.AppendInt(b, int64(res.Unread), 10)
	b = append(b, `,"unread_by_type":`...)
	b = appendTypeCounts(b, res.UnreadByType)
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, res.More)
	b = append(b, `,"reset":`...)
	b = strconv.AppendBool(b, res.Reset)
	b = append(b, `,"revoked":[`...)
	for i, id := range res.Revoked {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	return append(b, "]}\n"...)
}

// appendTypeCounts appends the types with a count above 0 as a JSON object
// with sorted keys, as encoding/json writes typeCounts(m). The keys are
// sorted in an array on the stack: a user has a handful of types in use.
func appendTypeCounts(b []byte, m map[string]int) []byte {
	var arr [8]string
	keys := arr[:0]
	for k, n := range m {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(m[k]), 10)
	}
	return append(b, '}')
}

// typeCounts is the map of unread counts by type as answers show it:
// never null, and without types at 0.
func typeCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, n := range m {
		if n > 0 {
			out[k] = n
		}
	}
	return out
}

// appendMessage appends one message as wireMessage encodes it.
func appendMessage(b []byte, m *inbox.Message) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, m.ID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, m.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, m.Type)
	for _, f := range [...]struct{ name, v string }{{`,"title":`, m.Title}, {`,"body":`, m.Body}, {`,"link":`, m.Link}, {`,"level":`, m.Level}} {
		if f.v != "" {
			b = append(b, f.name...)
			b = appendJSONString(b, f.v)
		}
	}
	if len(m.Data) > 0 {
		// Rare, and encoding/json's treatment of raw JSON (compacting,
		// escaping) is the reference: let it do this part.
		if raw, err := json.Marshal(m.Data); err == nil {
			b = append(b, `,"data":`...)
			b = append(b, raw...)
		}
	}
	if m.Sender != "" {
		b = append(b, `,"sender":`...)
		b = appendJSONString(b, m.Sender)
	}
	b = append(b, `,"created_at":"`...)
	b = m.Created.UTC().AppendFormat(b, timeFormat)
	b = append(b, `","expires_at":`...)
	if m.Expires.IsZero() {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = m.Expires.UTC().AppendFormat(b, timeFormat)
		b = append(b, '"')
	}
	b = append(b, `,"read":`...)
	b = strconv.AppendBool(b, m.Read)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way encoding/json does:
// HTML-sensitive characters, control characters, U+2028 and U+2029 are
// escaped, and invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

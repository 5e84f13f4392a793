package poll

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Request bodies are JSON objects, read more strictly than encoding/json
// reads them. It matches keys without regard to case and lets the last of
// a repeated key win, so {"to":["a"],"TO":["b"]} would go to b only; it
// turns invalid UTF-8 and lone surrogate escapes in strings into U+FFFD
// and keeps them as they are inside a json.RawMessage (data), where they
// would reach every answer that carries the message and make it invalid
// JSON for strict parsers. All of these are a 400 here.

// readBody reads a JSON request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return nil, newErr(http.StatusUnsupportedMediaType, "bad_request", "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge("request body larger than " + strconv.FormatInt(limit, 10) + " bytes")
		}
		return nil, badRequest("could not read the request body")
	}
	return body, nil
}

// decodeBody reads a JSON body into v as decodeJSON does.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes one JSON object into v, a pointer to a struct. The
// body must be valid UTF-8 without lone surrogate escapes; its top-level
// keys must be v's JSON field names exactly, each at most once; nothing
// may follow the object.
func decodeJSON(body []byte, v any) error {
	if !utf8.Valid(body) {
		return badRequest("the body is not valid UTF-8")
	}
	if err := checkKeys(body, jsonFields(reflect.TypeOf(v))); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON: " + jsonErrText(err))
	}
	if dec.More() {
		return badRequest("invalid JSON: data after the object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return badRequest("invalid JSON: data after the object")
	}
	if loneSurrogate(body) {
		return badRequest(`the body escapes half of a UTF-16 surrogate pair (\ud800-\udfff without its other half), which is not text`)
	}
	return nil
}

// jsonFields returns the JSON names of the fields of the struct t points
// to, or nil when t is not a pointer to a struct.
func jsonFields(t reflect.Type) []string {
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	t = t.Elem()
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// checkKeys reads the top level of body, which must be a JSON object, and
// refuses a key that is not exactly one of known (when known is not nil)
// or that appears twice. Values are not looked into: data is the
// publisher's own object. What it does not reach (a missing '}', data
// after the object) the full decode that follows finds.
func checkKeys(body []byte, known []string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return badRequest("invalid JSON: " + jsonErrText(err))
	}
	if tok != json.Delim('{') {
		return badRequest("the body must be a JSON object")
	}
	seen := make(map[string]bool, len(known))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return badRequest("invalid JSON: " + jsonErrText(err))
		}
		key, _ := tok.(string)
		if known != nil && !slices.Contains(known, key) {
			for _, k := range known {
				if strings.EqualFold(k, key) {
					return badRequest("unknown field " + strconv.Quote(clip(key)) + ": keys are case-sensitive, did you mean " + strconv.Quote(k) + "?")
				}
			}
			return badRequest("unknown field " + strconv.Quote(clip(key)))
		}
		if seen[key] {
			return badRequest("field " + strconv.Quote(clip(key)) + " appears more than once")
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return badRequest("invalid JSON: " + jsonErrText(err))
		}
	}
	return nil
}

// loneSurrogate reports whether the JSON text b has a \u escape of half a
// UTF-16 surrogate pair without the other half right after (a high one) or
// right before (a low one). b must be valid JSON.
func loneSurrogate(b []byte) bool {
	if !bytes.Contains(b, []byte(`\u`)) {
		return false
	}
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == '\\' && i+1 < len(b) && b[i+1] == 'u':
			switch r := hex4(b, i+2); {
			case r >= 0xDC00 && r <= 0xDFFF:
				return true // a low half with no high half before it
			case r >= 0xD800 && r <= 0xDBFF:
				if i+11 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
					return true
				}
				if r2 := hex4(b, i+8); r2 < 0xDC00 || r2 > 0xDFFF {
					return true
				}
				i += 11
			default:
				i += 5
			}
		case c == '\\':
			i++ // the escaped character, which may be a quote or a backslash
		}
	}
	return false
}

// hex4 decodes the four hex digits at b[i:], or returns -1.
func hex4(b []byte, i int) int {
	if i+4 > len(b) {
		return -1
	}
	n := 0
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		n = n<<4 | int(c)
	}
	return n
}

// jsonErrText describes a decoding error without echoing large input.
func jsonErrText(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return "field " + strconv.Quote(te.Field) + " has the wrong type"
	case errors.As(err, &se):
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "body is empty or truncated"
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return strings.TrimPrefix(msg, "json: ")
}

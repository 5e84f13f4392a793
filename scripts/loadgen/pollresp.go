package main

// A reflection-free decoder for the poll response.
//
// json.Decoder on every poll answer was one of the load generator's larger
// costs. The load generator needs four things from an answer: each
// message's "body", "cursor", "more" and "reset". pollResult.parse extracts
// exactly those and must give the same result as json.Unmarshal into
//
//	struct {
//		Messages []struct{ ID, Body string } `json:"messages"` // id, body
//		Cursor   string                      `json:"cursor"`
//		More     bool                        `json:"more"`
//		Reset    bool                        `json:"reset"`
//	}
//
// for every input, valid or not (the tests compare the two on generated
// and damaged answers): the input is fully validated, keys match
// case-insensitively, strings are unescaped the way encoding/json does it
// (including surrogate pairs and the replacement of invalid UTF-8), unknown
// fields of any shape are skipped, null leaves a field alone and a value of
// the wrong type is an error. Only error messages differ, and one oddity no
// server produces: with "messages" repeated three times or more,
// encoding/json can bring back elements of an earlier, longer array.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonMaxDepth is encoding/json's nesting limit.
const jsonMaxDepth = 10000

// span locates a decoded string in pollResult.text.
type span struct{ start, end int }

// pollResult is a decoded poll response. It is reused from poll to poll, so
// that a steady stream of answers allocates nothing.
type pollResult struct {
	text   []byte // decoded strings, referenced by the spans
	bodies []span // messages[i].body
	cursor span
	more   bool
	reset  bool
	key    []byte // scratch for object keys and skipped strings
}

func (p *pollResult) body(i int) []byte   { s := p.bodies[i]; return p.text[s.start:s.end] }
func (p *pollResult) cursorBytes() []byte { return p.text[p.cursor.start:p.cursor.end] }

// parse decodes data into p.
func (p *pollResult) parse(data []byte) error {
	*p = pollResult{text: p.text[:0], bodies: p.bodies[:0], key: p.key}
	s := jsonScan{b: data, key: p.key[:0]}
	defer func() { p.key = s.key }()
	var err error
	switch s.peek() {
	case '{':
		err = p.object(&s)
	case 'n':
		err = s.lit("null") // a null answer leaves everything zero
	default:
		err = s.typeErr("poll response")
	}
	if err != nil {
		return err
	}
	if s.ws(); s.i < len(s.b) {
		return s.syntaxErr("after top-level value")
	}
	return nil
}

func (p *pollResult) object(s *jsonScan) error {
	return s.object(func(key []byte) error {
		switch {
		case bytes.EqualFold(key, []byte("messages")):
			return p.messages(s)
		case bytes.EqualFold(key, []byte("cursor")):
			return p.strInto(s, &p.cursor)
		case bytes.EqualFold(key, []byte("more")):
			return s.boolInto(&p.more)
		case bytes.EqualFold(key, []byte("reset")):
			return s.boolInto(&p.reset)
		}
		return s.skip()
	})
}

// messages decodes the array the way encoding/json decodes into a slice:
// null empties it, and elements are decoded over the ones already there.
func (p *pollResult) messages(s *jsonScan) error {
	switch s.peek() {
	case 'n':
		p.bodies = p.bodies[:0]
		return s.lit("null")
	case '[':
	default:
		return s.typeErr("messages")
	}
	n := 0
	err := s.array(func() error {
		if n == len(p.bodies) {
			p.bodies = append(p.bodies, span{})
		}
		i := n
		n++
		switch s.peek() {
		case 'n':
			return s.lit("null")
		case '{':
		default:
			return s.typeErr("message")
		}
		return s.object(func(key []byte) error {
			switch {
			case bytes.EqualFold(key, []byte("body")):
				return p.strInto(s, &p.bodies[i])
			case bytes.EqualFold(key, []byte("id")):
				if c := s.peek(); c != '"' && c != 'n' {
					return s.typeErr("message id")
				}
			}
			return s.skip()
		})
	})
	p.bodies = p.bodies[:n]
	return err
}

// strInto decodes a string or null; a string is stored in p.text and
// located by *dst.
func (p *pollResult) strInto(s *jsonScan, dst *span) error {
	switch s.peek() {
	case 'n':
		return s.lit("null")
	case '"':
	default:
		return s.typeErr("string field")
	}
	start := len(p.text)
	var err error
	if p.text, err = s.str(p.text); err != nil {
		return err
	}
	*dst = span{start, len(p.text)}
	return nil
}

// jsonScan is a validating cursor over one JSON text.
type jsonScan struct {
	b     []byte
	i     int
	depth int
	key   []byte
}

func (s *jsonScan) syntaxErr(where string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("json: unexpected end of input %s", where)
	}
	return fmt.Errorf("json: invalid character %q at offset %d %s", s.b[s.i], s.i, where)
}

// typeErr validates the value at hand (a syntax error takes precedence, as
// in encoding/json) and reports it as being of the wrong type.
func (s *jsonScan) typeErr(field string) error {
	at := s.i
	if err := s.skip(); err != nil {
		return err
	}
	v := s.b[at:s.i]
	if len(v) > 40 {
		v = v[:40] // enough to recognise it in an error report
	}
	return fmt.Errorf("json: cannot decode %s at offset %d into %s", v, at, field)
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte (0 at the end) after skipping whitespace.
func (s *jsonScan) peek() byte {
	if s.ws(); s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScan) lit(word string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return s.syntaxErr("in literal")
	}
	s.i += len(word)
	return nil
}

func (s *jsonScan) boolInto(dst *bool) error {
	switch s.peek() {
	case 't':
		*dst = true
		return s.lit("true")
	case 'f':
		*dst = false
		return s.lit("false")
	case 'n':
		return s.lit("null")
	}
	return s.typeErr("bool field")
}

// object walks an object, calling value with each decoded key; value must
// consume the member's value.
func (s *jsonScan) object(value func(key []byte) error) error {
	if s.depth++; s.depth > jsonMaxDepth {
		return errors.New("json: exceeded max depth")
	}
	s.i++ // '{'
	for n := 0; ; n++ {
		if more, err := s.next('}', n); !more || err != nil {
			s.depth--
			return err
		}
		if s.peek() != '"' {
			return s.syntaxErr("looking for beginning of object key string")
		}
		var err error
		if s.key, err = s.str(s.key[:0]); err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.syntaxErr("after object key")
		}
		s.i++
		s.ws()
		if err := value(s.key); err != nil {
			return err
		}
	}
}

// array walks an array, calling value for each element.
func (s *jsonScan) array(value func() error) error {
	if s.depth++; s.depth > jsonMaxDepth {
		return errors.New("json: exceeded max depth")
	}
	s.i++ // '['
	for n := 0; ; n++ {
		if more, err := s.next(']', n); !more || err != nil {
			s.depth--
			return err
		}
		s.ws()
		if err := value(); err != nil {
			return err
		}
	}
}

// next is called before the n-th member of a container: it consumes the
// separating comma, or the closing byte (more = false).
func (s *jsonScan) next(end byte, n int) (more bool, err error) {
	c := s.peek()
	if c == end {
		s.i++
		return false, nil
	}
	if n == 0 {
		return true, nil
	}
	if c == ',' {
		s.i++
		if s.peek() != end { // no trailing comma
			return true, nil
		}
	}
	return false, s.syntaxErr("after container element")
}

// skip validates and passes over one value of any kind.
func (s *jsonScan) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		var err error
		s.key, err = s.str(s.key[:0])
		return err
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return s.syntaxErr("looking for beginning of value")
}

// number passes over -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *jsonScan) number() error {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return s.syntaxErr("in numeric literal")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.syntaxErr("after decimal point in numeric literal")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.syntaxErr("in exponent of numeric literal")
		}
	}
	return nil
}

// str decodes the string starting at s.b[s.i] == '"' and appends it to dst.
// It follows encoding/json: control characters are an error, an unpaired
// surrogate escape and each byte of invalid UTF-8 become U+FFFD.
func (s *jsonScan) str(dst []byte) ([]byte, error) {
	s.i++ // opening quote
	for {
		// Copy the run of plain bytes in one go.
		start := s.i
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c == '"' || c == '\\' || c < ' ' || c >= utf8.RuneSelf {
				break
			}
			s.i++
		}
		dst = append(dst, s.b[start:s.i]...)
		if s.i >= len(s.b) {
			return dst, s.syntaxErr("in string literal")
		}
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return dst, nil
		case c < ' ':
			return dst, s.syntaxErr("in string literal")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s.b[s.i:s.i+size]...)
			}
			s.i += size
		default: // backslash
			var err error
			if dst, err = s.escape(dst); err != nil {
				return dst, err
			}
		}
	}
}

// escape decodes the escape sequence at s.b[s.i] == '\\'.
func (s *jsonScan) escape(dst []byte) ([]byte, error) {
	if s.i+1 >= len(s.b) {
		s.i = len(s.b)
		return dst, s.syntaxErr("in string escape code")
	}
	c := s.b[s.i+1]
	if c == 'u' {
		r := s.u4(s.i)
		if r < 0 {
			s.i += 2
			return dst, s.syntaxErr("in \\u hexadecimal character escape")
		}
		s.i += 6
		if utf16.IsSurrogate(r) {
			if dec := utf16.DecodeRune(r, s.u4(s.i)); dec != utf8.RuneError {
				s.i += 6
				return utf8.AppendRune(dst, dec), nil
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(dst, r), nil
	}
	const from, to = `"\/bfnrt`, "\"\\/\b\f\n\r\t"
	k := strings.IndexByte(from, c)
	if k < 0 {
		s.i++
		return dst, s.syntaxErr("in string escape code")
	}
	s.i += 2
	return append(dst, to[k]), nil
}

// u4 reads the \uXXXX escape at s.b[at:], -1 if there is none.
func (s *jsonScan) u4(at int) rune {
	if at+6 > len(s.b) || s.b[at] != '\\' || s.b[at+1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s.b[at+2 : at+6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

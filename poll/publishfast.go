package poll

import "unicode/utf8"

// parsePublishFast decodes the common publish body — an object of the
// documented keys with plain values — without encoding/json: strings
// without escapes or control characters, arrays of such strings, true or
// false, and a non-negative expires_in without sign, fraction or
// exponent. Anything else (escapes, data, send_at, null, a repeated or
// unknown key, a syntax error) returns ok = false and goes through
// decodeJSON, which decides and words any error. What it accepts,
// decodeJSON accepts too and decodes to the same value (see
// publishfast_test.go).
func parsePublishFast(body []byte) (req publishBody, ok bool) {
	if !utf8.Valid(body) {
		return publishBody{}, false
	}
	p := fastParser{b: body}
	if !p.byte('{') {
		return publishBody{}, false
	}
	var seen uint16
	first := true
	for {
		if p.byte('}') {
			break
		}
		if !first && !p.byte(',') {
			return publishBody{}, false
		}
		first = false
		key, ok := p.str()
		if !ok || !p.byte(':') {
			return publishBody{}, false
		}
		var bit uint16
		switch key {
		case "to":
			bit = 1 << 0
			req.To, ok = p.strs()
		case "groups":
			bit = 1 << 1
			req.Groups, ok = p.strs()
		case "broadcast":
			bit = 1 << 2
			req.Broadcast, ok = p.boolean()
		case "type":
			bit = 1 << 3
			req.Type, ok = p.str()
		case "title":
			bit = 1 << 4
			req.Title, ok = p.str()
		case "body":
			bit = 1 << 5
			req.Body, ok = p.str()
		case "link":
			bit = 1 << 6
			req.Link, ok = p.str()
		case "level":
			bit = 1 << 7
			req.Level, ok = p.str()
		case "expires_in":
			bit = 1 << 8
			req.ExpiresIn, ok = p.uint()
		case "idempotency_key":
			bit = 1 << 9
			req.IdempotencyKey, ok = p.str()
		default: // data, send_at, or a key decodeJSON refuses
			return publishBody{}, false
		}
		if !ok || seen&bit != 0 {
			return publishBody{}, false
		}
		seen |= bit
	}
	p.space()
	return req, p.i == len(p.b)
}

// fastParser reads the JSON subset parsePublishFast accepts.
type fastParser struct {
	b []byte
	i int
}

// space skips JSON whitespace.
func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c after whitespace, if it is there.
func (p *fastParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters.
func (p *fastParser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

// strs reads an array of such strings ([] is an empty, non-nil slice).
func (p *fastParser) strs() ([]string, bool) {
	if !p.byte('[') {
		return nil, false
	}
	out := []string{}
	if p.byte(']') {
		return out, true
	}
	for {
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if p.byte(']') {
			return out, true
		}
		if !p.byte(',') {
			return nil, false
		}
	}
}

// boolean reads true or false.
func (p *fastParser) boolean() (bool, bool) {
	p.space()
	rest := p.b[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, p.delimited()
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, p.delimited()
	}
	return false, false
}

// uint reads digits without a leading zero (other than 0 itself) that fit
// an int64.
func (p *fastParser) uint() (int64, bool) {
	p.space()
	start := p.i
	var n int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		if n > (1<<63-1-9)/10 {
			return 0, false
		}
		n = n*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	if p.i == start || (p.b[start] == '0' && p.i-start > 1) {
		return 0, false
	}
	return n, p.delimited()
}

// delimited tells whether a literal ended where a value may end.
func (p *fastParser) delimited() bool {
	if p.i == len(p.b) {
		return true
	}
	switch p.b[p.i] {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

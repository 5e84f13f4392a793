package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// refPollResponse is what the load generator decoded with encoding/json
// before pollResult.parse replaced it; parse must agree with it.
type refPollResponse struct {
	Messages []struct {
		ID   string `json:"id"`
		Body string `json:"body"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
	More   bool   `json:"more"`
	Reset  bool   `json:"reset"`
}

// comparePollParse fails t when parse and json.Unmarshal disagree on data.
func comparePollParse(t *testing.T, p *pollResult, data []byte) {
	t.Helper()
	var want refPollResponse
	werr := json.Unmarshal(data, &want)
	gerr := p.parse(data)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("input %q:\n encoding/json error: %v\n parse error: %v", data, werr, gerr)
	}
	if werr != nil {
		return
	}
	var bodies []string
	for i := range p.bodies {
		bodies = append(bodies, string(p.body(i)))
	}
	var wantBodies []string
	for _, m := range want.Messages {
		wantBodies = append(wantBodies, m.Body)
	}
	if !slices.Equal(bodies, wantBodies) || string(p.cursorBytes()) != want.Cursor ||
		p.more != want.More || p.reset != want.Reset {
		t.Fatalf("input %q:\n got bodies %q cursor %q more %v reset %v\nwant bodies %q cursor %q more %v reset %v",
			data, bodies, p.cursorBytes(), p.more, p.reset, wantBodies, want.Cursor, want.More, want.Reset)
	}
}

var pollParseCases = []string{
	// What the server writes (json.Encoder, with its trailing newline).
	`{"messages":[{"id":"1-0.u","source":"user","type":"notification","title":"load","body":"u1|0|1700000000000000000","level":"info","created_at":"2024-01-01T00:00:00.000Z","expires_at":null,"read":false}],"cursor":"1700000000000-0","unread":1,"more":false,"reset":false}` + "\n",
	`{"messages":[],"cursor":"0-0","unread":0,"more":false,"reset":true}`,
	// Field order, whitespace, nested data, escapes.
	` { "reset" : true , "cursor" : "a\"b\\c\/d" , "more" : true , "messages" : [ { "data" : { "body" : "not this", "x" : [1, -2.5e+3, {"y": null}, "]}"] } , "body" : "this" } ] } `,
	`{"messages":[{"body":"\u003cb\u003e \u00e9 \ud83d\ude00 \b\f\n\r\t"}],"cursor":"c"}`,
	`{"messages":[{"body":"lone \ud83d surrogate \udc00 and \ud83d\u0041"}],"cursor":"c"}`,
	"{\"messages\":[{\"body\":\"raw é 😀 and bad \xff\xfe utf-8 \xed\xa0\x80\"}],\"cursor\":\"c\"}",
	// Keys match case-insensitively; escaped keys; null leaves a field alone.
	`{"MESSAGES":[{"Body":"x"},null,{"bOdY":null},{"\u0062ody":"y"}],"Cursor":"k","MORE":null,"reset":null}`,
	`{"messages":null,"cursor":null}`,
	`{"cursor":"first","cursor":"second","messages":[{"body":"a","body":"b"}]}`,
	`{"messages":[{"body":"a"},{"body":"b"}],"messages":[{"id":"x"}]}`,
	`null`, `{}`, `[]`, `"x"`, `1`,
	// Wrong types.
	`{"messages":{}}`, `{"messages":[1]}`, `{"messages":[{"body":1}]}`, `{"messages":[{"id":true}]}`,
	`{"cursor":1}`, `{"more":"true"}`, `{"reset":0}`, `{"messages":"[]"}`,
	// Syntax errors.
	``, ` `, `{`, `{"cursor":"x"`, `{"cursor":"x",}`, `{"messages":[,]}`, `{"messages":[{"body":"a"},]}`,
	`{"cursor" "x"}`, `{cursor:"x"}`, `{"cursor":'x'}`, `{"cursor":"x"} x`, `{"cursor":"x"}{}`,
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":+1}`, `{"a":tru}`, `{"a":nul}`, `{"a":truex}`,
	`{"cursor":"a\x"}`, `{"cursor":"a\u12"}`, `{"cursor":"a\u12G4"}`, `{"cursor":"a\'"}`, "{\"cursor\":\"a\tb\"}",
	`{"cursor":"unterminated}`, `{"a":[1,2}`, `{"a":{"b":1]}`, "\ufeff{}",
	// A message body that looks like JSON.
	`{"messages":[{"body":"{\"messages\":[{\"body\":\"inner\"}]}"}],"cursor":"c"}`,
}

func TestPollParseMatchesEncodingJSON(t *testing.T) {
	var p pollResult
	for _, c := range pollParseCases {
		comparePollParse(t, &p, []byte(c))
	}
	deep := strings.Repeat("[", jsonMaxDepth-1) + strings.Repeat("]", jsonMaxDepth-1)
	comparePollParse(t, &p, []byte(`{"x":`+deep+`,"cursor":"c"}`)) // depth 10000: allowed
	comparePollParse(t, &p, []byte(`{"x":[`+deep+`],"cursor":"c"}`))
}

// TestPollParseRandom compares parse with encoding/json on generated poll
// answers and on damaged copies of them.
func TestPollParseRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var p pollResult
	var messages, damagedOK int
	for range 3000 {
		doc := randomPollJSON(rng)
		comparePollParse(t, &p, doc)
		if err := p.parse(doc); err != nil {
			t.Fatalf("generated answer %q: %v", doc, err)
		}
		messages += len(p.bodies)
		for range 3 {
			bad := damage(rng, doc)
			comparePollParse(t, &p, bad)
			if p.parse(bad) == nil {
				damagedOK++
			}
		}
	}
	// The generator must exercise both outcomes.
	if messages < 1000 || damagedOK < 100 || damagedOK > 8000 {
		t.Fatalf("generator coverage: %d messages, %d of 9000 damaged answers still valid", messages, damagedOK)
	}
}

func FuzzPollParse(f *testing.F) {
	for _, c := range pollParseCases {
		f.Add([]byte(c))
	}
	var p pollResult
	f.Fuzz(func(t *testing.T, data []byte) { comparePollParse(t, &p, data) })
}

// randomPollJSON writes a poll answer with the fields in random order,
// random whitespace, unknown fields of every shape and strings that need
// escaping.
func randomPollJSON(rng *rand.Rand) []byte {
	var b strings.Builder
	ws := func() {
		for range rng.IntN(3) {
			b.WriteByte(" \t\r\n"[rng.IntN(4)])
		}
	}
	str := func() {
		const pieces = "ab|0123456789\"\\/\b\f\n\r\t\x00\x1f<>&é😀\u2028\xff"
		var s strings.Builder
		for range rng.IntN(12) {
			r := []rune(pieces)
			s.WriteRune(r[rng.IntN(len(r))])
		}
		enc, _ := json.Marshal(s.String())
		switch rng.IntN(4) {
		case 0: // escape everything as \uXXXX, including surrogate pairs
			b.WriteByte('"')
			for _, u := range utf16Units(s.String()) {
				fmt.Fprintf(&b, `\u%04x`, u)
			}
			b.WriteByte('"')
		case 1: // unescaped UTF-8, possibly invalid
			b.WriteByte('"')
			for _, c := range []byte(s.String()) {
				switch {
				case c == '"' || c == '\\':
					b.WriteByte('\\')
					b.WriteByte(c)
				case c < 0x20:
					fmt.Fprintf(&b, `\u%04X`, c)
				default:
					b.WriteByte(c)
				}
			}
			b.WriteByte('"')
		default:
			b.Write(enc)
		}
	}
	var value func(depth int)
	value = func(depth int) {
		ws()
		switch k := rng.IntN(8); {
		case k == 0 && depth < 4:
			b.WriteByte('{')
			for i := range rng.IntN(3) {
				if i > 0 {
					b.WriteByte(',')
				}
				ws()
				str()
				ws()
				b.WriteByte(':')
				value(depth + 1)
			}
			b.WriteByte('}')
		case k == 1 && depth < 4:
			b.WriteByte('[')
			for i := range rng.IntN(3) {
				if i > 0 {
					b.WriteByte(',')
				}
				value(depth + 1)
			}
			b.WriteByte(']')
		case k == 2:
			b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
		case k == 3:
			b.WriteString([]string{"0", "-1", "12.5", "-0.0e+10", "3E-2", "1e400"}[rng.IntN(6)])
		default:
			str()
		}
		ws()
	}
	key := func(name string) {
		if rng.IntN(5) == 0 {
			name = strings.ToUpper(name[:1]) + name[1:]
		}
		b.WriteByte('"')
		b.WriteString(name)
		b.WriteByte('"')
		ws()
		b.WriteByte(':')
		ws()
	}
	message := func() {
		if rng.IntN(10) == 0 {
			b.WriteString("null")
			return
		}
		b.WriteByte('{')
		fields := rng.Perm(4)
		for i, f := range fields {
			if i > 0 {
				b.WriteByte(',')
			}
			ws()
			switch f {
			case 0:
				key("id")
				str()
			case 1:
				key("body")
				if rng.IntN(8) == 0 {
					b.WriteString("null")
				} else {
					str()
				}
			case 2:
				key("data")
				value(1)
			default:
				key("created_at")
				str()
			}
		}
		b.WriteByte('}')
	}
	b.WriteByte('{')
	for i, f := range rng.Perm(6) {
		if i > 0 {
			b.WriteByte(',')
		}
		ws()
		switch f {
		case 0:
			key("messages")
			b.WriteByte('[')
			for j := range rng.IntN(4) {
				if j > 0 {
					b.WriteByte(',')
				}
				ws()
				message()
				ws()
			}
			b.WriteByte(']')
		case 1:
			key("cursor")
			str()
		case 2:
			key("more")
			b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
		case 3:
			key("reset")
			b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
		case 4:
			key("unread")
			value(1)
		default:
			key("extra")
			value(0)
		}
		ws()
	}
	b.WriteByte('}')
	return []byte(b.String())
}

func utf16Units(s string) []uint16 {
	var out []uint16
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			out = append(out, uint16(0xd800+(r>>10)), uint16(0xdc00+(r&0x3ff)))
		} else {
			out = append(out, uint16(r))
		}
	}
	return out
}

// damage truncates the document, or replaces, inserts or deletes one byte.
func damage(rng *rand.Rand, doc []byte) []byte {
	d := slices.Clone(doc)
	i := rng.IntN(len(d))
	const junk = "{}[],:\"\\ 0-eE.tfnu\x00\xff"
	switch rng.IntN(4) {
	case 0:
		return d[:i]
	case 1:
		d[i] = junk[rng.IntN(len(junk))]
		return d
	case 2:
		return slices.Insert(d, i, junk[rng.IntN(len(junk))])
	}
	return slices.Delete(d, i, i+1)
}

func TestPollParseAllocs(t *testing.T) {
	data := []byte(pollParseCases[0])
	var p pollResult
	if err := p.parse(data); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = p.parse(data) }); n != 0 {
		t.Errorf("parse allocates %v times per answer, want 0", n)
	}
}

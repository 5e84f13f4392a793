package poll

import (
	"bytes"
	"errors"
	"regexp"

	"github.com/tdewolff/minify/v2"
	"github.com/tdewolff/minify/v2/js"
	"github.com/tdewolff/parse/v2"
	jsparse "github.com/tdewolff/parse/v2/js"
)

// minifyES5 minifies an ES5 script so that the result is ES5 as well.
// The minifier's Version option does not cover every rewrite: whatever it
// says, Math.pow(a, b) comes out as a**b (ES2016), so Math.pow is called
// by index, which it leaves a call; and {a: a} comes out as {a} (ES2015,
// also where renaming makes the two names equal), so such properties are
// spelled out again afterwards. scripts/test.sh runs es-check on the result.
func minifyES5(src []byte) ([]byte, error) {
	src = bytes.ReplaceAll(src, []byte("Math.pow("), []byte(`Math["pow"](`))
	var out bytes.Buffer
	if err := (&js.Minifier{Version: 5}).Minify(minify.New(), &out, bytes.NewReader(src), nil); err != nil {
		return nil, err
	}
	return expandShorthand(out.Bytes())
}

// shorthand matches what may be a shorthand property {a} in minified
// code: a lone name after '{' or ',' and before ',' or '}'.
var shorthand = regexp.MustCompile(`[{,]([A-Za-z_$][A-Za-z0-9_$]*)[,}]`)

// expandShorthand writes every shorthand property {a} of minified code as
// {a:a}. The text match also hits what is no property (a block's last
// expression, text in a string), so each change is kept only if the
// script still parses to the same program: the parser's printer writes
// a:a and {a} alike, and anything else differently.
func expandShorthand(min []byte) ([]byte, error) {
	program := func(b []byte) (string, bool) {
		ast, err := jsparse.Parse(parse.NewInputBytes(b), jsparse.Options{})
		if err != nil {
			return "", false
		}
		return ast.JSString(), true
	}
	want, ok := program(min)
	if !ok {
		return nil, errors.New("the minified script does not parse")
	}
	out := min
	for at := 0; ; {
		m := shorthand.FindSubmatchIndex(out[at:])
		if m == nil {
			return out, nil
		}
		nameStart, nameEnd := at+m[2], at+m[3]
		name := out[nameStart:nameEnd]
		try := make([]byte, 0, len(out)+len(name)+1)
		try = append(append(append(append(try, out[:nameEnd]...), ':'), name...), out[nameEnd:]...)
		if got, ok := program(try); ok && got == want {
			out, at = try, nameEnd+1+len(name) // the ',' after it may start the next
		} else {
			at = nameStart
		}
	}
}

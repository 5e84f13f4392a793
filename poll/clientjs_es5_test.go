package poll

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// duk finds duktape's command-line engine (ES5.1). Outside CI a machine
// without it skips; in CI (.ci/run installs it) its absence fails.
func duk(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("duk")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("duk (Debian package duktape) not found: %v", err)
		}
		t.Skipf("duk (Debian package duktape) not found: %v", err)
	}
	return path
}

// runInDuk runs client.js in duk after testdata/duk/shim.js (a browser
// with scripted XMLHttpRequest, storage and virtual timers), wrapped so
// that each tab loads its own copy, then the inbox scenario.
func runInDuk(t *testing.T, client []byte) (string, error) {
	t.Helper()
	var prog bytes.Buffer
	for _, part := range []string{"shim.js", "", "scenario.js"} {
		if part == "" {
			prog.WriteString("\nfunction __load(window) {\n")
			prog.Write(client)
			prog.WriteString("\nreturn window.Pollbox;\n}\n")
			continue
		}
		b, err := os.ReadFile(filepath.Join("testdata", "duk", part))
		if err != nil {
			t.Fatal(err)
		}
		prog.Write(b)
	}
	file := filepath.Join(t.TempDir(), "run.js")
	if err := os.WriteFile(file, prog.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, duk(t), file).CombinedOutput()
	return string(out), err
}

func clientSource(t *testing.T) []byte {
	t.Helper()
	src, err := static.ReadFile("static/client.js")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestClientJSRunsInES5Engine: client.js, as written and as served
// (minified), runs in an ES5.1 engine without ES2015+ built-ins, and its
// inbox state follows the scenario (history, live messages relayed to a
// second tab, reads here and on another device, revoke, loadMore, reset,
// a reload that resumes its cursor).
func TestClientJSRunsInES5Engine(t *testing.T) {
	t.Parallel()
	src := clientSource(t)
	min, err := minifyES5(src)
	if err != nil {
		t.Fatal(err)
	}
	for name, code := range map[string][]byte{"source": src, "minified": min} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := runInDuk(t, code)
			if err != nil || !strings.Contains(out, "PASS scenario") {
				t.Fatalf("duk: %v\n%s", err, out)
			}
		})
	}
}

// TestClientJSES5EngineCatchesES2015: the engine check is no formality: a
// copy of client.js that uses one ES2015+ feature, on a path the scenario
// runs, fails it.
func TestClientJSES5EngineCatchesES2015(t *testing.T) {
	t.Parallel()
	src := string(clientSource(t))
	const anchor = "function when(m) { return String(m.created_at || ''); }"
	if !strings.Contains(src, anchor) {
		t.Fatalf("client.js lacks %q, where the broken copies change it", anchor)
	}
	broken := map[string]string{
		"Object.assign": "function when(m) { return String(Object.assign({}, m).created_at || ''); }",
		"String.prototype.includes": "function when(m) { return String(m.created_at || '').includes('Z') ? " +
			"String(m.created_at) : ''; }",
		"Promise":        "function when(m) { Promise.resolve(1); return String(m.created_at || ''); }",
		"Array.from":     "function when(m) { return Array.from([String(m.created_at || '')])[0]; }",
		"arrow function": "var when = (m) => String(m.created_at || '');",
	}
	for name, repl := range broken {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := runInDuk(t, []byte(strings.Replace(src, anchor, repl, 1)))
			if err == nil || strings.Contains(out, "PASS scenario") {
				t.Fatalf("a client.js using %s passed the ES5 engine:\n%s", name, out)
			}
			t.Logf("%s: %s", name, firstLine(out))
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

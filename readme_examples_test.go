package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fwExampleDirs hold the front-end examples that README.md quotes and
// frameworks_test.go runs.
var fwExampleDirs = []string{"examples/plain", "examples/vue2-eladmin", "examples/vue3", "examples/react"}

// TestReadmeQuotesExamples: every front-end example is quoted in README.md
// byte for byte (as a js code block, its path named before it) and run by
// the framework tests; the Browser client section has no other framework
// snippet, which could drift from what is tested.
func TestReadmeQuotesExamples(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	tested := map[string]bool{}
	for _, st := range fwStacks {
		tested[st.example] = true
	}
	quoted := map[string]bool{}
	for _, dir := range fwExampleDirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.js"))
		if err != nil || len(files) == 0 {
			t.Errorf("%s: no example (%v)", dir, err)
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			block := "```js\n" + string(src) + "```\n"
			i := strings.Index(readme, block)
			switch {
			case i < 0:
				t.Errorf("README.md does not quote %s verbatim as a js code block", f)
			case !strings.Contains(readme[max(0, i-400):i], "`"+f+"`"):
				t.Errorf("README.md quotes %s without naming it just before", f)
			}
			if !tested[f] {
				t.Errorf("%s is not run by any stack of the framework tests", f)
			}
			quoted[string(src)] = true
		}
	}

	start := strings.Index(readme, "\n## Browser client\n")
	if start < 0 {
		t.Fatal("README.md has no Browser client section")
	}
	section := readme[start+1:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	framework := regexp.MustCompile(`\bVue\b|\bReact\b|from 'vue'|from 'react'|\bELEMENT\b`)
	blocks := regexp.MustCompile("(?s)```(?:js|javascript|html|vue|jsx)\n(.*?)```\n").FindAllStringSubmatch(section, -1)
	for _, m := range blocks {
		if framework.MatchString(m[1]) && !quoted[m[1]] {
			t.Errorf("README.md's Browser client section has a framework snippet that is not an example file:\n%s", m[1])
		}
	}
}

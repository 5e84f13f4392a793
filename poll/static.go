package poll

import (
	"bytes"
	"embed"
	"encoding/json"
	"net/http"
)

//go:embed static
var static embed.FS

func handleClientJS() http.Handler {
	js, _ := static.ReadFile("static/client.js")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/javascript; charset=utf-8")
		_, _ = w.Write(js)
	})
}

// devTokensMarker is replaced in the demo page by the zero-config dev tokens.
const devTokensMarker = "/*POLLBOX_DEV_TOKENS*/null"

func handleDemo(devTokens map[string]string) http.Handler {
	page, _ := static.ReadFile("static/demo.html")
	if len(devTokens) > 0 {
		js, _ := json.Marshal(devTokens)
		page = bytes.Replace(page, []byte(devTokensMarker), js, 1)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
}

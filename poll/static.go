package poll

import (
	"bytes"
	"embed"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
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

// handleDemo serves the demo page. The dev tokens go to loopback clients
// only, judged by the connection's address (headers can be forged), so that
// a dev instance listening on a network hands no publisher token to it.
func handleDemo(devTokens map[string]string) http.Handler {
	page, _ := static.ReadFile("static/demo.html")
	withTokens := page
	if len(devTokens) > 0 {
		js, _ := json.Marshal(devTokens)
		withTokens = bytes.Replace(page, []byte(devTokensMarker), js, 1)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if isLoopback(r.RemoteAddr) {
			_, _ = w.Write(withTokens)
		} else {
			_, _ = w.Write(page)
		}
	})
}

// isLoopback reports whether a RemoteAddr (host:port) is a loopback address.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

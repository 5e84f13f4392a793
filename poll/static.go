package poll

import (
	"bytes"
	"embed"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

//go:embed static
var static embed.FS

// clientScript is /client.js as served, built once: minified (the source
// stays readable and needs no build step) and gzipped.
type clientScript struct {
	*asset
	// version names these bytes: the hash in the plain ETag, and the v of
	// /client.js?v=…, the URL that may be cached for good.
	version string
}

var clientJS = sync.OnceValue(func() clientScript {
	src, _ := static.ReadFile("static/client.js")
	min, err := minifyES5(src)
	if err != nil {
		// The source works as it is; TestClientJSIsMinifiedGzippedAndCached
		// keeps the minifier working.
		min = src
	}
	a := newAsset("application/javascript; charset=utf-8", min, true)
	return clientScript{asset: a, version: strings.Trim(a.etag, `"`)}
})

// Cache lifetimes of /client.js: the versioned URL never changes its
// bytes; the plain one is revalidated (a 304 by its ETag) after a few
// minutes, so a new release reaches every page soon.
const (
	cacheForGood    = "public, max-age=31536000, immutable"
	cacheClientJS   = "public, max-age=300"
	cacheOtherBuild = "no-cache"
)

func handleClientJS() http.Handler {
	cj := clientJS()
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var err error
		v := rawQuery(r.URL.RawQuery).value("v", &err)
		if err != nil {
			return err
		}
		cc := cacheClientJS
		switch v {
		case "":
		case cj.version:
			cc = cacheForGood
		default:
			// A page of another release asks (a rolling deploy, instances
			// of two versions behind one name): it gets this release's
			// script, which must not stay cached under the other's name.
			cc = cacheOtherBuild
		}
		cj.serve(w, r, cc)
		return nil
	})
}

// Markers the server replaces in the demo and admin pages: the
// zero-config dev tokens, and the version of client.js (so that the page
// loads the versioned URL, cached for good).
const (
	devTokensMarker = "/*POLLBOX_DEV_TOKENS*/null"
	clientJSMarker  = "client.js?v=POLLBOX_CLIENT_VERSION"
)

// handleDemo serves the demo page.
func handleDemo(devTokens map[string]string) http.Handler {
	return handlePage("static/demo.html", devTokens)
}

// handleAdmin serves the notice management page (/admin): compose, list,
// read counts, cancel and revoke, all through client.js's publisher.
func handleAdmin(devTokens map[string]string) http.Handler {
	return handlePage("static/admin.html", devTokens)
}

// handlePage serves a page of static/ with its markers replaced. The dev
// tokens go to loopback clients only, judged by the connection's address
// (headers can be forged), so that a dev instance listening on a network
// hands no publisher token to it. Like every answer it is no-store: the
// page carries tokens and names the current client.js.
func handlePage(name string, devTokens map[string]string) http.Handler {
	page, _ := static.ReadFile(name)
	withTokens := page
	if len(devTokens) > 0 {
		js, _ := json.Marshal(devTokens)
		withTokens = bytes.Replace(page, []byte(devTokensMarker), js, 1)
	}
	page = bytes.ReplaceAll(page, []byte(clientJSMarker), []byte("client.js?v="+clientJS().version))
	withTokens = bytes.ReplaceAll(withTokens, []byte(clientJSMarker), []byte("client.js?v="+clientJS().version))
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

func handleFavicon() http.Handler {
	icon := newAsset("image/x-icon", favicon(), false)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		icon.serve(w, r, "public, max-age=86400")
	})
}

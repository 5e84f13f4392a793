package poll

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

// asset is a static file as served: its bytes, optionally a gzipped copy
// made once at start, and a strong ETag for each (a hash of the bytes
// sent, so each encoding has its own).
//
// Assets are the documented exception to Cache-Control: no-store: they
// are the same for everyone and change only with a release.
type asset struct {
	contentType  string
	body, gz     []byte
	etag, gzETag string
}

func newAsset(contentType string, body []byte, compress bool) *asset {
	a := &asset{contentType: contentType, body: body, etag: etagOf(body)}
	if compress {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		a.gz, a.gzETag = buf.Bytes(), etagOf(buf.Bytes())
	}
	return a
}

func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:10]) + `"`
}

// serve answers with the asset, gzipped when the client accepts that, or
// 304 when If-None-Match names what it would send. cacheControl replaces
// the no-store that every other answer carries. HEAD gets the headers
// only: net/http sends no body for it.
func (a *asset) serve(w http.ResponseWriter, r *http.Request, cacheControl string) {
	h := w.Header()
	h.Set("Cache-Control", cacheControl)
	body, etag := a.body, a.etag
	gzipped := false
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, etag, gzipped = a.gz, a.gzETag, true
		}
	}
	h.Set("ETag", etag)
	if etagListed(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.contentType)
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// acceptsGzip reads Accept-Encoding: gzip with a q above 0, or else "*"
// with a q above 0.
func acceptsGzip(values []string) bool {
	gzipQ, starQ := -1.0, -1.0
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			q := 1.0
			for _, p := range strings.Split(params, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil {
						f = 0
					}
					q = f
				}
			}
			switch coding = strings.TrimSpace(coding); {
			case strings.EqualFold(coding, "gzip"):
				gzipQ = q
			case coding == "*":
				starQ = q
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}

// etagListed reports whether an If-None-Match header lists etag, or is
// "*". The comparison is weak, as RFC 9110 says for If-None-Match.
func etagListed(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == etag || t == "*" {
				return true
			}
		}
	}
	return false
}

package poll

import (
	"net/http"
	"strconv"
)

// openAPIDoc is the OpenAPI 3.1 document of the HTTP API, written by hand
// next to the handlers it describes; the tests check every answer they
// receive against it.
var openAPIDoc, _ = static.ReadFile("static/openapi.json")

// OpenAPI returns the OpenAPI 3.1 document (JSON) that GET /openapi.json
// serves. Callers must not modify it.
func OpenAPI() []byte { return openAPIDoc }

func handleOpenAPI() http.Handler {
	size := strconv.Itoa(len(openAPIDoc))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = jsonContentType
		h["Content-Length"] = []string{size}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(openAPIDoc)
		}
	})
}

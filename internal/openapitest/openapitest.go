// Package openapitest checks pollbox's HTTP answers against its OpenAPI
// document (poll/static/openapi.json). Tests wrap their HTTP client's
// transport with it, so every answer a test receives is checked: status,
// headers and body. It is imported by tests only, which keeps kin-openapi
// out of the pollbox binary.
package openapitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks answers against one OpenAPI document.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	// Answers to requests the document has no operation for: an unknown
	// path (404), a known path with another method (405), a CORS
	// preflight (204, or 403 for an origin that is not allowed). A
	// malformed path is a 400 whatever it names.
	notFound, methodNotAllowed, preflight *openapi3.Operation
}

// New loads and validates the document (an OpenAPI 3.1 JSON text).
func New(doc []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := t.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	if !t.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("the document is OpenAPI %s, want 3.1", t.OpenAPI)
	}
	r, err := gorillamux.NewRouter(t)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	v := &Validator{doc: t, router: r}
	op := func(codes ...string) (*openapi3.Operation, error) {
		o := &openapi3.Operation{Responses: openapi3.NewResponses()}
		for i := 0; i+1 < len(codes); i += 2 {
			ref := t.Components.Responses[codes[i+1]]
			if ref == nil {
				return nil, fmt.Errorf("components.responses has no %s", codes[i+1])
			}
			o.Responses.Set(codes[i], ref)
		}
		return o, nil
	}
	if v.notFound, err = op("400", "BadRequest", "404", "NotFound", "503", "Unavailable"); err != nil {
		return nil, err
	}
	if v.methodNotAllowed, err = op("400", "BadRequest", "405", "MethodNotAllowed", "503", "Unavailable"); err != nil {
		return nil, err
	}
	if v.preflight, err = op("204", "Preflight", "403", "Forbidden", "404", "NotFound", "503", "Unavailable"); err != nil {
		return nil, err
	}
	return v, nil
}

// Doc is the loaded document.
func (v *Validator) Doc() *openapi3.T { return v.doc }

// Check validates one answer (status, header and the whole body) to req.
// A status the operation does not list is a mismatch.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req}
	if req.Method == http.MethodHead {
		// kin-openapi does not check answers to HEAD; check them as the
		// GET they stand for, less the body, which must be empty.
		if len(body) != 0 {
			return fmt.Errorf("HEAD %s: answer has a body of %d bytes", req.URL.Path, len(body))
		}
		opts.ExcludeResponseBody = true
		in.Request = req.Clone(req.Context())
		in.Request.Method = http.MethodGet
	}
	route, params, err := v.router.FindRoute(in.Request)
	switch {
	case req.Method == http.MethodOptions:
		route = &routers.Route{Spec: v.doc, Path: req.URL.Path, Method: req.Method, Operation: v.preflight}
	case errors.Is(err, routers.ErrPathNotFound):
		route = &routers.Route{Spec: v.doc, Path: req.URL.Path, Method: req.Method, Operation: v.notFound}
	case errors.Is(err, routers.ErrMethodNotAllowed):
		route = &routers.Route{Spec: v.doc, Path: req.URL.Path, Method: req.Method, Operation: v.methodNotAllowed}
	case err != nil:
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	in.Route, in.PathParams = route, params
	switch status {
	case http.StatusNotModified, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// kin-openapi passes these unchecked; at least the status must be listed.
		if route.Operation.Responses.Status(status) == nil {
			return fmt.Errorf("%s %s answered %d, a status the document does not list", req.Method, req.URL.Path, status)
		}
	}
	res := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
	res.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), res); err != nil {
		return fmt.Errorf("%s %s answered %d, not as documented: %w\nbody: %s", req.Method, req.URL.Path, status, err, clip(body))
	}
	return nil
}

func clip(b []byte) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes, not text)", len(b))
	}
	b = bytes.TrimSpace(b)
	if len(b) > 400 {
		return string(b[:400]) + "…"
	}
	return string(b)
}

// Transport is an http.RoundTripper that checks every answer it carries
// and hands each mismatch to Report. The answer reaches the caller
// unchanged (its body is read in full first, which every pollbox answer
// allows: none is streamed).
type Transport struct {
	Base      http.RoundTripper // nil: http.DefaultTransport
	Validator *Validator
	Report    func(error)
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	res, err := base.RoundTrip(req)
	if err != nil {
		return res, err
	}
	body, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	if rerr != nil {
		// A cut answer (the server went away mid-body) is the test's to
		// judge, not the document's: hand it on as it came.
		res.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
		return res, nil
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.Validator.Check(req, res.StatusCode, res.Header, body); err != nil {
		t.Report(err)
	}
	return res, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Wrap returns a client like hc whose every answer is checked against the
// document; a mismatch fails the test. Answers that arrive after the test
// has ended are not reported: t no longer accepts errors then.
func Wrap(t testing.TB, hc *http.Client, doc []byte) *http.Client {
	t.Helper()
	v, err := New(doc)
	if err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	c := *hc
	c.Transport = &Transport{Base: hc.Transport, Validator: v, Report: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Errorf("OpenAPI: %v", err)
		}
	}}
	return &c
}

package poll

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// TestStoppingDrain: once the stop channel is closed, every answer closes
// its connection; everything but /healthz is a 503 whose Retry-After
// reaches a second past the end of the drain.
func TestStoppingDrain(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		stopped   bool
		drainLeft time.Duration // 0: no DrainEnd
		path      string
		status    int
		retry     int // Retry-After, 0 = none
		closes    bool
	}{
		{"running", false, 0, "/v1/unread", http.StatusTeapot, 0, false},
		{"running readyz", false, 0, "/readyz", http.StatusTeapot, 0, false},
		{"stopped", true, 0, "/v1/unread", http.StatusServiceUnavailable, 1, true},
		{"stopped readyz", true, 0, "/readyz", http.StatusServiceUnavailable, 1, true},
		{"stopped healthz", true, 0, "/healthz", http.StatusTeapot, 0, true},
		{"draining", true, 2500 * time.Millisecond, "/v1/publish", http.StatusServiceUnavailable, 4, true},
		{"draining readyz", true, 2500 * time.Millisecond, "/readyz", http.StatusServiceUnavailable, 4, true},
		{"draining healthz", true, 2500 * time.Millisecond, "/healthz", http.StatusTeapot, 0, true},
		{"drain nearly over", true, 100 * time.Millisecond, "/v1/poll", http.StatusServiceUnavailable, 2, true},
		{"drain over", true, -time.Second, "/v1/poll", http.StatusServiceUnavailable, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stop := make(chan struct{})
			if c.stopped {
				close(stop)
			}
			var drainEnd func() time.Time
			if c.drainLeft != 0 {
				end := time.Now().Add(c.drainLeft)
				drainEnd = func() time.Time { return end }
			}
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
			rec := httptest.NewRecorder()
			stopping(stop, drainEnd, next).ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
			if rec.Code != c.status {
				t.Errorf("status %d, want %d", rec.Code, c.status)
			}
			want := ""
			if c.retry > 0 {
				want = strconv.Itoa(c.retry)
			}
			if got := rec.Header().Get("Retry-After"); got != want {
				t.Errorf("Retry-After %q, want %q", got, want)
			}
			if got := rec.Header().Get("Connection") == "close"; got != c.closes {
				t.Errorf("Connection: close is %v, want %v", got, c.closes)
			}
		})
	}
}

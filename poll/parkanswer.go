package poll

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"pollbox/inbox"
)

// parkedWriteTimeout bounds writing a parked poll's answer: a client
// that stopped reading loses its connection, not a goroutine.
const parkedWriteTimeout = 10 * time.Second

// answer writes a woken poll's answer (or error) on its connection and
// hands the connection back to the server, or closes it.
func (rec *parked) answer(res inbox.PollResult, err error) {
	rec.end()
	d := rec.pk.d
	out := &bufferedResponse{header: rec.header}
	sr := &statusRecorder{ResponseWriter: out, status: http.StatusOK}
	req := rec.request()
	if err != nil {
		writeError(sr, req, err)
	} else {
		d.writePollAnswer(sr, res)
	}
	closing := rec.close
	select {
	case <-d.cfg.Stop:
		closing = true
	default:
	}
	_ = rec.conn.SetWriteDeadline(time.Now().Add(parkedWriteTimeout))
	_, werr := rec.conn.Write(out.serialize(sr.status, closing))
	if werr != nil || closing {
		_ = rec.conn.Close()
	} else {
		rec.pk.ln.handBack(rec.conn)
	}
	logRequest(*rec.sc.base, d.metrics, rec.sc, req, sr, true)
}

// bufferedResponse collects an answer written through the usual
// handlers' code, to be sent on a hijacked connection.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// serialize returns the HTTP/1.1 response.
func (b *bufferedResponse) serialize(status int, closing bool) []byte {
	h := b.header
	h.Del("Content-Length")
	if closing {
		h.Set("Connection", "close")
	}
	out := make([]byte, 0, 256+b.body.Len())
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(status)...)
	out = append(out, "\r\nDate: "...)
	out = time.Now().UTC().AppendFormat(out, http.TimeFormat)
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(b.body.Len()), 10)
	out = append(out, "\r\n"...)
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, k...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
	}
	out = append(out, "\r\n"...)
	return append(out, b.body.Bytes()...)
}

// pollURL is the URL of a poll with the given query, for the log.
func pollURL(rawQuery string) *url.URL {
	return &url.URL{Path: "/v1/poll", RawQuery: rawQuery}
}

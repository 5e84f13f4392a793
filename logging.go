package main

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

func newLogger(cfg *config, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		return zerolog.Logger{}, fmt.Errorf("log-level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	switch cfg.LogFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Logger{}, fmt.Errorf("log-format %q: want json or console", cfg.LogFormat)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// newStdLogger routes net/http's own error log through zerolog.
func newStdLogger(log zerolog.Logger) *stdlog.Logger {
	return stdlog.New(zerologWriter{log}, "", 0)
}

type zerologWriter struct{ log zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	z.log.Warn().Str("source", "http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// redisLogger routes go-redis's own log lines through zerolog. While Redis
// is down every failed dial logs a line, hundreds a second under load; so
// after a burst of redisLogBurst it lets one a second through and reports
// how many it held back.
type redisLogger struct {
	log        atomic.Pointer[zerolog.Logger]
	limit      *rate.Limiter
	suppressed atomic.Int64
}

const redisLogBurst = 10

var (
	redisLog     = &redisLogger{limit: rate.NewLimiter(1, redisLogBurst)}
	redisLogOnce sync.Once
)

// setRedisLogger sends go-redis's lines to log. go-redis has one logger for
// the whole process, so it is installed once; the last run's logger (tests
// start several in one process) receives the lines.
func setRedisLogger(log zerolog.Logger) {
	redisLog.log.Store(&log)
	redisLogOnce.Do(func() { redis.SetLogger(redisLog) })
}

// Printf implements go-redis's logging interface.
func (r *redisLogger) Printf(_ context.Context, format string, v ...any) {
	if !r.limit.Allow() {
		if r.suppressed.Add(1) == 1 {
			// Report the count once the limiter would let a line through.
			time.AfterFunc(time.Second, r.flush)
		}
		return
	}
	r.log.Load().Warn().Str("source", "redis").Msg(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}

// flush logs how many lines were held back since the last flush.
func (r *redisLogger) flush() {
	if n := r.suppressed.Swap(0); n > 0 {
		r.log.Load().Warn().Str("source", "redis").Int64("suppressed", n).
			Msgf("%d more go-redis log lines suppressed (at most one a second after a burst of %d)", n, redisLogBurst)
	}
}

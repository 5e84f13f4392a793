package inbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors returned by the store. Callers map them to their own
// error shapes with errors.Is; the wrapped text is for logs only.
var (
	// ErrBadCursor: the cursor is malformed, or names a stream the reader
	// may not read.
	ErrBadCursor = errors.New("bad cursor")
	// ErrBadID: a message id is malformed.
	ErrBadID = errors.New("bad message id")
	// ErrBadName: a user or group name is outside the allowed alphabet or length.
	ErrBadName = errors.New("bad name")
	// ErrInvalid: any other invalid argument (empty message, bad limit…).
	ErrInvalid = errors.New("invalid argument")
	// ErrTooLarge: a size limit was exceeded (recipients, body and data,
	// ids per call). It wraps ErrInvalid: it is an invalid argument too.
	ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalid)
	// ErrNotFound: the message does not exist in the reader's view.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: Redis could not be reached or answered with a
	// transient error. Retrying later may succeed.
	ErrUnavailable = errors.New("redis unavailable")
)

// transientReplies are Redis error prefixes that mean "not now" rather
// than "never": a loading replica, a failing-over cluster, a lost script cache.
var transientReplies = []string{"LOADING", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "TRYAGAIN", "NOSCRIPT", "BUSY", "MOVED", "ASK"}

// wrapRedis classifies an error from the Redis client. Network failures,
// timeouts and transient server replies become ErrUnavailable; a caller's
// own cancellation passes through unchanged; anything else (a script bug,
// WRONGTYPE) stays an internal error.
func wrapRedis(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !isNetErr(err) {
		msg := rerr.Error()
		for _, p := range transientReplies {
			if strings.HasPrefix(msg, p) {
				return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
			}
		}
		if strings.HasPrefix(msg, "ERR") || strings.HasPrefix(msg, "WRONGTYPE") {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed)
}

package poll

import "time"

// Defaults of Config, exported so that pollbox's configuration shows and
// uses the same values.
const (
	// DefaultPollTimeout is how long a poll waits when it names no timeout.
	DefaultPollTimeout = 25 * time.Second
	// DefaultPollTimeoutMax is the longest wait a client may ask for.
	DefaultPollTimeoutMax = 60 * time.Second
	// DefaultMaxBody caps the bytes of body plus data in one message.
	DefaultMaxBody = 64 << 10
	// DefaultMaxRecipients caps the users in one publish.
	DefaultMaxRecipients = 10000
)

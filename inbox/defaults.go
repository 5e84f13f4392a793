package inbox

import "time"

// Defaults of Options, exported so that pollbox's configuration shows and
// uses the same values (MaxRecipients is the default cap on recipients).
const (
	// DefaultPrefix starts every Redis key.
	DefaultPrefix = "pollbox:"
	// DefaultMaxLen is the approximate number of entries kept per stream.
	DefaultMaxLen int64 = 1000
	// DefaultRetention is the age past which entries are trimmed.
	DefaultRetention = 30 * 24 * time.Hour
)

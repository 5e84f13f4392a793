package inbox

import (
	"fmt"
	"sort"
)

// MaxNameLen bounds user and group names; both become part of Redis keys.
const MaxNameLen = 128

// MaxGroups bounds how many groups one reader may follow. Every group is a
// stream read on each poll and a position in the cursor, so the cap keeps
// both the per-poll work and the cursor within 1 KiB: 64 groups take at
// most 972 characters (see cursor.go).
const MaxGroups = 64

// ValidUser reports whether s may be used as a user id:
// 1–128 characters from [A-Za-z0-9_.@-].
func ValidUser(s string) bool { return validName(s, false) }

// ValidGroup reports whether s may be used as a group name: like a user id,
// and ':' is allowed too (authorities look like "user:list").
func ValidGroup(s string) bool { return validName(s, true) }

func validName(s string, colon bool) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '.' || c == '@' || c == '-':
		case c == ':' && colon:
		default:
			return false
		}
	}
	return true
}

// Reader is who is reading: a user and the groups their token lists.
type Reader struct {
	User   string
	Groups []string
}

// normalize validates the reader and returns its groups sorted and deduplicated.
func (r Reader) normalize() ([]string, error) {
	if !ValidUser(r.User) {
		return nil, fmt.Errorf("%w: user id %q", ErrBadName, r.User)
	}
	gs := make([]string, 0, len(r.Groups))
	seen := make(map[string]bool, len(r.Groups))
	for _, g := range r.Groups {
		if !ValidGroup(g) {
			return nil, fmt.Errorf("%w: group %q", ErrBadName, g)
		}
		if !seen[g] {
			seen[g] = true
			gs = append(gs, g)
		}
	}
	if len(gs) > MaxGroups {
		return nil, fmt.Errorf("%w: more than %d groups", ErrInvalid, MaxGroups)
	}
	sort.Strings(gs)
	return gs, nil
}

package inbox

import "context"

// Withdraw cancels a scheduled publish or revokes a sent one and returns
// its state then: cancelled or revoked. A publish that does not exist, or
// is not by's while admin is false, is ErrNotFound; a malformed id ErrBadID.
func (s *Store) Withdraw(ctx context.Context, by Owner, admin bool, publishID string) (string, error) {
	if _, err := parsePubID(publishID); err != nil {
		return "", err
	}
	return "", errNotYet
}

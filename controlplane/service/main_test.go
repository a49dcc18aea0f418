package service

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its service (t.Cleanup), which waits for the cut
// retrier and the delayed deletions: none may outlive it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection opener lives as long as a pool; the
		// stores close their pools, the opener exits a moment later.
		goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"),
	)
}

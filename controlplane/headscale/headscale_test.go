package headscale

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Headscale answers "gone" in several ways; each must read as ErrNotFound
// so that cutting a node that already left is a success, not an outage.
func TestWrapRecognisesWhatIsGone(t *testing.T) {
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{status.Error(codes.NotFound, "user"), true},
		{status.Error(codes.Unknown, "node not found"), true},
		{status.Error(codes.Unknown, "node no longer exists in NodeStore: 4"), true},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{status.Error(codes.Unknown, "database is locked"), false},
		{errors.New("plain"), false},
	} {
		if got := errors.Is(wrap("op", tc.err), ErrNotFound); got != tc.gone {
			t.Errorf("wrap(%v): gone %v, want %v", tc.err, got, tc.gone)
		}
	}
}

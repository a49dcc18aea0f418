package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/roomnet/roomnet/roomnet"
)

// A full server's refusal of a new room has its own exit code and says
// what to do, not "unavailable".
func TestNoCapacityHasItsOwnExitCodeAndMessage(t *testing.T) {
	err := fmt.Errorf("creating the room: %w", &roomnet.Error{Status: 503, Code: roomnet.CodeCapacity, Message: "the server takes no new rooms right now"})
	if got := exitCode(err); got != ExitNoCapacity {
		t.Fatalf("exit code %d, want %d", got, ExitNoCapacity)
	}
	if msg := message(err); !strings.Contains(msg, "takes no new rooms") || !strings.Contains(msg, "join an existing room") {
		t.Fatalf("message %q", msg)
	}
	unavailable := &roomnet.Error{Status: 503, Code: roomnet.CodeUnavailable, Message: "try again shortly"}
	if got := exitCode(unavailable); got != ExitError {
		t.Fatalf("unavailable: exit code %d, want %d", got, ExitError)
	}
}

// Package tslog adapts a *slog.Logger to the printf-style logger.Logf that
// tailscale.com packages take. It is the one such adapter in roomnet.
package tslog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"tailscale.com/types/logger"
)

// Logf returns a logger.Logf that writes each line to l at level.
func Logf(l *slog.Logger, level slog.Level) logger.Logf {
	return func(format string, args ...any) {
		if !l.Enabled(context.Background(), level) {
			return
		}
		l.Log(context.Background(), level, strings.TrimSuffix(fmt.Sprintf(format, args...), "\n"))
	}
}

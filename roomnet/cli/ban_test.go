package cli_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/cli"
	"github.com/roomnet/roomnet/roomnettest"
)

// A banned player's login says until when and why, in words.
func TestBannedLoginSaysUntilWhenAndWhy(t *testing.T) {
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	h.User("mallory")
	m := newUser(t)

	require.NoError(t, h.Admin.BanFor(ctx, "mallory", roomnet.Ban{Seconds: 3600, Reason: "cheating"}))
	code, _, errs := m.run("password-mallory\n", "login", "--server", h.URL, "--username", "mallory", "--password-stdin")
	require.Equal(t, cli.ExitUnauthorized, code, errs)
	require.Regexp(t, `this account is banned until \d{4}-\d\d-\d\d \d\d:\d\d \S+ because cheating`, errs)

	require.NoError(t, h.Admin.Unban(ctx, "mallory"))
	require.NoError(t, h.Admin.BanFor(ctx, "mallory", roomnet.Ban{Reason: "cheating again"}))
	code, _, errs = m.run("password-mallory\n", "login", "--server", h.URL, "--username", "mallory", "--password-stdin")
	require.Equal(t, cli.ExitUnauthorized, code, errs)
	require.Contains(t, errs, "this account is banned: cheating again")
	require.NotContains(t, errs, "until")
}

package doctor_test

import (
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnet/doctor"
	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) { roomnettest.Main(m) }

func statuses(checks []doctor.Check) map[string]doctor.Check {
	out := map[string]doctor.Check{}
	for _, c := range checks {
		out[c.Name] = c
	}
	return out
}

// Against a real roomnetd on loopback with two STUN ports: everything is
// fine, and a machine without NAT is told so; a bad token fails the
// login check; a wrong URL fails the server check and skips the rest.
// (What each kind of NAT gets is tested in roomnettest/netlab.)
func TestDoctorOnLoopback(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.DERP.STUNAltListen = "127.0.0.1:0" })
	ctx := roomnettest.Context(t, 30*time.Second)
	alice := h.User("alice")
	got := statuses(doctor.Run(ctx, doctor.Options{Server: h.URL, Token: alice.Token()}))
	for name, want := range map[string]string{"server": doctor.OK, "login": doctor.OK, "relays": doctor.OK, "udp": doctor.OK, "nat": doctor.OK, "portmap": doctor.Skip, "mtu": doctor.OK} {
		if got[name].Status != want {
			t.Errorf("%s: %+v, want %s", name, got[name], want)
		}
	}
	if s := got["nat"].Summary; len(s) < 6 || s[:6] != "no NAT" {
		t.Errorf("nat on loopback: %q, want no NAT", s)
	}

	got = statuses(doctor.Run(ctx, doctor.Options{Server: h.URL, Token: "not-a-token"}))
	if got["login"].Status != doctor.Fail || got["login"].Advice == "" {
		t.Errorf("bad token: %+v, want fail with advice", got["login"])
	}

	got = statuses(doctor.Run(ctx, doctor.Options{Server: "http://127.0.0.1:1", Timeout: time.Second}))
	if got["server"].Status != doctor.Fail || got["relays"].Status != doctor.Skip || got["mtu"].Status != doctor.Skip {
		t.Errorf("no server: %+v", got)
	}
}

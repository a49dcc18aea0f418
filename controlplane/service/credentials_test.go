package service

import (
	"errors"
	"strings"
	"testing"

	cp "github.com/roomnet/roomnet/controlplane"
)

func TestPasswordRules(t *testing.T) {
	cases := []struct {
		user, password string
		refused        string // a word of the message; "" accepted
	}{
		{"alice", "correct horse battery", ""},
		{"alice", "password-alice", ""}, // the name plus nine more characters
		{"alice", "short", "8 to 72"},
		{"alice", strings.Repeat("p", 73), "8 to 72"},
		{"alicealice", "alicealice", "username"},
		{"alice1234", "ALICE1234", "username"},
		{"alice", "alice123", "username"},
		{"alice", "alice-2024", "username"},
		{"alice", "alicepassword", "username"}, // the name and a common password
		{"bob", "password", "common"},
		{"bob", "Password123", "common"},
		{"bob", "qwertyuiop", "common"},
		{"bob", "12345678", "common"},
	}
	for _, tc := range cases {
		err := validatePassword(tc.user, tc.password)
		if tc.refused == "" {
			if err != nil {
				t.Errorf("%s / %q refused: %v", tc.user, tc.password, err)
			}
			continue
		}
		if !errors.Is(err, cp.ErrInvalid) || !strings.Contains(err.Error(), tc.refused) {
			t.Errorf("%s / %q: want ErrInvalid naming %q, got %v", tc.user, tc.password, tc.refused, err)
		}
	}
}

func TestReservedUsernames(t *testing.T) {
	for _, name := range []string{
		"admin", "admin.", "admin_", "admin-", "admin2", "admin_bob", "admin.team", "adm1n", "4dmin", "adrnin",
		"administrator", "root", "r00t", "root_", "moderator", "m0derator", "moderator-2", "mod", "system", "5ystem",
		"system.bot", "sysadmin", "superuser", "support", "roomnet", "r.o.o.t",
	} {
		if err := validateUsername(name); !errors.Is(err, cp.ErrInvalid) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("%q: want refused as reserved, got %v", name, err)
		}
	}
	for _, name := range []string{"alice", "adminton", "rooted", "modern", "systematic", "lena", "operator", "max", "carol", "rootbeer"} {
		if err := validateUsername(name); err != nil {
			t.Errorf("%q refused: %v", name, err)
		}
	}
}

func TestRoomPasswordRules(t *testing.T) {
	for pw, ok := range map[string]bool{"": true, "sesame": true, "letmein": true, "x": false, "12345": false, strings.Repeat("p", 73): false} {
		if err := validateRoomPassword(pw); (err == nil) != ok {
			t.Errorf("%q: ok %v, got %v", pw, ok, err)
		}
	}
}

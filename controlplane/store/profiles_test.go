package store_test

import (
	"context"
	"testing"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/store"
	"github.com/roomnet/roomnet/internal/dbtest"
)

// A user's rooms come from memberships, join keys and hosting; the audit
// entries about them from targets, kicks and deletes of their messages,
// LIKE wildcards in the name taken literally.
func TestUserRoomsAndAuditAbout(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			s, err := store.Open(e.Driver, e.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			users := map[string]*cp.User{}
			for _, n := range []string{"host", "bob", "b_b", "bxb"} {
				u := cp.User{Username: n, PasswordHash: []byte("x"), Role: cp.RolePlayer, CreatedAt: time.Now()}
				if err := s.CreateUser(ctx, &u); err != nil {
					t.Fatal(err)
				}
				users[n] = &u
			}
			host, bob := users["host"], users["b_b"]
			base := time.Now().Add(-time.Hour)
			err = s.Tx(ctx, func(tx *store.Tx) error {
				for i, id := range []string{"active", "kicked", "keyed", "hosted", "other"} {
					r := cp.Room{ID: id, Name: id, MaxPlayers: 4, HostID: host.ID, InviteCode: "CODE000" + string(rune('A'+i)), Shard: "default", HeadscaleUser: "room-" + id, CreatedAt: base.Add(time.Duration(i) * time.Minute)}
					if id == "hosted" {
						r.HostID = bob.ID
					}
					if err := tx.CreateRoom(&r); err != nil {
						return err
					}
				}
				if err := tx.SaveMember(&cp.Member{RoomID: "active", UserID: bob.ID, State: cp.MemberActive, JoinedAt: base}); err != nil {
					return err
				}
				if err := tx.SaveMember(&cp.Member{RoomID: "kicked", UserID: bob.ID, State: cp.MemberKicked, JoinedAt: base}); err != nil {
					return err
				}
				return tx.CreateJoinKey(&cp.JoinKey{Shard: "default", KeyID: 9, RoomID: "keyed", UserID: bob.ID})
			})
			if err != nil {
				t.Fatal(err)
			}
			rooms, err := s.UserRooms(ctx, bob.ID, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rooms {
				got = append(got, r.ID+":"+r.State)
			}
			if want := "hosted: keyed: kicked:kicked active:active"; joinSp(got) != want {
				t.Fatalf("rooms of bob: %q, want %q", joinSp(got), want)
			}
			if rooms[0].HostName != "b_b" || rooms[3].JoinedAt == nil {
				t.Fatalf("summaries: %+v", rooms)
			}
			if none, err := s.UserRooms(ctx, users["bxb"].ID, 10); err != nil || len(none) != 0 {
				t.Fatalf("a user without rooms: %+v %v", none, err)
			}

			for _, a := range []cp.AuditEntry{
				{Action: cp.AuditBan, Target: "b_b", Detail: "permanent"},
				{Action: cp.AuditKick, Target: "kicked", Detail: "b_b"},
				{Action: cp.AuditDeleteMessage, Target: "lobby:main#3", Detail: "b_b: hi"},
				{Action: cp.AuditDeleteMessage, Target: "lobby:main#4", Detail: "bxb: hi"},
				{Action: cp.AuditMute, Target: "bxb"},
				{Action: cp.AuditKick, Target: "kicked", Detail: "bob"},
			} {
				a.At, a.ActorID, a.Actor = time.Now(), host.ID, "host"
				if err := s.AddAudit(ctx, &a); err != nil {
					t.Fatal(err)
				}
			}
			about, err := s.AuditAbout(ctx, "b_b", 10)
			if err != nil {
				t.Fatal(err)
			}
			got = nil
			for _, a := range about {
				got = append(got, a.Action+":"+a.Target)
			}
			if want := "delete_message:lobby:main#3 kick:kicked ban:b_b"; joinSp(got) != want {
				t.Fatalf("audit about b_b: %q, want %q", joinSp(got), want)
			}
		})
	}
}

func joinSp(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

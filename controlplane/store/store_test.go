package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/store"
	"github.com/roomnet/roomnet/internal/dbtest"
)

func TestStoreOnEveryEngine(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			s, err := store.Open(e.Driver, e.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			alice := cp.User{Username: "alice", PasswordHash: []byte("x"), Role: cp.RolePlayer, CreatedAt: time.Now()}
			bob := cp.User{Username: "bob", PasswordHash: []byte("x"), Role: cp.RolePlayer, CreatedAt: time.Now()}
			if err := s.CreateUser(ctx, &alice); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateUser(ctx, &bob); err != nil {
				t.Fatal(err)
			}
			dup := cp.User{Username: "alice", PasswordHash: []byte("y"), Role: cp.RolePlayer}
			if err := s.CreateUser(ctx, &dup); !errors.Is(err, cp.ErrUsernameTaken) {
				t.Fatalf("duplicate username: %v", err)
			}
			if _, err := s.UserByName(ctx, "carol"); !errors.Is(err, cp.ErrNotFound) {
				t.Fatalf("unknown user: %v", err)
			}
			now := time.Now()
			room := cp.Room{ID: "r1", Name: "one", MaxPlayers: 4, Public: true, HostID: alice.ID, InviteCode: "ABCDEFGH", Shard: "default", HeadscaleUser: "room-r1", CreatedAt: now}
			err = s.Tx(ctx, func(tx *store.Tx) error {
				if err := tx.CreateRoom(&room); err != nil {
					return err
				}
				if err := tx.SaveMember(&cp.Member{RoomID: "r1", UserID: alice.ID, State: cp.MemberActive, JoinedAt: now}); err != nil {
					return err
				}
				return tx.SaveMember(&cp.Member{RoomID: "r1", UserID: bob.ID, State: cp.MemberActive, JoinedAt: now.Add(time.Second)})
			})
			if err != nil {
				t.Fatal(err)
			}
			// A failed transaction leaves nothing behind.
			err = s.Tx(ctx, func(tx *store.Tx) error {
				r, err := tx.RoomForUpdate("r1")
				if err != nil {
					return err
				}
				r.Name = "renamed"
				if err := tx.SaveRoom(&r); err != nil {
					return err
				}
				return errors.New("abort")
			})
			if err == nil {
				t.Fatal("want the abort")
			}
			if r, _ := s.Room(ctx, "r1"); r.Name != "one" {
				t.Fatalf("rolled-back write visible: %q", r.Name)
			}
			rooms, err := s.RoomsOf(ctx, bob.ID)
			if err != nil || len(rooms) != 1 || rooms[0] != "r1" {
				t.Fatalf("rooms of bob: %v %v", rooms, err)
			}
			byRoom, err := s.ActiveMembersByRoom(ctx, "default", time.Now())
			if err != nil || len(byRoom["r1"]) != 2 {
				t.Fatalf("members by room: %v %v", byRoom, err)
			}
			pub, err := s.PublicRooms(ctx, "", 10)
			if err != nil || len(pub) != 1 || pub[0].Members != 2 || pub[0].HostName != "alice" {
				t.Fatalf("public rooms: %+v %v", pub, err)
			}
			if n, err := s.CountActiveMembers(ctx); err != nil || n != 2 {
				t.Fatalf("active members %d %v", n, err)
			}
			err = s.Tx(ctx, func(tx *store.Tx) error {
				r, err := tx.RoomForUpdate("r1")
				if err != nil {
					return err
				}
				r.ClosedAt = &now
				return tx.SaveRoom(&r)
			})
			if err != nil {
				t.Fatal(err)
			}
			if rooms, _ := s.RoomsOf(ctx, bob.ID); len(rooms) != 0 {
				t.Fatalf("closed room still listed: %v", rooms)
			}
			if err := s.Tx(ctx, func(tx *store.Tx) error { _, err := tx.RoomForUpdate("nope"); return err }); !errors.Is(err, cp.ErrNotFound) {
				t.Fatal("unknown room must be ErrNotFound")
			}
		})
	}
}

func TestExpiredTokensAreRemoved(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			s, err := store.Open(e.Driver, e.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			u := cp.User{Username: "alice", PasswordHash: []byte("x"), Role: cp.RolePlayer}
			if err := s.CreateUser(ctx, &u); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			for i, exp := range []time.Time{now.Add(-time.Hour), now.Add(-time.Minute), now.Add(time.Hour)} {
				if err := s.CreateToken(ctx, &cp.Token{Hash: []byte{byte(i)}, UserID: u.ID, ExpiresAt: exp}); err != nil {
					t.Fatal(err)
				}
			}
			n, err := s.DeleteExpiredTokens(ctx, now)
			if err != nil || n != 2 {
				t.Fatalf("removed %d, err %v; want the 2 expired", n, err)
			}
			if _, err := s.TokenUser(ctx, []byte{2}, now); err != nil {
				t.Fatalf("the live token went too: %v", err)
			}
		})
	}
}

// Banned users' memberships are listed for reconciliation and no longer
// count as active; rooms without any recorded key are found.
func TestBannedMembersAndKeylessRooms(t *testing.T) {
	ctx := context.Background()
	for _, e := range dbtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			s, err := store.Open(e.Driver, e.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			alice := cp.User{Username: "alice", PasswordHash: []byte("x"), Role: cp.RolePlayer}
			bob := cp.User{Username: "bob", PasswordHash: []byte("x"), Role: cp.RolePlayer}
			for _, u := range []*cp.User{&alice, &bob} {
				if err := s.CreateUser(ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			old := time.Now().Add(-time.Hour)
			err = s.Tx(ctx, func(tx *store.Tx) error {
				for _, id := range []string{"keyed", "keyless"} {
					if err := tx.CreateRoom(&cp.Room{ID: id, Name: id, MaxPlayers: 4, HostID: alice.ID, InviteCode: id, Shard: "default", HeadscaleUser: "room-" + id, CreatedAt: old}); err != nil {
						return err
					}
					for _, u := range []cp.User{alice, bob} {
						if err := tx.SaveMember(&cp.Member{RoomID: id, UserID: u.ID, State: cp.MemberActive, JoinedAt: old}); err != nil {
							return err
						}
					}
				}
				return tx.CreateJoinKey(&cp.JoinKey{Shard: "default", KeyID: 1, RoomID: "keyed", UserID: alice.ID})
			})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if err := s.SetBanned(ctx, bob.ID, &now); err != nil {
				t.Fatal(err)
			}
			banned, err := s.BannedMembers(ctx, "default", now)
			if err != nil || len(banned) != 2 || banned[0].User.Username != "bob" {
				t.Fatalf("banned members: %+v %v", banned, err)
			}
			byRoom, err := s.ActiveMembersByRoom(ctx, "default", now)
			if err != nil || len(byRoom["keyed"]) != 1 || byRoom["keyed"][bob.ID] {
				t.Fatalf("a banned user counts as active: %v %v", byRoom, err)
			}
			// A temporary ban counts while it lasts and not after.
			until := now.Add(time.Hour)
			if err := s.Ban(ctx, bob.ID, now, &until, "spam"); err != nil {
				t.Fatal(err)
			}
			if u, _ := s.UserByID(ctx, bob.ID); u.BanReason != "spam" || u.BanUntil == nil || !u.Banned(now) || u.Banned(until) {
				t.Fatalf("temporary ban: %+v", u)
			}
			if banned, err := s.BannedMembers(ctx, "default", now.Add(59*time.Minute)); err != nil || len(banned) != 2 {
				t.Fatalf("banned members while the ban lasts: %+v %v", banned, err)
			}
			if banned, err := s.BannedMembers(ctx, "default", until.Add(time.Second)); err != nil || len(banned) != 0 {
				t.Fatalf("banned members after the ban: %+v %v", banned, err)
			}
			if byRoom, err := s.ActiveMembersByRoom(ctx, "default", until.Add(time.Second)); err != nil || !byRoom["keyed"][bob.ID] {
				t.Fatalf("a user whose ban ended counts as gone: %v %v", byRoom, err)
			}
			if err := s.SetBanned(ctx, bob.ID, &now); err != nil {
				t.Fatal(err)
			}
			if u, _ := s.UserByID(ctx, bob.ID); u.BanUntil != nil || u.BanReason != "" || !u.Banned(now.Add(1000*time.Hour)) {
				t.Fatalf("a permanent ban after a temporary one: %+v", u)
			}
			keyless, err := s.KeylessRooms(ctx, "default", now)
			if err != nil || len(keyless) != 1 || keyless[0].ID != "keyless" {
				t.Fatalf("keyless rooms: %+v %v", keyless, err)
			}
			if keyless, _ := s.KeylessRooms(ctx, "default", old.Add(-time.Minute)); len(keyless) != 0 {
				t.Fatalf("a young room counts as keyless: %+v", keyless)
			}
			err = s.Tx(ctx, func(tx *store.Tx) error {
				u, err := tx.LockUser(bob.ID)
				if err != nil || u.BannedAt == nil {
					t.Fatalf("locked user: %+v %v", u, err)
				}
				_, err = tx.LockUser(999)
				return err
			})
			if !errors.Is(err, cp.ErrNotFound) {
				t.Fatalf("unknown user: %v", err)
			}
		})
	}
}

package main

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnettest"
)

func TestMain(m *testing.M) { roomnettest.Main(m) }

// TestSimulatedNodesSeeOnlyTheirRoom runs the simulator's phases against a
// real roomnetd with its real Headscale child: two rooms of four bare
// control clients. Each node's netmap must end up holding exactly its
// roommates (isolation at the control level), a kick must take the node
// out of every roommate's map, and churn must rejoin members; every
// phase's figures are then present.
func TestSimulatedNodesSeeOnlyTheirRoom(t *testing.T) {
	h := roomnettest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{
		API: h.URL, Nodes: 8, RoomSize: 4, Concurrency: 4, Timeout: 30 * time.Second,
		ChurnRate: 2, ChurnFor: 2 * time.Second, Kicks: 2,
		Prefix: "nl", Password: "nodeload-password-1", PIDs: []int{h.Server.Headscale().PID()},
		Progress: t.Logf,
	}
	s, err := newSim(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.closeAll()
	if err := s.accounts(ctx, s.rep.Rooms); err != nil {
		t.Fatal(err)
	}
	if err := s.fill(ctx); err != nil {
		t.Fatal(err)
	}
	join := s.rep.Phases[0]
	if join.Ops != 8 || join.Errors != 0 || join.P99 == "" || join.SeenP99 == "" {
		t.Fatalf("join phase %+v: want 8 joins (2 creates, 6 joins) measured without error", join)
	}
	for _, room := range s.rooms {
		for _, p := range room.in {
			want := room.names(p)
			got := keys(p.node.Peers())
			sort.Strings(want)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("%s sees %v, want exactly its roommates %v", p.nodeName(), got, want)
			}
		}
	}

	s.churn(ctx)
	churn := s.rep.Phases[1]
	if churn.Errors != 0 {
		t.Fatalf("churn phase %+v", churn)
	}
	if churn.Ops > 0 && (churn.GoneP99 == "" || churn.SeenP99 == "") {
		t.Fatalf("churn phase %+v: rejoins without their figures", churn)
	}

	s.kicks(ctx)
	kick := s.rep.Phases[2]
	if kick.Ops != 2 || kick.Errors != 0 || kick.GoneP99 == "" {
		t.Fatalf("kick phase %+v: want 2 kicks measured without error", kick)
	}
	for _, room := range s.rooms {
		if len(room.in) != 3 {
			t.Fatalf("room %s has %d members after the kick, want 3", room.id, len(room.in))
		}
		for _, p := range room.in {
			want := room.names(p)
			sort.Strings(want)
			if got := keys(p.node.Peers()); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("after the kick %s sees %v, want %v", p.nodeName(), got, want)
			}
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package service

import (
	"net/netip"
	"testing"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/headscale"
)

type fakeRelay struct {
	connected map[string]bool
	pairs     map[[2]string]time.Time
}

func (f fakeRelay) NodeConnected(k string) bool { return f.connected[k] }
func (f fakeRelay) RelayedBetween(a, b string, since time.Time) bool {
	for _, p := range [][2]string{{a, b}, {b, a}} {
		if at, ok := f.pairs[p]; ok && !at.Before(since) {
			return true
		}
	}
	return false
}

func view(name string, online bool, key, ip string) MemberView {
	return MemberView{Member: cp.Member{User: cp.User{Username: name}},
		Nodes: []headscale.Node{{Name: name, Online: online, NodeKey: key, IPs: []netip.Addr{netip.MustParseAddr(ip)}}}}
}

func TestServerPathsInference(t *testing.T) {
	now := time.Unix(10000, 0)
	s := &Service{now: func() time.Time { return now }}
	members := func() []MemberView {
		return []MemberView{
			view("a", true, "nodekey:a", "100.64.0.1"),
			view("b", true, "nodekey:b", "100.64.0.2"),
			view("c", true, "nodekey:c", "100.64.0.3"),
			view("off", false, "nodekey:off", "100.64.0.4"),
			view("d", true, "nodekey:d", "100.64.0.5"), // homed on another relay
		}
	}
	out := members()
	s.serverPaths(out)
	for _, m := range out {
		if m.Paths != nil {
			t.Fatalf("no observer: %s got paths %+v", m.User.Username, m.Paths)
		}
	}

	s.SetRelayObserver("roomnet", fakeRelay{connected: map[string]bool{"nodekey:a": true, "nodekey:b": true, "nodekey:c": true, "nodekey:d": false}, pairs: map[[2]string]time.Time{
		{"nodekey:a", "nodekey:b"}:   now.Add(-5 * time.Second),
		{"nodekey:c", "nodekey:a"}:   now.Add(-relayedWindow - time.Second), // too old
		{"nodekey:off", "nodekey:a"}: now,
	}})
	out = members()
	client := &PathReport{At: now, Source: SourceClient, Links: []Link{{Peer: "a", Direct: true}}}
	out[2].Paths = client // c reports itself: left alone
	s.serverPaths(out)
	if out[2].Paths != client {
		t.Fatal("a client report was replaced")
	}
	if out[3].Paths != nil {
		t.Fatalf("an offline member got paths: %+v", out[3].Paths)
	}
	if d := out[4].Paths; d == nil || len(d.Links) != 0 {
		t.Fatalf("d, not on our relay and relaying nothing through it, must have no links: %+v", d)
	}
	got := map[string]map[string]Link{}
	for _, m := range out[:2] {
		if m.Paths == nil || m.Paths.Source != SourceServer || !m.Paths.At.Equal(now) {
			t.Fatalf("%s: %+v", m.User.Username, m.Paths)
		}
		got[m.User.Username] = map[string]Link{}
		for _, l := range m.Paths.Links {
			got[m.User.Username][l.Peer] = l
		}
		if _, ok := got[m.User.Username]["off"]; ok {
			t.Fatalf("%s links to an offline member", m.User.Username)
		}
	}
	want := map[string]map[string]Link{
		"a": {"b": {Peer: "b", IP: "100.64.0.2", Relay: "roomnet"}, "c": {Peer: "c", IP: "100.64.0.3", Direct: true, Inferred: true}},
		"b": {"a": {Peer: "a", IP: "100.64.0.1", Relay: "roomnet"}, "c": {Peer: "c", IP: "100.64.0.3", Direct: true, Inferred: true}},
	}
	for who, links := range want {
		if len(got[who]) != len(links) {
			t.Fatalf("%s: %+v", who, got[who])
		}
		for peer, l := range links {
			if got[who][peer] != l {
				t.Fatalf("%s→%s: got %+v, want %+v", who, peer, got[who][peer], l)
			}
		}
	}
}

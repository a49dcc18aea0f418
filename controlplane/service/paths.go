package service

import (
	"context"
	"errors"
	"sync"
	"time"

	cp "github.com/roomnet/roomnet/controlplane"
)

// Link is how one member's node reaches one peer, as that member's client
// reported it: directly or through a relay, and the round trip.
type Link struct {
	Peer   string // the peer's username
	IP     string // the peer's room address
	Direct bool
	Addr   string // direct: the peer's endpoint; peer relay: the relay's
	Relay  string // relayed by DERP: the region
	// PeerRelay: relayed by a roommate's peer relay, not by DERP.
	PeerRelay bool
	RTT       time.Duration
	// Inferred: the server's guess, not a measurement (Source "server"):
	// both nodes online and our relay carried nothing between them.
	Inferred bool
}

// PathReport is a member's latest links.
type PathReport struct {
	At    time.Time
	Links []Link
	// Source is SourceClient (the member's roomnet CLI reported it) or
	// SourceServer (the control plane inferred it from Headscale and its
	// relay, for members whose client does not report).
	Source string
}

// Where a path report comes from.
const (
	SourceClient = "client"
	SourceServer = "server"
)

// pathTTL is how long a report stands; clients report every few seconds.
const pathTTL = 30 * time.Second

// maxLinks bounds one report (a room has at most MaxPlayers members).
const maxLinks = 256

// paths keeps the latest report of each member in memory: it is live
// telemetry, lost on restart and refreshed by the clients within seconds.
type paths struct {
	mu     sync.Mutex
	byRoom map[string]map[uint64]PathReport
}

func (p *paths) set(roomID string, userID uint64, r PathReport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byRoom == nil {
		p.byRoom = map[string]map[uint64]PathReport{}
	}
	if p.byRoom[roomID] == nil {
		p.byRoom[roomID] = map[uint64]PathReport{}
	}
	p.byRoom[roomID][userID] = r
}

// room returns a room's fresh reports and drops the stale ones.
func (p *paths) room(roomID string, now time.Time) map[uint64]PathReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[uint64]PathReport{}
	for uid, r := range p.byRoom[roomID] {
		if now.Sub(r.At) > pathTTL {
			delete(p.byRoom[roomID], uid)
			continue
		}
		out[uid] = r
	}
	if len(p.byRoom[roomID]) == 0 {
		delete(p.byRoom, roomID)
	}
	return out
}

// forget drops a member's report (userID 0: the whole room's).
func (p *paths) forget(roomID string, userID uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if userID == 0 {
		delete(p.byRoom, roomID)
		return
	}
	delete(p.byRoom[roomID], userID)
}

// ReportPaths records how actor's node reaches the other members; only an
// active member of an open room may report, and only about that room.
func (s *Service) ReportPaths(ctx context.Context, actor cp.User, roomID string, links []Link) error {
	if len(links) > maxLinks {
		return cp.Invalid("links: at most %d", maxLinks)
	}
	for _, l := range links {
		if len(l.Peer) > 32 || len(l.IP) > 64 || len(l.Addr) > 64 || len(l.Relay) > 64 || l.RTT < 0 || l.RTT > time.Minute {
			return cp.Invalid("links: a field out of range")
		}
		if l.PeerRelay && (l.Direct || l.Relay != "") {
			return cp.Invalid("links: peer_relay is neither direct nor a DERP relay")
		}
	}
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return err
	}
	m, err := s.store.MemberOf(ctx, roomID, actor.ID)
	if hiddenFrom(room, actor, err) {
		return cp.ErrNotFound
	}
	if !room.Open() {
		return cp.ErrRoomClosed
	}
	if errors.Is(err, cp.ErrNotFound) || (err == nil && m.State != cp.MemberActive) {
		return cp.ErrNotMember
	} else if err != nil {
		return err
	}
	s.paths.set(roomID, actor.ID, PathReport{At: s.now(), Links: links, Source: SourceClient})
	return nil
}

// withoutEndpoints is r for a member's eyes: the paths and round trips,
// not the peers' public addresses.
func withoutEndpoints(r PathReport) PathReport {
	links := make([]Link, len(r.Links))
	for i, l := range r.Links {
		l.Addr = ""
		links[i] = l
	}
	r.Links = links
	return r
}

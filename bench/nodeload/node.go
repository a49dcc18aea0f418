package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"tailscale.com/control/controlclient"
	"tailscale.com/health"
	"tailscale.com/net/netmon"
	"tailscale.com/net/tsdial"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/netmap"
	"tailscale.com/types/persist"
	"tailscale.com/util/eventbus"

	"github.com/roomnet/roomnet/roomnet"
)

// simNode is a bare Tailscale control client: it registers with a join
// grant's single-use key, holds its map stream open and keeps the set of
// peers its latest netmap holds. It has no WireGuard engine, so thousands
// fit in one process; Headscale cannot tell it from a real node's control
// side.
type simNode struct {
	name   string
	direct *controlclient.Direct
	dialer *tsdial.Dialer
	bus    *eventbus.Bus
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	peers   map[string]bool // live (unexpired) peers by hostname
	maps    int
	changed chan struct{} // closed and replaced on every netmap
}

// startNode registers a node named name with the grant and starts its map
// stream; it returns once registration is done (not once a map arrived).
func startNode(ctx context.Context, g roomnet.JoinGrant, name string, logf logger.Logf) (*simNode, error) {
	if logf == nil {
		logf = logger.Discard
	}
	bus := eventbus.New()
	dialer := tsdial.NewDialer(netmon.NewStatic())
	dialer.SetBus(bus)
	machine := key.NewMachine()
	direct, err := controlclient.NewDirect(controlclient.Options{
		Persist:              persist.Persist{},
		GetMachinePrivateKey: func() (key.MachinePrivate, error) { return machine, nil },
		ServerURL:            g.LoginServer,
		AuthKey:              g.AuthKey,
		Hostinfo:             &tailcfg.Hostinfo{Hostname: name, BackendLogID: "nodeload-" + name},
		DiscoPublicKey:       key.NewDisco().Public(),
		Logf:                 logf,
		HealthTracker:        health.NewTracker(bus),
		Dialer:               dialer,
		Bus:                  bus,
	})
	if err != nil {
		dialer.Close()
		bus.Close()
		return nil, fmt.Errorf("creating control client: %w", err)
	}
	n := &simNode{name: name, direct: direct, dialer: dialer, bus: bus, peers: map[string]bool{}, changed: make(chan struct{}), done: make(chan struct{})}
	url, err := direct.TryLogin(ctx, controlclient.LoginDefault)
	if err == nil && url != "" {
		err = fmt.Errorf("control server asked for interactive login at %s", url)
	}
	if err != nil {
		n.closeClient()
		close(n.done)
		return nil, fmt.Errorf("registering %s: %w", name, err)
	}
	pollCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		_ = direct.PollNetMap(pollCtx, n)
	}()
	return n, nil
}

// UpdateFullNetmap implements controlclient.NetmapUpdater.
func (n *simNode) UpdateFullNetmap(nm *netmap.NetworkMap) {
	peers := make(map[string]bool, len(nm.Peers))
	for _, p := range nm.Peers {
		if p.Expired() {
			continue // cut off: its peers drop it
		}
		peers[p.Hostinfo().Hostname()] = true
	}
	n.mu.Lock()
	n.peers = peers
	n.maps++
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// Peers returns a copy of the live peers' names.
func (n *simNode) Peers() map[string]bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]bool, len(n.peers))
	for k := range n.peers {
		out[k] = true
	}
	return out
}

// errTimeout reports a wait that did not see its condition in time.
var errTimeout = errors.New("timed out")

// waitPeers waits until cond holds for the node's peers.
func (n *simNode) waitPeers(ctx context.Context, cond func(map[string]bool) bool) error {
	for {
		n.mu.Lock()
		ok := cond(n.peers)
		ch := n.changed
		n.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", n.name, errTimeout)
		}
	}
}

// Close ends the map stream and releases the client.
func (n *simNode) Close() {
	if n.cancel != nil {
		n.cancel()
	}
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
	}
	n.closeClient()
}

func (n *simNode) closeClient() {
	n.direct.Close()
	n.dialer.Close()
	n.bus.Close()
}

// hasAll reports whether peers holds every name in want.
func hasAll(peers map[string]bool, want []string) bool {
	for _, w := range want {
		if !peers[w] {
			return false
		}
	}
	return true
}

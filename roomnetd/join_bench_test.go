package roomnetd_test

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnet/node"
	"github.com/roomnet/roomnet/roomnettest"
)

// BenchmarkJoinLatency measures, per join, the time from the join request
// to the first TCP byte between the new member and the host, over forced
// DERP on loopback. "api" goes through roomnet's REST API; "raw" is the
// floor: a pre-auth key minted straight from Headscale and a tsnet node,
// with no API in between. Run with -benchtime=20x or more; p50/p95 are
// reported as metrics.
func BenchmarkJoinLatency(b *testing.B) {
	h := roomnettest.New(b)
	host := h.User("host")
	room, err := host.CreateRoom(context.Background(), roomnet.CreateRoom{Name: "bench", MaxPlayers: 64, Public: true})
	if err != nil {
		b.Fatal(err)
	}
	hostNode := roomnettest.Node(b, room.Join, "host")
	ln, err := hostNode.Listen(7000)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte{1})
			c.Close()
		}
	}()
	hs := h.Server.Headscale().Client()
	users, err := hs.ListUsers(context.Background())
	if err != nil || len(users) != 1 {
		b.Fatalf("users %v %v", users, err)
	}
	roomUser := users[0].ID

	run := func(b *testing.B, prepare func(i int) func() (roomnet.JoinGrant, func())) {
		var samples []time.Duration
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			grant := prepare(i)
			b.StartTimer()
			start := time.Now()
			g, done := grant()
			n := startBenchNode(b, g, fmt.Sprintf("p%d", i))
			firstByte(b, n, hostNode.IP())
			samples = append(samples, time.Since(start))
			b.StopTimer()
			n.Close()
			done()
			b.StartTimer()
		}
		report(b, samples)
	}
	b.Run("api", func(b *testing.B) {
		run(b, func(i int) func() (roomnet.JoinGrant, func()) {
			c := h.User(fmt.Sprintf("api%d-%d", i, time.Now().UnixNano()%1e6))
			return func() (roomnet.JoinGrant, func()) {
				g, err := c.Join(context.Background(), room.ID, "")
				if err != nil {
					b.Fatal(err)
				}
				return g, func() { c.Leave(context.Background(), room.ID) }
			}
		})
	})
	b.Run("raw", func(b *testing.B) {
		run(b, func(int) func() (roomnet.JoinGrant, func()) {
			return func() (roomnet.JoinGrant, func()) {
				k, err := hs.CreatePreAuthKey(context.Background(), roomUser, true, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				return roomnet.JoinGrant{LoginServer: room.Join.LoginServer, AuthKey: k.Key}, func() {}
			}
		})
	})
}

func startBenchNode(b *testing.B, g roomnet.JoinGrant, name string) *node.Node {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, node.Options{Dir: b.TempDir() + "/" + name, Hostname: name, Grant: g})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// firstByte waits for the host in the netmap, then dials until the host's
// first byte arrives; the first WireGuard handshake may be lost, so dials
// are retried quickly rather than waiting out a 5 s retransmit.
func firstByte(b *testing.B, n *node.Node, host netip.Addr) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.WaitReachable(ctx, host); err != nil {
		b.Fatal(err)
	}
	for ctx.Err() == nil {
		dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		c, err := n.Dial(dctx, "tcp", netip.AddrPortFrom(host, 7000).String())
		if err == nil {
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			buf := make([]byte, 1)
			_, err = c.Read(buf)
			c.Close()
		}
		dcancel()
		if err == nil {
			return
		}
	}
	b.Fatal("no first byte from host")
}

func report(b *testing.B, s []time.Duration) {
	if len(s) == 0 {
		return
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	pct := func(p float64) float64 { return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
	b.ReportMetric(float64(len(s)), "joins")
}

package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/roomnet/roomnet/derp/relay"
)

const packetSize = 1200 // a WireGuard packet of a game

// endpoint is a relay to benchmark: a DERP node description and a stop func.
type endpoint struct {
	node *tailcfg.DERPNode
	stop func()
}

func ours(b *testing.B) endpoint {
	r, err := relay.Start(relay.Options{Listen: "127.0.0.1:0", StateDir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	return endpoint{node: r.Node(1, "ours"), stop: func() { r.Close() }}
}

// derper builds tailscale's own derper from the same tailscale.com module
// (go.mod's tool directive) and runs it with a self-signed certificate.
func derper(b *testing.B) endpoint {
	dir := b.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "tailscale.com/cmd/derper")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building derper: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(filepath.Join(dir, "derper"), "-a", fmt.Sprintf("127.0.0.1:%d", port), "-certmode", "manual",
		"-certdir", dir, "-hostname", "127.0.0.1", "-stun=false", "-http-port", "-1")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	node := &tailcfg.DERPNode{Name: "derper", RegionID: 1, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none", DERPPort: port, InsecureForTests: true}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("derper did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return endpoint{node: node, stop: func() { cmd.Process.Kill(); cmd.Wait() }}
}

func client(b *testing.B, node *tailcfg.DERPNode) (*derphttp.Client, key.NodePrivate) {
	k := key.NewNode()
	region := &tailcfg.DERPRegion{RegionID: 1, RegionCode: "b", Nodes: []*tailcfg.DERPNode{node}}
	c := derphttp.NewRegionClient(k, func(string, ...any) {}, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	return c, k
}

// relayRun sends b.N packets from one client to another through the
// relay, paced at rate packets/s (0: as fast as the sender can), and
// reports delivered throughput and loss.
func relayRun(b *testing.B, ep endpoint, rate int) {
	defer ep.stop()
	src, _ := client(b, ep.node)
	dst, dk := client(b, ep.node)
	defer src.Close()
	defer dst.Close()
	var got atomic.Int64
	lastRecv := atomic.Int64{}
	go func() {
		for {
			m, err := dst.Recv()
			if err != nil {
				return
			}
			if _, ok := m.(derp.ReceivedPacket); ok {
				got.Add(1)
				lastRecv.Store(time.Now().UnixNano())
			}
		}
	}()
	payload := make([]byte, packetSize)
	// Warm the path: the relay must know dst before the clock starts.
	for got.Load() == 0 {
		_ = src.Send(dk.Public(), payload)
		time.Sleep(10 * time.Millisecond)
	}
	got.Store(0)
	b.SetBytes(packetSize)
	b.ResetTimer()
	start := time.Now()
	if rate > 0 {
		perMs := max(1, rate/1000)
		t := time.NewTicker(time.Millisecond)
		for sent := 0; sent < b.N; {
			<-t.C
			for i := 0; i < perMs && sent < b.N; i++ {
				_ = src.Send(dk.Public(), payload)
				sent++
			}
		}
		t.Stop()
	} else {
		for range b.N {
			_ = src.Send(dk.Public(), payload)
		}
	}
	// Wait until nothing more arrives.
	for {
		before := got.Load()
		time.Sleep(300 * time.Millisecond)
		if got.Load() == before {
			break
		}
	}
	b.StopTimer()
	end := time.Unix(0, lastRecv.Load())
	el := end.Sub(start)
	n := got.Load()
	b.ReportMetric(float64(n)/el.Seconds(), "delivered-pkt/s")
	b.ReportMetric(float64(n*packetSize)/el.Seconds()/1e6, "delivered-MB/s")
	b.ReportMetric(100*float64(int64(b.N)-n)/float64(b.N), "loss-%")
}

// BenchmarkRelay compares our relay with tailscale's derper built from the
// same module, over TLS on loopback, paced and unpaced.
func BenchmarkRelay(b *testing.B) {
	if _, err := exec.LookPath("go"); err != nil {
		b.Skip("needs the go tool to build derper")
	}
	for _, rate := range []int{10000, 50000, 0} {
		name := "unpaced"
		if rate > 0 {
			name = fmt.Sprintf("paced-%dk", rate/1000)
		}
		b.Run("roomnet/"+name, func(b *testing.B) { relayRun(b, ours(b), rate) })
		b.Run("derper/"+name, func(b *testing.B) { relayRun(b, derper(b), rate) })
	}
}

// BenchmarkTLSCeiling is loopback TLS with no relay in between: one
// writer, one reader, packet-sized writes. No relay can beat it.
func BenchmarkTLSCeiling(b *testing.B) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		b.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		done <- n
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, packetSize)
	b.SetBytes(packetSize)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := c.Write(payload); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	n := <-done
	b.StopTimer()
	b.ReportMetric(float64(n)/time.Since(start).Seconds()/1e6, "delivered-MB/s")
}

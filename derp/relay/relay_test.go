package relay

import (
	"net"
	"testing"
	"time"
)

func TestRegionFor(t *testing.T) {
	r, err := regionFor("https://127.0.0.1:8443/derp", true)
	if err != nil {
		t.Fatal(err)
	}
	n := r.Nodes[0]
	if n.HostName != "127.0.0.1" || n.DERPPort != 8443 || n.IPv4 != "127.0.0.1" || n.IPv6 != "none" || !n.InsecureForTests {
		t.Fatalf("%+v", n)
	}
	r, err = regionFor("https://derp.example.com/derp", false)
	if err != nil || r.Nodes[0].DERPPort != 443 || r.Nodes[0].IPv4 != "" || r.Nodes[0].InsecureForTests {
		t.Fatalf("%+v %v", r.Nodes[0], err)
	}
	for _, bad := range []string{"http://x/derp", "https://:443/derp", "https://x:port/derp", "::"} {
		if _, err := regionFor(bad, false); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLimitListenerBoundsConcurrentConnections(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitListener(raw, 2, 0)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the limit of 2")
	case <-time.After(300 * time.Millisecond):
	}
	first.Close() // frees a slot
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not accepted after a slot freed")
	}
	second.Close()
	if limitListener(raw, 0, 0) != raw {
		t.Fatal("no limits must mean the plain listener")
	}
}

package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"tailscale.com/tailcfg"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/relays"
	"github.com/roomnet/roomnet/roomnet"
)

// bodyTypes are the request bodies the API decodes, each a fresh value.
var bodyTypes = []func() any{
	func() any { return new(roomnet.Credentials) },
	func() any { return new(roomnet.CreateRoom) },
	func() any { return new(roomnet.JoinRoom) },
	func() any { return new(roomnet.Kick) },
	func() any { return new(roomnet.PathReport) },
	func() any { return new(roomnet.RelayHeartbeat) },
	func() any { return new(roomnet.SetRole) },
	func() any { return new(roomnet.Mute) },
	func() any { return new(roomnet.DeleteMessage) },
	func() any { return new(roomnet.Announce) },
}

var bodySeeds = []string{
	`{"username":"alice","password":"password-alice"}`,
	`{"name":"r","game":"cs16","max_players":4,"public":true,"password":"sesame","ports":["27015/udp"]}`,
	`{"password":"x"}`, `{}`, `{"username":"bob"}`,
	`{"links":[{"peer":"bob","ip":"100.64.0.2","direct":true,"addr":"1.2.3.4:41641","rtt_ms":1.5}]}`,
	`{"region_id":901,"region_code":"x","region_name":"X","node":{"name":"901a","hostname":"relay.example","ipv4":"192.0.2.1","derp_port":443,"stun_port":3478},"stats":{"clients":1,"bytes_received":2,"bytes_sent":3}}`,
	`{"role":"admin"}`, `{"seconds":60,"reason":"spam"}`, `{"conv":"lobby:main","seq":18446744073709551615}`,
	`{"conv":"lobby:main","text":"hello"}`,
	`{"NAME":"a","max_players":4}`, `{"name":"a","name":"b"}`, "{\"name\":\"\xff\"}", `{"a":1}{"b":2}`, `null`, `[1]`, ``,
}

// Every body the strict decoder accepts is one encoding/json (what the
// API used before, and what most clients write with) reads the same way,
// and it survives a round trip; nothing panics.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, newBody := range bodyTypes {
			v := newBody()
			err := DecodeBody(body, v)
			if err != nil {
				var ae *apiError
				if !errors.As(err, &ae) || ae.status != 400 {
					t.Fatalf("%T: want a 400 error, got %v", v, err)
				}
				continue
			}
			old := newBody()
			if err := json.Unmarshal(body, old); err != nil {
				t.Fatalf("%T: strict decoder took %q that encoding/json refuses: %v", v, body, err)
			}
			if !reflect.DeepEqual(v, old) {
				t.Fatalf("%T: %q read as %+v, encoding/json reads %+v", v, body, v, old)
			}
			again, err := jsonv2.Marshal(v)
			if err != nil {
				t.Fatalf("%T: re-encoding: %v", v, err)
			}
			back := newBody()
			if err := DecodeBody(again, back); err != nil {
				t.Fatalf("%T: its own encoding %s refused: %v", v, again, err)
			}
			if twice, _ := jsonv2.Marshal(back); string(twice) != string(again) {
				t.Fatalf("%T: round trip of %q: %s, then %s", v, body, again, twice)
			}
		}
	})
}

// A heartbeat that decodes and validates is registered, shows in the DERP
// map and the listing as sent; one that does not changes nothing.
func FuzzRelayHeartbeat(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		reg, err := relays.New(nil, time.Minute, func(*tailcfg.DERPMap) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		var hb roomnet.RelayHeartbeat
		if DecodeBody(body, &hb) != nil || relays.Validate(hb) != nil {
			return
		}
		if err := reg.Heartbeat(hb); err != nil {
			t.Fatalf("a valid heartbeat %+v refused: %v", hb, err)
		}
		list := reg.List()
		if len(list) != 1 || list[0].Node.Name != hb.Node.Name || list[0].RegionID != hb.RegionID {
			t.Fatalf("listing after %+v: %+v", hb, list)
		}
		m := reg.Map()
		r := m.Regions[hb.RegionID]
		if r == nil || len(r.Nodes) != 1 || r.Nodes[0].Name != hb.Node.Name || r.Nodes[0].HostName != hb.Node.HostName {
			t.Fatalf("DERP map after %+v: %+v", hb, m)
		}
	})
}

// A path report's links either convert with every round trip time in
// range or are refused as invalid input.
func FuzzPathReport(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"links":[{"peer":"p","rtt_ms":60000.0001}]}`))
	f.Add([]byte(`{"links":[{"peer":"p","rtt_ms":-0}]}`))
	f.Add([]byte(`{"links":[{"peer":"p","rtt_ms":1e308}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req roomnet.PathReport
		if DecodeBody(body, &req) != nil {
			return
		}
		links, err := pathLinks(req)
		if err != nil {
			if !errors.Is(err, cp.ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			return
		}
		if len(links) != len(req.Links) {
			t.Fatalf("%d links became %d", len(req.Links), len(links))
		}
		for i, l := range links {
			if l.RTT < 0 || l.RTT > time.Minute || l.Peer != req.Links[i].Peer || l.Direct != req.Links[i].Direct {
				t.Fatalf("link %d: %+v from %+v", i, l, req.Links[i])
			}
		}
	})
}

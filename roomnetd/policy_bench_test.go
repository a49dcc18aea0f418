package roomnetd_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// BenchmarkIsolationPolicy compares the two ways of isolating rooms at 10,
// 100 and 1,000 rooms (Headscale users): the constant autogroup:self rule
// roomnet uses ("self") against one rule per room ("per-room", which must
// rewrite the policy whenever a room is created). Each iteration creates
// a room, brings a host and a player node up in it, and waits until they
// reach each other; reported are that join latency, the time to create the
// room (per-room includes SetPolicy), Headscale's CPU time per iteration
// (from /proc) and the policy size. Ten background rooms hold one live
// node each so that map generation has peers to filter.
func BenchmarkIsolationPolicy(b *testing.B) {
	for _, mode := range []string{"self", "per-room"} {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/rooms=%d", mode, n), func(b *testing.B) { benchPolicy(b, mode, n) })
		}
	}
}

func perRoomPolicy(users []string) string {
	rules := make([]string, len(users))
	for i, u := range users {
		rules[i] = fmt.Sprintf(`{"action":"accept","src":["%s@"],"dst":["%s@:*"]}`, u, u)
	}
	return `{"acls":[` + strings.Join(rules, ",") + `]}`
}

func cpuTicks(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw)[strings.LastIndexByte(string(raw), ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) * 10 // ms, at 100 ticks/s
}

func benchPolicy(b *testing.B, mode string, rooms int) {
	h := roomnettest.New(b)
	ctx := context.Background()
	hs := h.Server.Headscale().Client()
	login := h.Server.Headscale()
	var names []string
	var bg []uint64
	for i := range rooms {
		u, err := hs.CreateUser(ctx, fmt.Sprintf("%sbg%d", service.RoomUserPrefix, i))
		if err != nil {
			b.Fatal(err)
		}
		names = append(names, u.Name)
		if i < 10 {
			bg = append(bg, u.ID)
		}
	}
	policy := service.IsolationPolicy
	if mode == "per-room" {
		policy = perRoomPolicy(names)
	}
	if err := hs.SetPolicy(ctx, policy); err != nil {
		b.Fatal(err)
	}
	server := loginServer(b, h)
	for i, uid := range bg {
		k, err := hs.CreatePreAuthKey(ctx, uid, true, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		roomnettest.Node(b, roomnet.JoinGrant{LoginServer: server, AuthKey: k.Key}, fmt.Sprintf("bg%d", i))
	}

	var joins, creates, cpu []time.Duration
	for i := 0; b.Loop(); i++ {
		c0 := cpuTicks(b, login.PID())
		start := time.Now()
		u, err := hs.CreateUser(ctx, fmt.Sprintf("%sm%d", service.RoomUserPrefix, i))
		if err != nil {
			b.Fatal(err)
		}
		if mode == "per-room" {
			names = append(names, u.Name)
			policy = perRoomPolicy(names)
			if err := hs.SetPolicy(ctx, policy); err != nil {
				b.Fatal(err)
			}
		}
		creates = append(creates, time.Since(start))
		start = time.Now()
		kh, err := hs.CreatePreAuthKey(ctx, u.ID, true, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		kp, err := hs.CreatePreAuthKey(ctx, u.ID, true, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		host := startBenchNode(b, roomnet.JoinGrant{LoginServer: server, AuthKey: kh.Key}, fmt.Sprintf("h%d", i))
		player := startBenchNode(b, roomnet.JoinGrant{LoginServer: server, AuthKey: kp.Key}, fmt.Sprintf("p%d", i))
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := player.WaitReachable(wctx, host.IP()); err != nil {
			b.Fatal(err)
		}
		cancel()
		joins = append(joins, time.Since(start))
		cpu = append(cpu, time.Duration((cpuTicks(b, login.PID())-c0)*float64(time.Millisecond)))
		b.StopTimer()
		host.Close()
		player.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(median(joins).Microseconds())/1000, "join-p50-ms")
	b.ReportMetric(float64(median(creates).Microseconds())/1000, "create-p50-ms")
	b.ReportMetric(float64(median(cpu).Microseconds())/1000, "hs-cpu-ms/op")
	b.ReportMetric(float64(len(policy)), "policy-bytes")
}

func median(s []time.Duration) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c[len(c)/2]
}

func loginServer(b *testing.B, h *roomnettest.Harness) string {
	alice := h.User("policy-bench")
	r, err := alice.CreateRoom(context.Background(), roomnet.CreateRoom{Name: "probe", MaxPlayers: 2, Public: true})
	if err != nil {
		b.Fatal(err)
	}
	return r.Join.LoginServer
}

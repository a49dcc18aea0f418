package chatclient_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnettest"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchClients(b *testing.B, h *roomnettest.Harness, n int) []*chatclient.Client {
	var out []*chatclient.Client
	for i := range n {
		u := h.User(fmt.Sprintf("bench%d", i))
		cl, err := chatclient.Dial(context.Background(), chatclient.Options{URL: wsURL(h), Token: u.Token(), Window: 64}) // BenchmarkSendThroughput keeps 64 in flight per client
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cl.Close() })
		go func() {
			for range cl.Events() {
			}
		}()
		if err := cl.Join(context.Background(), "lobby:bench"); err != nil {
			b.Fatal(err)
		}
		out = append(out, cl)
	}
	return out
}

// BenchmarkAckedSend measures send → durable ack latency through the real
// server (SQLite, WAL, group commit) at a paced 1,000 msg/s from 10
// clients in one lobby; -benchtime sets the number of messages.
func BenchmarkAckedSend(b *testing.B) {
	h := roomnettest.New(b, func(s *roomnettest.Settings) { s.Config.Chat.SendPerSec = 1000; s.Config.Chat.FramesPerSec = 2000 })
	clients := benchClients(b, h, 10)
	const rate = 1000
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		<-tick.C
		start := time.Now()
		p := clients[i%len(clients)].Send("lobby:bench", "benchmark message with a typical length of about sixty bytes")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Result(); err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			lat = append(lat, time.Since(start))
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(len(lat))/(cpuTime()-cpu0).Seconds(), "msgs/cpu-s")
	}
}

// BenchmarkSendThroughput sends as fast as 10 clients with 64 messages
// in flight each can: acked messages per second and per CPU second of the
// whole process (server and clients share it, so per-core server figures
// are a lower bound).
func BenchmarkSendThroughput(b *testing.B) {
	h := roomnettest.New(b, func(s *roomnettest.Settings) { s.Config.Chat.SendPerSec = 1e6; s.Config.Chat.FramesPerSec = 1e6 })
	clients := benchClients(b, h, 10)
	sem := make(chan struct{}, 64*len(clients))
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		sem <- struct{}{}
		p := clients[i%len(clients)].Send("lobby:bench", "benchmark message with a typical length of about sixty bytes")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Result(); err != nil {
				b.Error(err)
			}
			<-sem
		}()
	}
	wg.Wait()
	b.StopTimer()
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "msgs/cpu-s")
	batches, msgs := h.Server.Chat.Stats().Batches, h.Server.Chat.Stats().Messages
	if batches > 0 {
		b.ReportMetric(float64(msgs)/float64(batches), "msgs/batch")
	}
}

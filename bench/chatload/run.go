package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/roomnet/roomnet/bench/internal/measure"
)

type common struct {
	target, url, api, secret, apiKey string
	pid                              int
}

func (c *common) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.target, "target", "roomnet", "roomnet or centrifugo")
	fs.StringVar(&c.url, "url", "ws://127.0.0.1:7100/ws", "WebSocket URL")
	fs.StringVar(&c.api, "api", "http://127.0.0.1:7100", "roomnet: the bench server's base URL; centrifugo: its /api URL")
	fs.StringVar(&c.secret, "secret", "chatload-secret", "centrifugo: token HMAC key")
	fs.StringVar(&c.apiKey, "api-key", "chatload-api-key", "centrifugo: HTTP API key")
	fs.IntVar(&c.pid, "pid", 0, "server process id, for CPU and RSS")
}

func (c *common) open() (target, error) {
	switch c.target {
	case "roomnet":
		return &roomnet{url: c.url, http: c.api, lobby: "lobby:bench"}, nil
	case "centrifugo":
		return &centrifugo{url: c.url, api: c.api, secret: c.secret, apiKey: c.apiKey, channel: "lobby"}, nil
	}
	return nil, fmt.Errorf("unknown target %q", c.target)
}

// raiseFiles lifts the open file limit for thousands of sockets.
func raiseFiles() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// connectAll opens n subscribers, 50 at a time, with progress.
func connectAll(ctx context.Context, t target, first, n int, s *sink) ([]func(), error) {
	closers := make([]func(), n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(50)
	var mu sync.Mutex
	done := 0
	for i := range n {
		g.Go(func() error {
			cctx, cancel := context.WithTimeout(gctx, 20*time.Second)
			defer cancel()
			c, err := t.subscribe(cctx, first+i, s)
			if err != nil {
				return fmt.Errorf("subscriber %d: %w", first+i, err)
			}
			closers[i] = c
			mu.Lock()
			done++
			if done%1000 == 0 {
				fmt.Fprintf(os.Stderr, "chatload: %d/%d connected\n", done, n)
			}
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	return closers, err
}

// Result is one run's figures.
type Result struct {
	Target       string  `json:"target"`
	Label        string  `json:"label"`
	Clients      int     `json:"clients"`
	Publishers   int     `json:"publishers"`
	Rate         float64 `json:"rate"`
	Seconds      float64 `json:"seconds"`
	Published    int64   `json:"published"`
	DeliveredPS  float64 `json:"delivered_per_sec"`
	Expected     int64   `json:"expected"`
	Delivered    int64   `json:"delivered"`
	P50, P99     string
	P999         string
	CritN        int64   `json:"critical"`
	CritP50      string  `json:"critical_p50"`
	CritP99      string  `json:"critical_p99"`
	CPU          float64 `json:"server_cpu_cores"`
	RSSMB        float64 `json:"server_rss_mb"`
	WireKBPerCli float64 `json:"wire_kb_per_client_per_sec"`
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var c common
	c.flags(fs)
	clients := fs.Int("clients", 1000, "subscribers in the lobby")
	pubs := fs.Int("publishers", 10, "publishing connections")
	rate := fs.Float64("rate", 500, "messages per second, all publishers together")
	dur := fs.Duration("duration", 20*time.Second, "measured time")
	size := fs.Int("size", 64, "message body bytes")
	crit := fs.Duration("critical-every", time.Second, "a critical message this often (0: none)")
	label := fs.String("label", "", "label for the report")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's CPU profile here (is it the bottleneck?)")
	_ = fs.Parse(args)
	raiseFiles()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	ctx := context.Background()
	s := &sink{}
	closers, err := connectAll(ctx, t, 1, *clients, s)
	defer func() {
		for _, cl := range closers {
			if cl != nil {
				cl()
			}
		}
	}()
	if err != nil {
		return err
	}
	var sends []func(string) error
	for i := range *pubs {
		send, stop, err := t.publisher(ctx, 1_000_000+i)
		if err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		defer stop()
		sends = append(sends, send)
	}
	time.Sleep(time.Second)
	pad := strings.Repeat("x", max(*size-30, 0))
	var published int64
	// publish sends at the offered rate: each tick sends what is due by
	// then, so ticks lost while the core is busy do not lower the rate.
	sentAll := 0
	publish := func(until time.Time) {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		begin, base := time.Now(), sentAll
		for now := begin; now.Before(until); now = <-tick.C {
			due := base + int(now.Sub(begin).Seconds()**rate)
			for ; sentAll < due; sentAll++ {
				body := "t=" + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + pad
				if err := sends[sentAll%len(sends)](body); err != nil {
					fmt.Fprintln(os.Stderr, "chatload: publish:", err)
					return
				}
				if s.from.Load() != 0 {
					published++
				}
			}
		}
	}
	// Warm up for 2 s, then measure.
	publish(time.Now().Add(2 * time.Second))
	p := measure.Proc(c.pid)
	cpu0, _ := p.CPU()
	bytes0 := s.bytes.Load()
	start := time.Now()
	s.from.Store(start.UnixNano())
	stopCrit := make(chan struct{})
	critDone := make(chan struct{})
	go func() {
		defer close(critDone)
		if *crit <= 0 {
			return
		}
		tk := time.NewTicker(*crit)
		defer tk.Stop()
		for {
			select {
			case <-stopCrit:
				return
			case <-tk.C:
				body := "t=" + strconv.FormatInt(time.Now().UnixNano(), 10) + " critical notice"
				if err := t.critical(ctx, body); err != nil {
					fmt.Fprintln(os.Stderr, "chatload: critical:", err)
				}
			}
		}
	}()
	publish(start.Add(*dur))
	s.to.Store(time.Now().UnixNano())
	elapsed := time.Since(start)
	cpu1, _ := p.CPU()
	rss, _ := p.Mem("VmRSS")
	wire := s.bytes.Load() - bytes0
	close(stopCrit)
	<-critDone
	// Let the tail arrive, then count what never did.
	time.Sleep(3 * time.Second)
	delivered := s.delivered.Load()
	r := Result{
		Target: c.target, Label: *label, Clients: *clients, Publishers: *pubs, Rate: *rate, Seconds: elapsed.Seconds(),
		Published: published, DeliveredPS: float64(delivered) / elapsed.Seconds(),
		Expected: published * int64(*clients), Delivered: delivered,
		P50: s.lat.Quantile(0.5).String(), P99: s.lat.Quantile(0.99).String(), P999: s.lat.Quantile(0.999).String(),
		CritN: s.critN.Load(), CritP50: s.crit.Quantile(0.5).String(), CritP99: s.crit.Quantile(0.99).String(),
		CPU:          (cpu1 - cpu0).Seconds() / elapsed.Seconds(),
		RSSMB:        float64(rss) / (1 << 20),
		WireKBPerCli: float64(wire) / 1024 / float64(*clients) / elapsed.Seconds(),
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if c.pid == 0 {
		return errors.New("no -pid: CPU and RSS not measured")
	}
	return nil
}

func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	var c common
	c.flags(fs)
	steps := fs.String("steps", "1000,5000,10000", "connection counts to measure at")
	settle := fs.Duration("settle", 5*time.Second, "wait before reading RSS")
	_ = fs.Parse(args)
	raiseFiles()
	t, err := c.open()
	if err != nil {
		return err
	}
	if c.pid == 0 {
		return errors.New("-pid is required")
	}
	p := measure.Proc(c.pid)
	time.Sleep(*settle)
	base, err := p.Mem("VmRSS")
	if err != nil {
		return err
	}
	ctx := context.Background()
	var all []func()
	defer func() {
		for _, cl := range all {
			cl()
		}
	}()
	have := 0
	for _, f := range strings.Split(*steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= have {
			return fmt.Errorf("bad step %q", f)
		}
		more, err := connectAll(ctx, t, 1+have, n-have, &sink{})
		all = append(all, more...)
		if err != nil {
			return err
		}
		have = n
		time.Sleep(*settle)
		rss, err := p.Mem("VmRSS")
		if err != nil {
			return err
		}
		out, _ := json.Marshal(map[string]any{
			"target": c.target, "connections": n, "rss_mb": float64(rss) / (1 << 20),
			"base_mb": float64(base) / (1 << 20), "kb_per_conn": float64(rss-base) / 1024 / float64(n),
		})
		fmt.Println(string(out))
	}
	return nil
}

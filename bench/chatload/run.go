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
	pid, enginePid                   string
}

func (c *common) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.target, "target", "roomnet", "roomnet or centrifugo")
	fs.StringVar(&c.url, "url", "ws://127.0.0.1:7100/ws", "WebSocket URL; comma-separated for a cluster, clients spread over them in turn")
	fs.StringVar(&c.api, "api", "http://127.0.0.1:7100", "roomnet: the bench server's base URL; centrifugo: its /api URL (comma-separated like -url)")
	fs.StringVar(&c.secret, "secret", "chatload-secret", "centrifugo: token HMAC key")
	fs.StringVar(&c.apiKey, "api-key", "chatload-api-key", "centrifugo: HTTP API key")
	fs.StringVar(&c.pid, "pid", "", "server process ids (comma-separated), for CPU and RSS, summed")
	fs.StringVar(&c.enginePid, "engine-pid", "", "process ids of the engines the servers share (Redis, PostgreSQL's postmaster), with their children; CPU reported apart")
}

// open returns one target per node: -url and -api name them in the same
// order.
func (c *common) open() ([]target, error) {
	urls, apis := strings.Split(c.url, ","), strings.Split(c.api, ",")
	if len(urls) != len(apis) {
		return nil, fmt.Errorf("%d URLs but %d API URLs", len(urls), len(apis))
	}
	ts := make([]target, len(urls))
	for i := range urls {
		switch c.target {
		case "roomnet":
			ts[i] = &roomnet{url: urls[i], http: apis[i], lobby: "lobby:bench"}
		case "centrifugo":
			ts[i] = &centrifugo{url: urls[i], api: apis[i], secret: c.secret, apiKey: c.apiKey, channel: "lobby"}
		default:
			return nil, fmt.Errorf("unknown target %q", c.target)
		}
	}
	return ts, nil
}

// procs parses a comma-separated list of process ids.
func procs(list string) (measure.Procs, error) {
	var ps measure.Procs
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("bad process id %q", f)
		}
		ps = append(ps, measure.Proc(pid))
	}
	return ps, nil
}

// raiseFiles lifts the open file limit for thousands of sockets.
func raiseFiles() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// connectAll opens n subscribers, 50 at a time, with progress, spread
// over the nodes in turn.
func connectAll(ctx context.Context, ts []target, first, n int, s *sink) ([]func(), error) {
	closers := make([]func(), n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(50)
	var mu sync.Mutex
	done := 0
	for i := range n {
		g.Go(func() error {
			cctx, cancel := context.WithTimeout(gctx, 20*time.Second)
			defer cancel()
			c, err := ts[(first+i)%len(ts)].subscribe(cctx, first+i, s)
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
	Nodes        int     `json:"nodes"`
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
	AckN         int64   `json:"acked"`
	AckP50       string  `json:"ack_p50"`
	AckP99       string  `json:"ack_p99"`
	CPU          float64 `json:"server_cpu_cores"`
	CPUPerMsg    float64 `json:"server_cpu_us_per_delivered"`
	EngineCPU    float64 `json:"engine_cpu_cores,omitempty"`
	EnginePerMsg float64 `json:"engine_cpu_us_per_delivered,omitempty"`
	RSSMB        float64 `json:"server_rss_mb"`
	WireKBPerCli float64 `json:"wire_kb_per_client_per_sec"`
	// Where an acked send spent its time on the servers (-metrics).
	SeqP50    string `json:"seq_p50,omitempty"`
	SeqP99    string `json:"seq_p99,omitempty"`
	CommitP50 string `json:"commit_p50,omitempty"`
	CommitP99 string `json:"commit_p99,omitempty"`
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
	metricsURLs := fs.String("metrics", "", "roomnet nodes' /metrics URLs, comma-separated: report the seq and commit stages of an acked send")
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
	ts, err := c.open()
	if err != nil {
		return err
	}
	servers, err := procs(c.pid)
	if err != nil {
		return err
	}
	engines, err := procs(c.enginePid)
	if err != nil {
		return err
	}
	ctx := context.Background()
	s := &sink{}
	closers, err := connectAll(ctx, ts, 1, *clients, s)
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
		send, stop, err := ts[i%len(ts)].publisher(ctx, 1_000_000+i, s)
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
	cpu0, ecpu0 := servers.Snapshot(), engines.WithChildren().Snapshot()
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
				if err := ts[0].critical(ctx, body); err != nil {
					fmt.Fprintln(os.Stderr, "chatload: critical:", err)
				}
			}
		}
	}()
	publish(start.Add(*dur))
	s.to.Store(time.Now().UnixNano())
	elapsed := time.Since(start)
	cpu, ecpu := cpu0.Since(), ecpu0.Since()
	rss, _ := servers.Mem("VmRSS")
	wire := s.bytes.Load() - bytes0
	close(stopCrit)
	<-critDone
	// Let the tail arrive, then count what never did.
	time.Sleep(3 * time.Second)
	delivered := s.delivered.Load()
	perMsg := func(cpu time.Duration) float64 {
		if delivered == 0 {
			return 0
		}
		return float64(cpu.Microseconds()) / float64(delivered)
	}
	r := Result{
		Target: c.target, Label: *label, Nodes: len(ts), Clients: *clients, Publishers: *pubs, Rate: *rate, Seconds: elapsed.Seconds(),
		Published: published, DeliveredPS: float64(delivered) / elapsed.Seconds(),
		Expected: published * int64(*clients), Delivered: delivered,
		P50: s.lat.Quantile(0.5).String(), P99: s.lat.Quantile(0.99).String(), P999: s.lat.Quantile(0.999).String(),
		CritN: s.critN.Load(), CritP50: s.crit.Quantile(0.5).String(), CritP99: s.crit.Quantile(0.99).String(),
		AckN: s.ackN.Load(), AckP50: s.ack.Quantile(0.5).String(), AckP99: s.ack.Quantile(0.99).String(),
		CPU:          cpu.Seconds() / elapsed.Seconds(),
		CPUPerMsg:    perMsg(cpu),
		EngineCPU:    ecpu.Seconds() / elapsed.Seconds(),
		EnginePerMsg: perMsg(ecpu),
		RSSMB:        float64(rss) / (1 << 20),
		WireKBPerCli: float64(wire) / 1024 / float64(*clients) / elapsed.Seconds(),
	}
	if *metricsURLs != "" {
		st, err := readStages(strings.Split(*metricsURLs, ","))
		if err != nil {
			return err
		}
		r.SeqP50, r.SeqP99, r.CommitP50, r.CommitP99 = st.SeqP50, st.SeqP99, st.CommitP50, st.CommitP99
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if len(servers) == 0 {
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
	ts, err := c.open()
	if err != nil {
		return err
	}
	p, err := procs(c.pid)
	if err != nil {
		return err
	}
	if len(p) == 0 {
		return errors.New("-pid is required")
	}
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
		more, err := connectAll(ctx, ts, 1+have, n-have, &sink{})
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

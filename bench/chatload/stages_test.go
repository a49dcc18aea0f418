package main

import (
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestQuantileInterpolatesWithinTheBucket(t *testing.T) {
	cum := map[float64]uint64{0.001: 50, 0.002: 90, 0.004: 100, math.Inf(1): 100}
	for phi, want := range map[float64]time.Duration{0.5: time.Millisecond, 0.7: 1500 * time.Microsecond, 0.99: 3800 * time.Microsecond} {
		if got := quantile(cum, phi); got != want {
			t.Errorf("q%v = %v, want %v", phi, got, want)
		}
	}
	if got := quantile(map[float64]uint64{math.Inf(1): 0}, 0.99); got != 0 {
		t.Errorf("no observations: %v, want 0", got)
	}
}

// Two nodes' histograms are summed before the quantile is taken.
func TestReadStagesSumsTheNodes(t *testing.T) {
	var urls []string
	for _, obs := range [][]float64{{0.0005, 0.0005, 0.0005}, {0.0005, 0.003}} {
		reg := prometheus.NewRegistry()
		seq := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomnet_chat_seq_seconds", Buckets: []float64{0.001, 0.002, 0.004}})
		reg.MustRegister(seq)
		for _, v := range obs {
			seq.Observe(v)
		}
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	st, err := readStages(urls)
	if err != nil {
		t.Fatal(err)
	}
	// 5 observations: 4 at or below 1 ms, 1 in (2 ms, 4 ms].
	if st.SeqP50 != "625µs" || st.SeqP99 != "3.9ms" {
		t.Fatalf("seq p50 %s p99 %s, want 625µs and 3.9ms", st.SeqP50, st.SeqP99)
	}
	if st.CommitP50 != "" {
		t.Fatalf("commit p50 %q from nodes that have no such histogram", st.CommitP50)
	}
}

package main

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// stages reads where a roomnet node's acked send spends its time: the
// servers' histograms of sequence allocation and of the group commit,
// summed over every node's /metrics (the serve command's -pprof address).
type stages struct {
	SeqP50, SeqP99       string
	CommitP50, CommitP99 string
}

// readStages scrapes urls and returns the quantiles; a histogram missing
// everywhere gives empty figures.
func readStages(urls []string) (stages, error) {
	sum := map[string]map[float64]uint64{} // histogram → upper bound → cumulative count
	for _, u := range urls {
		resp, err := http.Get(u)
		if err != nil {
			return stages{}, fmt.Errorf("reading %s: %w", u, err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			return stages{}, fmt.Errorf("parsing %s: %w", u, err)
		}
		for _, name := range []string{"roomnet_chat_seq_seconds", "roomnet_chat_commit_seconds"} {
			f := fams[name]
			if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
				continue
			}
			if sum[name] == nil {
				sum[name] = map[float64]uint64{}
			}
			for _, m := range f.GetMetric() {
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) { // the parser may list +Inf: it is the sample count
						sum[name][b.GetUpperBound()] += b.GetCumulativeCount()
					}
				}
				sum[name][math.Inf(1)] += h.GetSampleCount()
			}
		}
	}
	q := func(name string, phi float64) string {
		if sum[name] == nil {
			return ""
		}
		return quantile(sum[name], phi).Round(time.Microsecond).String()
	}
	return stages{
		SeqP50: q("roomnet_chat_seq_seconds", 0.5), SeqP99: q("roomnet_chat_seq_seconds", 0.99),
		CommitP50: q("roomnet_chat_commit_seconds", 0.5), CommitP99: q("roomnet_chat_commit_seconds", 0.99),
	}, nil
}

// quantile interpolates linearly within the bucket holding the phi-th
// observation, as Prometheus's histogram_quantile does.
func quantile(cum map[float64]uint64, phi float64) time.Duration {
	bounds := make([]float64, 0, len(cum))
	for b := range cum {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	total := cum[math.Inf(1)]
	if total == 0 {
		return 0
	}
	rank := phi * float64(total)
	lower, below := 0.0, uint64(0)
	for _, b := range bounds {
		c := cum[b]
		if float64(c) >= rank {
			if math.IsInf(b, 1) {
				return time.Duration(lower * float64(time.Second)) // past the last bound: report it
			}
			frac := 0.0
			if c > below {
				frac = (rank - float64(below)) / float64(c-below)
			}
			return time.Duration((lower + (b-lower)*frac) * float64(time.Second))
		}
		lower, below = b, c
	}
	return 0
}

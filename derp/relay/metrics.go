package relay

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomnet/roomnet/roomnet"
)

// Collector exports the relay's derpserver counters (clients, bytes and
// packets relayed, drops by reason, queue and rate-limit figures) as
// Prometheus metrics named roomnet_derp_*.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Server }

var derpDesc = prometheus.NewDesc("roomnet_derp_stat", "A derpserver counter or gauge, by name.", []string{"name"}, nil)

var pairsDesc = prometheus.NewDesc("roomnet_derp_relayed_pairs", "Node pairs (one direction each) the relay carried a packet between in the last 30 s.", nil, nil)

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- derpDesc; ch <- pairsDesc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	var vars map[string]any
	if err := json.Unmarshal([]byte(c.s.derp.ExpVar(c.s.opts.RateBytesPerSec > 0).String()), &vars); err != nil {
		return
	}
	flatten(ch, "", vars)
	ch <- prometheus.MustNewConstMetric(pairsDesc, prometheus.GaugeValue, float64(len(c.s.flows.since(c.s.flows.now().Add(-30*time.Second)))))
}

func flatten(ch chan<- prometheus.Metric, prefix string, vars map[string]any) {
	for k, v := range vars {
		name := strings.TrimPrefix(prefix+"_"+k, "_")
		switch t := v.(type) {
		case float64:
			ch <- prometheus.MustNewConstMetric(derpDesc, prometheus.UntypedValue, t, name)
		case map[string]any:
			flatten(ch, name, t)
		}
	}
}

// Stats returns the relay's client count and bytes relayed so far.
func (s *Server) Stats() roomnet.RelayStats {
	var vars struct {
		Clients  float64 `json:"gauge_clients_local"`
		Received float64 `json:"bytes_received"`
		Sent     float64 `json:"bytes_sent"`
	}
	_ = json.Unmarshal([]byte(s.derp.ExpVar(s.opts.RateBytesPerSec > 0).String()), &vars)
	return roomnet.RelayStats{Clients: int(vars.Clients), BytesReceived: vars.Received, BytesSent: vars.Sent}
}

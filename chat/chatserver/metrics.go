package chatserver

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	framesIn        *prometheus.CounterVec
	stored          prometheus.Counter
	dedupes         prometheus.Counter
	deleted         prometheus.Counter
	fanout          prometheus.Counter
	bulkDropped     prometheus.Counter
	slowClosed      prometheus.Counter
	heartbeatClosed prometheus.Counter
	violations      prometheus.Counter
	commitLatency   prometheus.Histogram
	seqLatency      prometheus.Histogram
	stormChanges    *prometheus.CounterVec
	notifies        prometheus.Counter
	pulls           *prometheus.CounterVec
	compressIn      prometheus.Counter
	compressOut     prometheus.Counter
	refused         *prometheus.CounterVec
	seqConflicts    prometheus.Counter
	seqUnavailable  prometheus.Counter
	publishFailed   prometheus.Counter
}

// newMetrics makes the node's metrics and registers them with reg (nil:
// not registered); storming and connections are read at each scrape.
func newMetrics(reg *prometheus.Registry, storming, connections func() int) metrics {
	m := metrics{
		framesIn:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomnet_chat_frames_in_total", Help: "Frames received by type."}, []string{"type"}),
		stored:          prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_messages_stored_total", Help: "Messages durably stored."}),
		dedupes:         prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_dedupes_total", Help: "Retried sends answered from the store."}),
		deleted:         prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_messages_deleted_total", Help: "Messages deleted by moderators."}),
		fanout:          prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_deliveries_total", Help: "Frames handed to connections by fan-out."}),
		bulkDropped:     prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_bulk_dropped_total", Help: "Messages dropped from full bulk lanes (replaced by notify)."}),
		slowClosed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_slow_consumer_closed_total", Help: "Connections closed for a full priority lane."}),
		heartbeatClosed: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_heartbeat_closed_total", Help: "Connections closed for missed heartbeats."}),
		violations:      prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_violations_total", Help: "Rate-limited or malformed frames."}),
		stormChanges:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomnet_chat_storm_changes_total", Help: "Lobby mode changes by the mode entered (storm, direct)."}, []string{"mode"}),
		notifies:        prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_storm_notifies_total", Help: "Notifies handed to connections by storm mode."}),
		pulls:           prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomnet_chat_pulls_total", Help: "Pull answers by source (built, cached)."}, []string{"source"}),
		compressIn:      prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_compress_in_bytes_total", Help: "Bytes of pages before compression."}),
		compressOut:     prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_compress_out_bytes_total", Help: "Bytes of pages after compression."}),
		refused:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomnet_chat_connections_refused_total", Help: "Connections refused by admission, by reason (rate, address, user)."}, []string{"reason"}),
		seqConflicts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_seq_conflicts_total", Help: "Writes refused because another node had stored their seq; each is written again under a fresh seq."}),
		seqUnavailable:  prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_seq_unavailable_total", Help: "Sends refused as unavailable because the shared sequencer (Redis) could not allocate."}),
		publishFailed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "roomnet_chat_publish_failed_total", Help: "Stored messages the bus did not take (Redis down or stalled): this node's clients got them, the other nodes' clients pull them."}),
		seqLatency:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomnet_chat_seq_seconds", Help: "Sequence number allocation (on a cluster node: the Redis round trip).", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14)}),
		commitLatency:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomnet_chat_commit_seconds", Help: "Submit to durable write.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.framesIn, m.stored, m.dedupes, m.deleted, m.fanout, m.bulkDropped, m.slowClosed, m.heartbeatClosed, m.violations, m.commitLatency, m.seqLatency,
			m.stormChanges, m.notifies, m.pulls, m.compressIn, m.compressOut, m.refused, m.seqConflicts, m.seqUnavailable, m.publishFailed,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomnet_chat_storm_lobbies", Help: "Lobbies in storm mode."}, func() float64 {
				return float64(storming())
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomnet_chat_connections", Help: "Open chat connections."}, func() float64 {
				return float64(connections())
			}))
	}
	return m
}

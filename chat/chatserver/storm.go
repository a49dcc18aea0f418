package chatserver

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// meterSlots divides a meter's window.
const meterSlots = 10

// meter counts events in a sliding window of meterSlots slots.
type meter struct {
	slots [meterSlots]uint32
	idx   int
	start time.Time // start of the current slot
}

// advance moves the window to now.
func (m *meter) advance(now time.Time, window time.Duration) {
	width := window / meterSlots
	if m.start.IsZero() {
		m.start = now
		return
	}
	steps := int(now.Sub(m.start) / width)
	if steps <= 0 {
		return
	}
	if steps >= meterSlots {
		m.slots = [meterSlots]uint32{}
	} else {
		for range steps {
			m.idx = (m.idx + 1) % meterSlots
			m.slots[m.idx] = 0
		}
	}
	m.start = m.start.Add(time.Duration(steps) * width)
}

func (m *meter) add(now time.Time, window time.Duration) {
	m.advance(now, window)
	m.slots[m.idx]++
}

// rate returns events per second over the window.
func (m *meter) rate(window time.Duration) float64 {
	var n uint32
	for _, v := range m.slots {
		n += v
	}
	return float64(n) / window.Seconds()
}

// storms tracks the message rate of every lobby. Above Enter messages per
// second a lobby is in storm mode: its messages are no longer pushed one
// by one; each subscriber gets at most one notify per interval and pulls
// batches. Below Exit it returns to direct push. Critical messages are
// always pushed, on the priority lane.
type storms struct {
	enter, exit float64
	window      time.Duration
	interval    time.Duration
	log         *slog.Logger
	changes     *prometheus.CounterVec // by the mode entered

	mu    sync.Mutex
	convs map[string]*stormConv
}

func newStorms(o Options, log *slog.Logger, changes *prometheus.CounterVec) *storms {
	return &storms{
		enter: o.StormEnter, exit: o.StormExit, window: o.StormWindow, interval: o.NotifyInterval,
		log: log, changes: changes, convs: map[string]*stormConv{},
	}
}

type stormConv struct {
	meter    meter
	on       bool
	since    time.Time
	newest   uint64 // newest seq seen
	notified uint64 // newest seq announced by a notify
	critical uint64 // newest critical seq pushed
}

// observe counts a message of a lobby and reports whether the lobby is in
// storm mode, in which case the message is announced by the next notify.
func (st *storms) observe(conv string, seq uint64, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	sc := st.convs[conv]
	if sc == nil {
		sc = &stormConv{}
		st.convs[conv] = sc
	}
	sc.meter.add(now, st.window)
	sc.newest = max(sc.newest, seq)
	if !sc.on && sc.meter.rate(st.window) >= st.enter {
		sc.on, sc.since, sc.notified = true, now, seq-1
		st.changes.WithLabelValues("storm").Inc()
		st.log.Info("lobby entered storm mode", "conv", conv, "rate", sc.meter.rate(st.window), "threshold", st.enter)
	}
	return sc.on
}

// pushedCritical records a critical message pushed to a lobby's
// subscribers (in any mode): they may pull up to it.
func (st *storms) pushedCritical(conv string, seq uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if sc := st.convs[conv]; sc != nil {
		sc.critical = max(sc.critical, seq)
	}
}

// pullCap returns, for a lobby in storm mode, the newest seq its
// subscribers have been told of (by a notify or a pushed critical
// message). Pulls are answered up to it, so that every
// subscriber that answers the same notify gets the same page.
func (st *storms) pullCap(conv string) (uint64, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sc := st.convs[conv]
	if sc == nil || !sc.on {
		return 0, false
	}
	return max(sc.notified, sc.critical), true
}

// count returns how many lobbies are in storm mode.
func (st *storms) count() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, sc := range st.convs {
		if sc.on {
			n++
		}
	}
	return n
}

// notifyGroups is how many groups a storming lobby's subscribers are
// notified in: every interval the newest seq is fixed once, and the
// groups are told it one after the other, interval/notifyGroups apart.
// Each subscriber still gets one notify per interval and all of them
// still share one page (they all stand at the same announced seq), but
// their pulls come in eight small waves instead of one wall, so a
// critical message never queues behind a thousand pull answers.
const notifyGroups = 8

type announce struct {
	conv string
	seq  uint64
	all  bool // the storm ended: every group at once
}

// tick fixes, for every storming lobby, the seq this interval announces,
// and ends storms whose rate fell below Exit (their last messages are
// announced to every group). The caller tells the groups.
func (st *storms) tick(now time.Time) []announce {
	var out []announce
	st.mu.Lock()
	defer st.mu.Unlock()
	for conv, sc := range st.convs {
		sc.meter.advance(now, st.window)
		r := sc.meter.rate(st.window)
		if sc.on {
			if r < st.exit {
				sc.on = false
				out = append(out, announce{conv, sc.newest, true})
				sc.notified = sc.newest
				st.changes.WithLabelValues("direct").Inc()
				st.log.Info("lobby left storm mode", "conv", conv, "rate", r, "threshold", st.exit, "lasted", now.Sub(sc.since).Round(time.Millisecond))
			} else if sc.newest > sc.notified {
				out = append(out, announce{conv, sc.newest, false})
				sc.notified = sc.newest
			}
		}
		if !sc.on && r == 0 {
			delete(st.convs, conv)
		}
	}
	return out
}

// loop announces storming lobbies' news with notify until closing is
// closed.
func (st *storms) loop(closing <-chan struct{}, notify func(conv string, seq uint64, group int)) {
	t := time.NewTicker(st.interval / notifyGroups)
	defer t.Stop()
	var due []announce
	for group := 0; ; group = (group + 1) % notifyGroups {
		select {
		case <-closing:
			return
		case now := <-t.C:
			if group == 0 {
				due = st.tick(now)
			}
			for _, a := range due {
				switch {
				case a.all && group == 0:
					notify(a.conv, a.seq, -1)
				case !a.all:
					notify(a.conv, a.seq, group)
				}
			}
		}
	}
}

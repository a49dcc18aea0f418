package chat

import "time"

// Heartbeat bounds. A client pings every HeartbeatInterval(...); a server
// closes a connection that stays silent longer than Deadline(...).
const (
	MinHeartbeat = 5 * time.Second
	MaxHeartbeat = 30 * time.Second
	// RefRTT is the round trip at which the interval is half of MaxHeartbeat.
	RefRTT = 250 * time.Millisecond
)

// HeartbeatInterval is the ping interval for a connection with smoothed
// round trip srtt and variation rttvar:
//
//	interval = clamp(MaxHeartbeat / (1 + (srtt + 4·rttvar) / RefRTT), MinHeartbeat, MaxHeartbeat)
//
// A fast, steady network pings about every 27 s (NAT bindings stay warm and
// a phone sleeps); a slow or jittery one pings more often, down to every
// 5 s, so that a dead path is noticed while the user still waits for it.
// With no measurement yet (srtt = 0) it is MaxHeartbeat.
func HeartbeatInterval(srtt, rttvar time.Duration) time.Duration {
	if srtt <= 0 {
		return MaxHeartbeat
	}
	x := float64(srtt+4*rttvar) / float64(RefRTT)
	d := time.Duration(float64(MaxHeartbeat) / (1 + x))
	return min(max(d, MinHeartbeat), MaxHeartbeat)
}

// MissedBeats is how many consecutive heartbeats a server lets a client
// miss before it closes the connection: more on a poor network, where a
// ping is more likely to be delayed or lost.
func MissedBeats(srtt time.Duration) int {
	switch {
	case srtt <= 0:
		return 2
	case srtt < 200*time.Millisecond:
		return 2
	case srtt < time.Second:
		return 3
	default:
		return 4
	}
}

// Deadline is how long a server waits for the next frame of a client that
// announced interval and srtt: the missed beats plus one interval, and the
// round trip.
func Deadline(interval, srtt time.Duration) time.Duration {
	interval = min(max(interval, MinHeartbeat), MaxHeartbeat)
	return time.Duration(MissedBeats(srtt)+1)*interval + 2*srtt + time.Second
}

// RTTEstimator smooths round-trip samples the way TCP does (RFC 6298):
// srtt ← 7/8·srtt + 1/8·sample, rttvar ← 3/4·rttvar + 1/4·|srtt − sample|.
// The zero value is ready; it is not safe for concurrent use.
type RTTEstimator struct {
	SRTT, RTTVar time.Duration
}

// Add records one sample.
func (e *RTTEstimator) Add(sample time.Duration) {
	if sample < 0 {
		return
	}
	if e.SRTT == 0 {
		e.SRTT, e.RTTVar = sample, sample/2
		return
	}
	diff := e.SRTT - sample
	if diff < 0 {
		diff = -diff
	}
	e.RTTVar = (3*e.RTTVar + diff) / 4
	e.SRTT = (7*e.SRTT + sample) / 8
}

// Interval is HeartbeatInterval for the current estimate.
func (e *RTTEstimator) Interval() time.Duration { return HeartbeatInterval(e.SRTT, e.RTTVar) }

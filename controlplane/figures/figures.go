// Package figures samples the live numbers of the admin dashboard (rooms
// open, players online, relays up, messages per second, joins per minute)
// at a fixed interval and keeps a bounded history of them in memory: the
// last Keep samples, and a coarser series of one point a minute for the
// last 24 hours (CoarseKeep), so that a chart can span a day. It reads
// counts through a Source and owns nothing else.
package figures

import (
	"context"
	"sync"
	"time"

	"github.com/roomnet/roomnet/roomnet"
)

// Counts is one reading. Messages and Joins are running totals; the
// sampler turns them into rates.
type Counts struct {
	RoomsOpen     int
	MembersActive int
	PlayersOnline int
	RelaysUp      int
	Messages      int64
	Joins         int64
}

// Source reads the counts now.
type Source func(ctx context.Context) (Counts, error)

// CoarseKeep is how many coarse points a sampler keeps: a day of minutes.
const CoarseKeep = 24 * 60

// Sampler keeps the last Keep samples taken every Interval, and one
// coarse point per coarse step (a minute, or Interval if longer) for the
// last CoarseKeep steps: levels as the step's last sample, rates as the
// mean of its samples.
type Sampler struct {
	src        Source
	interval   time.Duration
	keep       int
	coarseStep time.Duration
	now        func() time.Time

	mu     sync.Mutex
	last   sample
	series []roomnet.Figures
	coarse []roomnet.Figures
	bucket bucket // the coarse step being filled
}

// bucket sums the samples of one coarse step.
type bucket struct {
	start    time.Time
	n        int
	messages float64
	joins    float64
	last     roomnet.Figures
}

type sample struct {
	at     time.Time
	counts Counts
}

// New returns a sampler; Run takes the samples.
func New(src Source, interval time.Duration, keep int) *Sampler {
	return &Sampler{src: src, interval: interval, keep: keep, coarseStep: max(time.Minute, interval), now: time.Now}
}

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.take(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.take(ctx)
		}
	}
}

func (s *Sampler) read(ctx context.Context) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := s.src(ctx)
	return sample{at: s.now(), counts: c}, err
}

func (s *Sampler) take(ctx context.Context) {
	cur, err := s.read(ctx)
	if err != nil {
		return // a gap in the chart says more than a made-up point
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.at.IsZero() {
		f := figuresOf(s.last, cur)
		s.series = append(s.series, f)
		if len(s.series) > s.keep {
			s.series = append(s.series[:0], s.series[len(s.series)-s.keep:]...)
		}
		s.addCoarse(f)
	}
	s.last = cur
}

// addCoarse adds a sample to the coarse step it falls in; a sample past
// the step closes it into a coarse point.
func (s *Sampler) addCoarse(f roomnet.Figures) {
	start := f.At.Truncate(s.coarseStep)
	if s.bucket.n > 0 && !start.Equal(s.bucket.start) {
		s.coarse = append(s.coarse, s.bucket.point())
		if len(s.coarse) > CoarseKeep {
			s.coarse = append(s.coarse[:0], s.coarse[len(s.coarse)-CoarseKeep:]...)
		}
		s.bucket = bucket{}
	}
	if s.bucket.n == 0 {
		s.bucket.start = start
	}
	s.bucket.n++
	s.bucket.messages += f.MessagesPerS
	s.bucket.joins += f.JoinsPerMin
	s.bucket.last = f
}

// point is a step's coarse point, stamped with its last sample's time.
func (b bucket) point() roomnet.Figures {
	p := b.last
	p.MessagesPerS = b.messages / float64(b.n)
	p.JoinsPerMin = b.joins / float64(b.n)
	return p
}

// figuresOf turns two samples into figures: levels of the newer one,
// rates over the interval between them.
func figuresOf(prev, cur sample) roomnet.Figures {
	f := roomnet.Figures{
		At: cur.at, RoomsOpen: cur.counts.RoomsOpen, MembersActive: cur.counts.MembersActive,
		PlayersOnline: cur.counts.PlayersOnline, RelaysUp: cur.counts.RelaysUp,
	}
	if dt := cur.at.Sub(prev.at).Seconds(); dt > 0 {
		f.MessagesPerS = float64(max(cur.counts.Messages-prev.counts.Messages, 0)) / dt
		f.JoinsPerMin = float64(max(cur.counts.Joins-prev.counts.Joins, 0)) * 60 / dt
	}
	return f
}

// Overview returns the figures now (rates since the last sample) and the
// history, oldest first: with window 0 every kept sample; otherwise the
// points of the last window, the samples themselves when the kept ones
// span it, else the coarse points (and the step being filled).
// StepSeconds says how far apart the points are.
func (s *Sampler) Overview(ctx context.Context, window time.Duration) (roomnet.Overview, error) {
	cur, err := s.read(ctx)
	if err != nil {
		return roomnet.Overview{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := roomnet.Overview{StepSeconds: s.interval.Seconds()}
	switch {
	case window <= 0:
		out.Series = append([]roomnet.Figures{}, s.series...)
	case window <= s.interval*time.Duration(s.keep):
		out.Series = since(s.series, cur.at.Add(-window))
	default:
		out.StepSeconds = s.coarseStep.Seconds()
		out.Series = since(s.coarse, cur.at.Add(-window))
		if s.bucket.n > 0 {
			out.Series = append(out.Series, s.bucket.point())
		}
	}
	if s.last.at.IsZero() {
		out.Now = figuresOf(cur, cur)
	} else {
		out.Now = figuresOf(s.last, cur)
	}
	return out, nil
}

// since copies the points of series at or after from.
func since(series []roomnet.Figures, from time.Time) []roomnet.Figures {
	i := len(series)
	for i > 0 && !series[i-1].At.Before(from) {
		i--
	}
	return append([]roomnet.Figures{}, series[i:]...)
}

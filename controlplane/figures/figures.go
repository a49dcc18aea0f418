// Package figures samples the live numbers of the admin dashboard (rooms
// open, players online, relays up, messages per second, joins per minute)
// at a fixed interval and keeps a bounded history of them in memory. It
// reads counts through a Source and owns nothing else.
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

// Sampler keeps the last Keep samples taken every Interval.
type Sampler struct {
	src      Source
	interval time.Duration
	keep     int
	now      func() time.Time

	mu     sync.Mutex
	last   sample
	series []roomnet.Figures
}

type sample struct {
	at     time.Time
	counts Counts
}

// New returns a sampler; Run takes the samples.
func New(src Source, interval time.Duration, keep int) *Sampler {
	return &Sampler{src: src, interval: interval, keep: keep, now: time.Now}
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
		s.series = append(s.series, figuresOf(s.last, cur))
		if len(s.series) > s.keep {
			s.series = append(s.series[:0], s.series[len(s.series)-s.keep:]...)
		}
	}
	s.last = cur
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
// history, oldest first.
func (s *Sampler) Overview(ctx context.Context) (roomnet.Overview, error) {
	cur, err := s.read(ctx)
	if err != nil {
		return roomnet.Overview{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := roomnet.Overview{Series: append([]roomnet.Figures{}, s.series...)}
	if s.last.at.IsZero() {
		out.Now = figuresOf(cur, cur)
	} else {
		out.Now = figuresOf(s.last, cur)
	}
	return out, nil
}

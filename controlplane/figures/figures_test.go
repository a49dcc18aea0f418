package figures

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRatesAndBoundedHistory(t *testing.T) {
	now := time.Unix(1000, 0)
	var counts Counts
	var fail bool
	s := New(func(context.Context) (Counts, error) {
		if fail {
			return Counts{}, errors.New("database gone")
		}
		return counts, nil
	}, time.Second, 3)
	s.now = func() time.Time { return now }
	ctx := context.Background()

	s.take(ctx) // the first sample only sets the base
	require.Empty(t, s.series)
	for i := 1; i <= 5; i++ {
		now = now.Add(10 * time.Second)
		counts.Messages += 50 // 5 messages a second
		counts.Joins += 2     // 12 joins a minute
		counts.RoomsOpen = i
		s.take(ctx)
	}
	require.Len(t, s.series, 3, "only the newest samples are kept")
	for _, f := range s.series {
		require.InDelta(t, 5, f.MessagesPerS, 1e-9)
		require.InDelta(t, 12, f.JoinsPerMin, 1e-9)
	}
	require.Equal(t, []int{3, 4, 5}, []int{s.series[0].RoomsOpen, s.series[1].RoomsOpen, s.series[2].RoomsOpen})

	// A failed read leaves a gap rather than a made-up point.
	fail = true
	now = now.Add(10 * time.Second)
	s.take(ctx)
	require.Len(t, s.series, 3)
	require.Equal(t, 5, s.series[2].RoomsOpen)
	_, err := s.Overview(ctx, 0)
	require.Error(t, err)

	// A counter that goes back (a restart of a source) gives no negative rate.
	fail = false
	counts.Messages = 0
	ov, err := s.Overview(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, ov.Now.MessagesPerS)
	require.Len(t, ov.Series, 3)
}

// A window longer than the kept samples is served from the coarse
// points: one a minute, levels as the minute's last sample, rates as its
// mean; a window within them from the samples themselves.
func TestRangesAndCoarsePoints(t *testing.T) {
	now := time.Unix(5990, 0) // samples at 6000 (a minute) and every 10 s
	var counts Counts
	s := New(func(context.Context) (Counts, error) { return counts, nil }, 10*time.Second, 6) // a minute of samples
	s.now = func() time.Time { return now }
	ctx := context.Background()
	s.take(ctx)
	for i := 1; i <= 60; i++ { // ten minutes
		now = now.Add(10 * time.Second)
		counts.RoomsOpen = i
		if i%6 == 0 {
			counts.Messages += 600 // a burst once a minute: 60/s for one sample, 10/s on average
		}
		s.take(ctx)
	}
	require.Len(t, s.coarse, 9, "nine closed minutes; the tenth is being filled")
	for _, p := range s.coarse {
		require.InDelta(t, 10, p.MessagesPerS, 1e-9, "the minute's mean rate")
	}
	require.Equal(t, 6, s.coarse[0].RoomsOpen, "levels are the minute's last sample")

	ov, err := s.Overview(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 10.0, ov.StepSeconds)
	require.Len(t, ov.Series, 6, "a minute of samples")
	require.Equal(t, 60, ov.Series[5].RoomsOpen)

	ov, err = s.Overview(ctx, 5*time.Minute)
	require.NoError(t, err)
	require.Equal(t, 60.0, ov.StepSeconds)
	require.Len(t, ov.Series, 6, "five minutes of coarse points and the one being filled")
	for i := 1; i < len(ov.Series); i++ {
		require.True(t, ov.Series[i].At.After(ov.Series[i-1].At), "oldest first")
	}
	require.True(t, ov.Series[0].At.After(now.Add(-5*time.Minute)) || ov.Series[0].At.Equal(now.Add(-5*time.Minute)))

	ov, err = s.Overview(ctx, 24*time.Hour)
	require.NoError(t, err)
	require.Len(t, ov.Series, 10, "everything kept")
}

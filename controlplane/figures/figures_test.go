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
	_, err := s.Overview(ctx)
	require.Error(t, err)

	// A counter that goes back (a restart of a source) gives no negative rate.
	fail = false
	counts.Messages = 0
	ov, err := s.Overview(ctx)
	require.NoError(t, err)
	require.Zero(t, ov.Now.MessagesPerS)
	require.Len(t, ov.Series, 3)
}

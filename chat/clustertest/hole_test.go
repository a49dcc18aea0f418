package clustertest

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/internal/dbtest"
	"github.com/roomnet/roomnet/internal/redistest"
	"github.com/roomnet/roomnet/roomnet"
)

// A node that allocated a seq from Redis and was killed before writing it
// leaves a hole below the next stored seq. A member's client waits for the
// hole, pulls, and after the grace period the pull tombstones it: the
// member is shown the next message instead of waiting forever. The hole is
// made here as the dead node made it: an INCR of the conversation's
// counter that no write follows.
func TestAHoleLeftByADeadNodeIsTombstoned(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two roomnetd processes")
	}
	dsn := dbtest.Postgres(t)
	if dsn == "" {
		t.Skipf("several nodes share PostgreSQL: set %s", dbtest.EnvPostgres)
	}
	rs := redistest.Start(t)
	cc := clusterConfig{dsn: dsn, redisURL: rs.URL(), extra: []string{"--auth-login-per-minute", "100000"}}
	a := startNode(t, "node1", cc)
	b := startNode(t, "node2", cc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	anon := roomnet.NewClient(a.URL())
	host, guest := user(t, ctx, anon, "host"), user(t, ctx, anon, "guest")
	room, err := host.CreateRoom(ctx, roomnet.CreateRoom{Name: "holes", MaxPlayers: 4, Public: true})
	require.NoError(t, err)
	_, err = guest.Join(ctx, room.ID, "")
	require.NoError(t, err)
	conv := chat.RoomConv(room.ID)
	sender, err := chatclient.Dial(ctx, chatclient.Options{URL: a.WSURL(), Token: host.Token()})
	require.NoError(t, err)
	defer sender.Close()
	reader, err := chatclient.Dial(ctx, chatclient.Options{URL: b.WSURL(), Token: guest.Token()})
	require.NoError(t, err)
	defer reader.Close()
	got := collect(reader)

	send := func(body string) uint64 {
		p := sender.Send(conv, body)
		<-p.Done()
		seq, err := p.Result()
		require.NoError(t, err)
		return seq
	}
	first := send("before the hole")
	eventually(t, 10*time.Second, "the first message on node2", func() error {
		if len(got.of(conv)) != 1 {
			return fmt.Errorf("%d messages", len(got.of(conv)))
		}
		return nil
	})
	hole := rs.Do("INCR", "roomnet:seq:"+conv) // allocated by a node that then died
	require.Equal(t, fmt.Sprintf(":%d", first+1), hole)
	sent := time.Now()
	second := send("after the hole")
	require.Equal(t, first+2, second)
	eventually(t, 15*time.Second, "the message after the hole on node2", func() error {
		if n := len(got.of(conv)); n != 2 {
			return fmt.Errorf("%d messages", n)
		}
		return nil
	})
	t.Logf("shown %v after the send, past the hole at seq %d", time.Since(sent).Round(time.Millisecond), first+1)
	msgs := got.of(conv)
	require.Equal(t, second, msgs[1].Seq)
	require.Equal(t, "after the hole", msgs[1].Body)

	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer db.Close()
	var kind string
	require.NoError(t, db.QueryRow(`SELECT kind FROM chat_messages WHERE conv = $1 AND seq = $2`, conv, first+1).Scan(&kind))
	require.Equal(t, chat.KindTombstone, kind)
}

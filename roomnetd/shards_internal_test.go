package roomnetd

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// Shards after the first take the next free ports after headscale.listen,
// skipping one in use; port 0 gives distinct free ports; listed addresses
// are taken as they are.
func TestShardListens(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	p := busy.Addr().(*net.TCPAddr).Port
	first := "127.0.0.1:" + strconv.Itoa(p-1)
	got, err := shardListens(first, nil, 3)
	require.NoError(t, err)
	require.Equal(t, first, got[0])
	for i, a := range got[1:] {
		_, port, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(port)
		require.Greater(t, n, p, "shard %d must skip the busy port %d", i+1, p)
	}
	require.NotEqual(t, got[1], got[2])

	got, err = shardListens("127.0.0.1:0", nil, 3)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.NotEqual(t, got[0], got[1])
	require.NotEqual(t, got[1], got[2])
	require.NotEqual(t, got[0], got[2])

	got, err = shardListens("127.0.0.1:8081", []string{"10.0.0.1:9000"}, 2)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:8081", "10.0.0.1:9000"}, got)
}

func TestLoopback(t *testing.T) {
	require.Equal(t, "127.0.0.1:8080", loopback("0.0.0.0:8080"))
	require.Equal(t, "[::1]:8080", loopback("[::]:8080"))
	require.Equal(t, "127.0.0.1:8080", loopback(":8080"))
	require.Equal(t, "10.1.2.3:8080", loopback("10.1.2.3:8080"))
}

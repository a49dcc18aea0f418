package roomnetd_test

import (
	"bufio"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
	"github.com/roomnet/roomnet/roomnettest"
)

// openToOthers lists what under dir has group or other permission bits.
func openToOthers(t *testing.T, dir string) []string {
	t.Helper()
	var open []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().Perm()&0o077 != 0 {
			open = append(open, fmt.Sprintf("%s %v", path, info.Mode().Perm()))
		}
		return nil
	}))
	return open
}

// The data directory holds password hashes, token hashes and direct
// messages: it is 0700 and every file in it private, the databases and
// their WAL and shared-memory files included, and a directory an older
// version left open is tightened at start.
func TestDataDirAndDatabasesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "headscale"), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "left-by-an-operator.txt"), []byte("x"), 0o644))

	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.DataDir = dir })
	ctx := roomnettest.Context(t, 60*time.Second)
	alice := h.User("alice")
	_, err := alice.CreateRoom(ctx, roomnet.CreateRoom{Name: "files", MaxPlayers: 4})
	require.NoError(t, err)

	for _, f := range []string{"roomnet.db", "roomnet.db-wal", "chat.db", "chat.db-wal", "headscale/headscale.db", "headscale/headscale.db-wal"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, "%s exists (the check below covers it)", f)
	}
	require.Empty(t, openToOthers(t, dir))

	// An upgrade from a version that left everything open.
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	}))
	require.NotEmpty(t, openToOthers(t, dir))
	h.Restart()
	require.Empty(t, openToOthers(t, dir))
}

// listeningPorts returns the TCP ports process pid listens on.
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil {
			if inode, ok := strings.CutPrefix(link, "socket:["); ok {
				inodes[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			port, err := strconv.ParseInt(hexPort, 16, 32)
			require.NoError(t, err)
			ports = append(ports, int(port))
		}
		f.Close()
	}
	return ports
}

// The embedded Headscale listens for nodes and nothing else: its debug
// server (pprof, config, node store and map responses, unauthenticated)
// is off, and its gRPC API is its 0700 unix socket only.
func TestEmbeddedHeadscaleOpensNoDebugServer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	h := roomnettest.New(t)
	ctx := roomnettest.Context(t, 60*time.Second)
	r, err := h.User("alice").CreateRoom(ctx, roomnet.CreateRoom{Name: "ports", MaxPlayers: 4})
	require.NoError(t, err)
	u, err := url.Parse(r.Join.LoginServer)
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	require.Equal(t, []int{port}, listeningPorts(t, h.Server.Headscale().PID()))
}

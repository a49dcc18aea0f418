package roomnettest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tailscaled is the official Tailscale daemon, built from the pinned
// tailscale.com module (go.mod's tool directive) and running in
// userspace-networking mode with its own state and LocalAPI socket.
type Tailscaled struct {
	Socket string // LocalAPI socket
	CLI    string // the matching tailscale binary
}

// TailscaledOptions places tailscaled elsewhere than the loopback
// harness does.
type TailscaledOptions struct {
	// Namespace runs it in that network namespace (ip netns exec).
	Namespace string
	// TUN is the interface it makes ("tailscale0"); empty:
	// userspace-networking, with direct UDP off as everywhere on loopback.
	TUN string
}

// StartTailscaled builds and starts tailscaled for the test; it is killed
// at cleanup and its log is printed if the test failed.
func StartTailscaled(t testing.TB) Tailscaled { return StartTailscaledWith(t, TailscaledOptions{}) }

// StartTailscaledWith is StartTailscaled with options.
func StartTailscaledWith(t testing.TB, o TailscaledOptions) Tailscaled {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "tailscale.com/cmd/tailscaled", "tailscale.com/cmd/tailscale")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building tailscale: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ts := Tailscaled{Socket: filepath.Join(dir, "tailscaled.sock"), CLI: filepath.Join(bin, "tailscale")}
	args := []string{filepath.Join(bin, "tailscaled"), "--tun=userspace-networking", "--statedir=" + dir,
		"--socket=" + ts.Socket, "--port=0", "--no-logs-no-support"}
	env := append(os.Environ(), "TS_DISABLE_PORTMAPPER=1", "TS_NO_LOGS_NO_SUPPORT=true")
	if o.TUN != "" {
		// nftables through netlink: no iptables binary needed.
		args[1] = "--tun=" + o.TUN
		env = append(env, "TS_DEBUG_FIREWALL_MODE=nftables")
	} else {
		env = append(env, "TS_DEBUG_NEVER_DIRECT_UDP=true", "TS_ASSUME_NETWORK_UP_FOR_TEST=1")
	}
	if o.Namespace != "" {
		args = append([]string{"ip", "netns", "exec", o.Namespace}, args...)
	}
	d := exec.Command(args[0], args[1:]...)
	d.Env = env
	logf, err := os.Create(filepath.Join(dir, "tailscaled.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Process.Kill()
		d.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			t.Logf("tailscaled log tail:\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ts.Socket); err == nil {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatal("tailscaled did not open its socket")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Run runs the tailscale CLI against the daemon and returns its output.
func (ts Tailscaled) Run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, ts.CLI, append([]string{"--socket=" + ts.Socket}, args...)...).CombinedOutput()
	return string(out), err
}

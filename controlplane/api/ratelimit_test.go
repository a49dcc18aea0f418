package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnettest"
)

// from returns an HTTP client whose connections come from ip, a loopback
// address of its own: every 127/8 address reaches the server's listener,
// so each stands for a different client machine.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// post sends body with the given extra headers and returns the status and
// the Retry-After header.
func post(t *testing.T, c *http.Client, url, body string, header map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func login(user, password string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q}`, user, password)
}

// Without trusted proxies X-Forwarded-For is the client's own words: it
// neither escapes the per-address limit nor lands another address in it.
// One attempt a minute per address: the limit refills far slower than any
// test step, so the counts are exact.
func TestForwardedForNeitherBypassesNorFramesRateLimits(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) { s.Config.Auth.LoginPerMinute = 1 })
	ctx := roomnettest.Context(t, 60*time.Second)
	status, _ := post(t, from("127.0.0.6"), h.URL+"/api/v1/auth/register", login("victim", "password-victim"), nil)
	require.Equal(t, http.StatusCreated, status)
	loginURL := h.URL + "/api/v1/auth/login"

	attacker := from("127.0.0.3")
	var statuses []int
	for i := range 6 {
		// A fresh account name each time: only the address limit applies.
		status, _ := post(t, attacker, loginURL, login(fmt.Sprintf("guess%d", i), "wrong-password"),
			map[string]string{"X-Forwarded-For": fmt.Sprintf("203.0.113.%d", i+1), "X-Real-IP": fmt.Sprintf("198.51.100.%d", i+1)})
		statuses = append(statuses, status)
	}
	require.Equal(t, []int{401, 429, 429, 429, 429, 429}, statuses, "random X-Forwarded-For values must not reset the attacker's budget")

	// Invite codes are guessed the same way.
	status, retry := post(t, attacker, h.URL+"/api/v1/invites/ABCDEFGH/join", "", map[string]string{
		"Authorization": "Bearer " + h.Admin.Token(), "X-Forwarded-For": "203.0.113.200"})
	require.Equal(t, http.StatusTooManyRequests, status)
	require.NotEmpty(t, retry)

	// Framing: the attacker names the victim's address.
	for range 3 {
		status, _ := post(t, attacker, loginURL, login("victim", "wrong-password"), map[string]string{"X-Forwarded-For": "127.0.0.2"})
		require.Equal(t, http.StatusTooManyRequests, status, "the attacker's own budget is spent")
	}
	status, _ = post(t, from("127.0.0.2"), loginURL, login("victim", "password-victim"), nil)
	require.Equal(t, http.StatusOK, status, "the victim's address was not limited by someone else's header")
	_, err := h.Admin.Me(ctx)
	require.NoError(t, err)
}

// Behind a configured proxy the header is honoured: each forwarded client
// has its own budget, and the proxy's own address is not the key.
func TestTrustedProxyForwardedForIsHonoured(t *testing.T) {
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Auth.LoginPerMinute = 1
		s.Config.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}
	})
	loginURL := h.URL + "/api/v1/auth/login"
	try := func(c *http.Client, xff string, i int) int {
		status, _ := post(t, c, loginURL, login("nobody"+strconv.Itoa(i), "wrong-password"), map[string]string{"X-Forwarded-For": xff})
		return status
	}
	proxy := from("127.0.0.4")
	require.Equal(t, http.StatusUnauthorized, try(proxy, "198.51.100.7", 1))
	require.Equal(t, http.StatusTooManyRequests, try(proxy, "198.51.100.7", 2), "the forwarded client used its budget")
	// Another client behind the proxy; a spoofed hop left of it is ignored.
	require.Equal(t, http.StatusUnauthorized, try(proxy, "198.51.100.7, 198.51.100.8", 3), "the nearest untrusted hop is the client")
	require.Equal(t, http.StatusTooManyRequests, try(proxy, "198.51.100.8, 198.51.100.7", 4))

	// A peer that is not the proxy is its own client, whatever it forwards.
	other := from("127.0.0.5")
	require.Equal(t, http.StatusUnauthorized, try(other, "192.0.2.1", 5))
	require.Equal(t, http.StatusTooManyRequests, try(other, "192.0.2.2", 6))
}

// Wrong passwords are limited per account too, from any address, and the
// limit ends on its own: a correct password gets in once the window has
// refilled a token, and correct passwords never count.
func TestLoginFailuresAreLimitedPerAccount(t *testing.T) {
	// A refill every 20 s: far slower than the test's steps, however
	// loaded the machine.
	const failures = 2
	const window = 40 * time.Second
	h := roomnettest.New(t, func(s *roomnettest.Settings) {
		s.Config.Auth.LoginFailures = failures
		s.Config.Auth.LoginFailureWindow = window
	})
	h.User("alice")
	h.User("bob")
	loginURL := h.URL + "/api/v1/auth/login"
	for i := range 2 * failures {
		status, _ := post(t, from("127.0.0.2"), loginURL, login("alice", "password-alice"), nil)
		require.Equal(t, http.StatusOK, status, "correct password %d is not a failure", i)
	}
	for i := range failures {
		status, _ := post(t, from(fmt.Sprintf("127.0.1.%d", i+1)), loginURL, login("alice", "wrong-password"), nil)
		require.Equal(t, http.StatusUnauthorized, status)
	}
	status, retry := post(t, from("127.0.1.9"), loginURL, login("ALICE", "wrong-password"), nil)
	require.Equal(t, http.StatusTooManyRequests, status, "one more wrong password from yet another address, any case")
	n, err := strconv.Atoi(retry)
	require.NoError(t, err, "Retry-After %q", retry)
	require.True(t, n >= 1 && n <= int(window.Seconds()), "Retry-After %d within the window", n)
	status, _ = post(t, from("127.0.0.2"), loginURL, login("alice", "password-alice"), nil)
	require.Equal(t, http.StatusTooManyRequests, status, "while limited the password is not checked at all")
	status, _ = post(t, from("127.0.1.1"), loginURL, login("bob", "password-bob"), nil)
	require.Equal(t, http.StatusOK, status, "other accounts are not affected")

	require.Eventually(t, func() bool {
		status, _ := post(t, from("127.0.0.2"), loginURL, login("alice", "password-alice"), nil)
		return status == http.StatusOK
	}, window, 500*time.Millisecond, "the limit ends within its window")
}

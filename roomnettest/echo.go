package roomnettest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/roomnet/roomnet/roomnet"
)

// ServeEcho answers every line on ln and every datagram on pc (either
// may be nil) with the same bytes after prefix, until the test ends: a
// stand-in for a game server.
func ServeEcho(t testing.TB, ln net.Listener, pc net.PacketConn, prefix string) {
	t.Helper()
	if ln != nil {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						fmt.Fprintf(c, "%s%s\n", prefix, sc.Text())
					}
				}()
			}
		}()
	}
	if pc != nil {
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, addr, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(append([]byte(prefix), buf[:n]...), addr)
			}
		}()
	}
}

// RequireCode fails the test unless err is an API error with this status
// and code.
func RequireCode(t testing.TB, err error, status int, code string) {
	t.Helper()
	var ae *roomnet.Error
	require.True(t, errors.As(err, &ae), "want API error %s, got %v", code, err)
	require.Equal(t, status, ae.Status, ae.Error())
	require.Equal(t, code, ae.Code, ae.Error())
}

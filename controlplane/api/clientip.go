package api

import (
	"net"
	"net/http"
	"net/netip"

	"github.com/labstack/echo/v4"
)

// ClientIP returns the function that names a request's client address,
// the key of every per-address limit. With no trusted proxies it is the
// connection's peer address and forwarding headers are ignored: anyone
// can write X-Forwarded-For. With trusted proxies, a request whose peer is
// one of them is attributed to the nearest address in X-Forwarded-For, read
// from the right, that is not itself a trusted proxy; loopback and private
// addresses are not trusted unless listed. The chat server's connection
// caps use the same function.
func ClientIP(trusted []netip.Prefix) func(*http.Request) string {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		opts = append(opts, echo.TrustIPRange(&net.IPNet{
			IP:   net.IP(p.Addr().AsSlice()),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

//go:build !linux

package doctor

import (
	"errors"
	"net"
)

func dontFragment(net.PacketConn) error {
	return errors.New("setting don't-fragment is only done on Linux")
}

package relay

import (
	"context"
	"net"
	"sync"

	"golang.org/x/time/rate"
)

// limitListener bounds concurrent connections and the accept rate, so one
// client cannot exhaust a relay with connections.
func limitListener(ln net.Listener, maxConns int, perSec float64) net.Listener {
	if maxConns <= 0 && perSec <= 0 {
		return ln
	}
	l := &limited{Listener: ln}
	if maxConns > 0 {
		l.sem = make(chan struct{}, maxConns)
	}
	if perSec > 0 {
		l.rate = rate.NewLimiter(rate.Limit(perSec), max(1, int(perSec)))
	}
	return l
}

type limited struct {
	net.Listener
	sem  chan struct{}
	rate *rate.Limiter
}

func (l *limited) Accept() (net.Conn, error) {
	if l.sem != nil {
		l.sem <- struct{}{}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if l.sem != nil {
			<-l.sem
		}
		return nil, err
	}
	if l.rate != nil {
		_ = l.rate.Wait(context.Background())
	}
	if l.sem == nil {
		return c, nil
	}
	return &releasing{Conn: c, release: func() { <-l.sem }}, nil
}

type releasing struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *releasing) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

package roomnetd

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomnet/roomnet/chat/chatserver"
	"github.com/roomnet/roomnet/internal/redisconn"
)

// redisParts are the engines a node shares with the others through Redis
// (redis.url): chat's sequencer and bus on one client. Without redis.url
// they are nil and chat keeps its in-process engines.
type redisParts struct {
	client *redis.Client
	seq    *chatserver.RedisSequencer
	bus    *chatserver.RedisBus
}

// startRedis opens the client and builds chat's Redis engines, or returns
// nil when redis.url is empty. It does not wait for Redis: a node starts
// while Redis is down and reports degraded until it answers.
func (s *Server) startRedis(chatStore *chatserver.GormStore) (*redisParts, error) {
	if !s.cfg.Redis.Enabled() {
		return nil, nil
	}
	rdb, err := redisconn.Open(s.cfg.Redis.URL)
	if err != nil {
		return nil, err
	}
	p := &redisParts{client: rdb}
	p.seq = chatserver.NewRedisSequencer(rdb, chatStore, "")
	p.bus = chatserver.NewRedisBus(rdb, chatserver.RedisBusOptions{Logger: s.log.With("component", "chat")})
	pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		s.log.Warn("redis does not answer yet; chat sends are refused as unavailable until it does", "err", err)
	}
	return p, nil
}

// shared is the client the control plane's shared limits use, or nil
// (an untyped nil: no Redis) for the single box.
func (p *redisParts) shared() redis.UniversalClient {
	if p == nil {
		return nil
	}
	return p.client
}

// chatOptions puts the Redis engines into chat's options.
func (p *redisParts) chatOptions(o *chatserver.Options) {
	if p == nil {
		return
	}
	o.Sequencer, o.Bus = p.seq, p.bus
}

// degraded reports why the Redis engines do not work (nil: they do, or
// there are none).
func (p *redisParts) degraded(ctx context.Context) error {
	if p == nil {
		return nil
	}
	// Terse reasons: /healthz is public, the details are in the log.
	if p.bus.Healthy() != nil {
		return errors.New("redis: chat bus subscription down")
	}
	if p.seq.Healthy(ctx) != nil {
		return errors.New("redis: chat sequencer cannot allocate")
	}
	return nil
}

// close stops the bus and closes the client; chat must be shut down first.
func (p *redisParts) close() error {
	if p == nil {
		return nil
	}
	return errors.Join(p.bus.Close(), p.client.Close())
}

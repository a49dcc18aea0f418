package limits

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts every key the Redis engine writes.
const KeyPrefix = "rn:lim:"

// gcraScript is Memory's gcra and Refund in one script, on Redis's clock
// (TIME), so that the nodes' clocks do not matter. Times are microseconds;
// a key lives until its bucket is full again.
//
//	KEYS[1] the bucket   ARGV[1] every (µs)   ARGV[2] burst   ARGV[3] "take" or "refund"
//	returns {ok, wait µs}
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local every = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if ARGV[3] == 'refund' then
  if tat == nil then return {1, 0} end
  tat = tat - every
  if tat <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%d', math.max(1, math.ceil((tat - now) / 1000))))
  end
  return {1, 0}
end
if tat == nil or tat < now then tat = now end
local nxt = tat + every
local allowAt = nxt - burst * every
if allowAt > now then
  return {0, allowAt - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', string.format('%d', math.max(1, math.ceil((nxt - now) / 1000))))
return {1, 0}
`)

// Redis keeps the buckets in Redis, one key each under KeyPrefix: every
// node using the same Redis shares each budget. It returns Redis's errors;
// Fallback turns them into this node's own decisions.
type Redis struct {
	c redis.Scripter
}

// NewRedis returns a Redis engine on c (a client, cluster or ring).
func NewRedis(c redis.Scripter) *Redis { return &Redis{c: c} }

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	if !l.valid() {
		return true, 0, nil
	}
	res, err := r.run(ctx, key, l, "take")
	if err != nil {
		return false, 0, err
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, nil
}

// Refund implements Limiter.
func (r *Redis) Refund(ctx context.Context, key string, l Limit) error {
	if !l.valid() {
		return nil
	}
	_, err := r.run(ctx, key, l, "refund")
	return err
}

func (r *Redis) run(ctx context.Context, key string, l Limit, op string) ([]int64, error) {
	// Redis counts in microseconds: a finer Every is rounded up to one.
	every := max(1, l.Every.Microseconds())
	res, err := gcraScript.Run(ctx, r.c, []string{KeyPrefix + key}, every, l.Burst, op).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("rate limit in redis: %w", err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("rate limit in redis: %d values in the script's answer", len(res))
	}
	return res, nil
}

package config

import (
	"io"
	"strings"
	"testing"
)

func TestRedisURL(t *testing.T) {
	pg := map[string]string{"ROOMNET_DATABASE_DRIVER": "postgres", "ROOMNET_DATABASE_DSN": "postgres://db/roomnet"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range pg {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil || c.Redis.Enabled() {
		t.Fatalf("default: redis %+v, %v; want off", c.Redis, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag", []string{"--redis-url", "redis://127.0.0.1:6379/0"}, pg, ""},
		{"env", nil, with(map[string]string{"ROOMNET_REDIS_URL": "rediss://u:secret@r.example:6380/2"}), ""},
		{"sqlite", nil, map[string]string{"ROOMNET_REDIS_URL": "redis://127.0.0.1:6379/0"}, "several nodes cannot share a SQLite database"},
		{"scheme", []string{"--redis-url", "http://127.0.0.1:6379"}, pg, "redis.url: want redis://"},
		{"no host", []string{"--redis-url", "redis://"}, pg, "redis.url: want redis://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, env(tc.env), io.Discard)
			if tc.want == "" {
				if err != nil || !c.Redis.Enabled() {
					t.Fatalf("redis %+v, %v", c.Redis, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("the error shows the URL's password: %v", err)
			}
		})
	}
	// A bad URL holding a password is refused without echoing it.
	_, err = Load([]string{"--redis-url", "http://u:hunter2@x"}, env(pg), io.Discard)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v", err)
	}
}

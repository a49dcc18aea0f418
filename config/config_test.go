package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.Headscale.Mode != "embedded" || !c.DERP.Enabled || c.Database.Driver != "sqlite" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if !filepath.IsAbs(c.DataDir) || c.Database.DSN != filepath.Join(c.DataDir, "roomnet.db") {
		t.Fatalf("data dir %q, dsn %q", c.DataDir, c.Database.DSN)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "roomnet.yaml")
	yaml := "listen: 127.0.0.1:9000\nrooms:\n  join_key_ttl: 2m\n  max_players: 16\nlog:\n  level: debug\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(
		[]string{"--config", file, "--rooms-max-players", "32"},
		env(map[string]string{"ROOMNET_LISTEN": "127.0.0.1:9100", "ROOMNET_ROOMS_MAX_PLAYERS": "8"}),
		io.Discard,
	)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" {
		t.Errorf("env must beat file: listen %q", c.Listen)
	}
	if c.Rooms.MaxPlayers != 32 {
		t.Errorf("flag must beat env: max players %d", c.Rooms.MaxPlayers)
	}
	if c.Rooms.JoinKeyTTL != 2*time.Minute || c.LogLevel != "debug" {
		t.Errorf("file values lost: %s %s", c.Rooms.JoinKeyTTL, c.LogLevel)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("admin:\n  username: root\n"), 0o600)
	c, err := Load(nil, env(map[string]string{"ROOMNET_CONFIG": file, "ROOMNET_ADMIN_PASSWORD": "long-enough"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.AdminUsername != "root" || c.Auth.AdminPassword != "long-enough" {
		t.Fatalf("got %q %q", c.Auth.AdminUsername, c.Auth.AdminPassword)
	}
}

func TestInvalidConfigIsRefused(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{"bad listen", []string{"--listen", "nope"}, nil, "", "listen"},
		{"bad duration", []string{"--rooms-join-key-ttl", "soon"}, nil, "", "not a duration"},
		{"ttl too long", []string{"--rooms-join-key-ttl", "5h"}, nil, "", "join_key_ttl"},
		{"bad int env", nil, map[string]string{"ROOMNET_ROOMS_MAX_PLAYERS": "lots"}, "", "ROOMNET_ROOMS_MAX_PLAYERS"},
		{"max players", []string{"--rooms-max-players", "1"}, nil, "", "max_players"},
		{"driver", []string{"--database-driver", "mysql"}, nil, "", "database.driver"},
		{"postgres without dsn", []string{"--database-driver", "postgres"}, nil, "", "database.dsn"},
		{"external without key", []string{"--headscale-mode", "external", "--derp-enabled=false"}, nil, "", "external mode needs"},
		{"short admin password", nil, map[string]string{"ROOMNET_ADMIN_PASSWORD": "short"}, "", "admin.password"},
		{"cert without key", []string{"--derp-cert-file", "x.pem"}, nil, "", "cert_file and key_file"},
		{"public url", []string{"--public-url", "ftp://x"}, nil, "", "public_url"},
		{"unknown file key", nil, nil, "listne: x\n", "unknown key \"listne\""},
		{"bad yaml", nil, nil, "listen: [\n", "parsing config file"},
		{"unknown flag", []string{"--nope"}, nil, "", "not defined"},
		{"positional", []string{"extra"}, nil, "", "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				f := filepath.Join(t.TempDir(), "c.yaml")
				os.WriteFile(f, []byte(tc.file), 0o600)
				args = append([]string{"--config", f}, args...)
			}
			_, err := Load(args, env(tc.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestEveryOptionHasFlagEnvAndValidDefault(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range options {
		if seen[o.flagName()] {
			t.Errorf("duplicate flag %s", o.flagName())
		}
		seen[o.flagName()] = true
		if !strings.HasPrefix(o.envName(), "ROOMNET_") || o.usage == "" {
			t.Errorf("option %s lacks env or usage", o.key)
		}
		var c Config
		if err := o.set(&c, o.def); err != nil {
			t.Errorf("default of %s: %v", o.key, err)
		}
	}
}

func TestRelayConfig(t *testing.T) {
	good := map[string]string{
		"ROOMNET_RELAY_HOSTNAME": "derp1.example.com", "ROOMNET_RELAY_REGION_CODE": "eu", "ROOMNET_RELAY_NODE_NAME": "901a",
		"ROOMNET_RELAY_VERIFY_URL": "http://10.0.0.2:8081/verify", "ROOMNET_RELAY_CONTROL_URL": "https://rooms.example.com",
		"ROOMNET_RELAY_TOKEN": "a-long-enough-relay-token",
	}
	c, err := LoadRelay([]string{"--relay-max-conns", "20"}, env(good), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConns != 20 || c.RegionID != 901 || c.Heartbeat != 10*time.Second {
		t.Fatalf("%+v", c)
	}
	for name, mod := range map[string]func(map[string]string){
		"short token":       func(m map[string]string) { m["ROOMNET_RELAY_TOKEN"] = "short" },
		"no hostname":       func(m map[string]string) { delete(m, "ROOMNET_RELAY_HOSTNAME") },
		"bad verify url":    func(m map[string]string) { m["ROOMNET_RELAY_VERIFY_URL"] = "nope" },
		"mesh without key":  func(m map[string]string) { m["ROOMNET_RELAY_MESH_WITH"] = "https://x:443/derp" },
		"negative limits":   func(m map[string]string) { m["ROOMNET_RELAY_RATE_BYTES"] = "-1" },
		"fast heartbeat":    func(m map[string]string) { m["ROOMNET_RELAY_HEARTBEAT"] = "10ms" },
		"cert without key":  func(m map[string]string) { m["ROOMNET_RELAY_CERT_FILE"] = "x.pem" },
		"bad region":        func(m map[string]string) { m["ROOMNET_RELAY_REGION_ID"] = "0" },
		"bad metrics addr":  func(m map[string]string) { m["ROOMNET_RELAY_METRICS_LISTEN"] = "nope" },
		"bad control url":   func(m map[string]string) { m["ROOMNET_RELAY_CONTROL_URL"] = "ftp://x" },
		"no node name":      func(m map[string]string) { delete(m, "ROOMNET_RELAY_NODE_NAME") },
		"no region code":    func(m map[string]string) { delete(m, "ROOMNET_RELAY_REGION_CODE") },
		"unparsable number": func(m map[string]string) { m["ROOMNET_RELAY_MAX_CONNS"] = "many" },
	} {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		mod(m)
		if _, err := LoadRelay(nil, env(m), io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The example deployment config stays loadable.
func TestDeployExampleLoads(t *testing.T) {
	c, err := Load([]string{"--config", "../deploy/roomnetd.example.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://rooms.example.com" || c.DERP.Hostname != "derp1.example.com" || c.Rooms.MaxRoomsPerUser != 5 {
		t.Fatalf("%+v", c)
	}
}

func TestTrustedProxiesAndMetricsListen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("trusted_proxies: [10.0.0.0/8, 192.168.1.7]\nmetrics:\n  listen: 127.0.0.1:9464\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", file}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.TrustedProxies); got != "[10.0.0.0/8 192.168.1.7/32]" || c.Metrics.Listen != "127.0.0.1:9464" {
		t.Fatalf("trusted proxies %s, metrics %q", got, c.Metrics.Listen)
	}
	c, err = Load([]string{"--trusted-proxies", "10.1.2.3/16,::1"}, env(map[string]string{"ROOMNET_METRICS_LISTEN": ""}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.TrustedProxies); got != "[10.1.0.0/16 ::1/128]" || c.Metrics.Listen != "" {
		t.Fatalf("trusted proxies %s, metrics %q", got, c.Metrics.Listen)
	}
	if d := Default(); len(d.TrustedProxies) != 0 || d.Metrics.Listen != "" || d.Auth.LoginFailures != 10 || d.Auth.LoginFailureWindow != 10*time.Minute {
		t.Fatalf("defaults: trust nobody, no metrics listener, 10 failures per 10m: %+v", d)
	}
	for _, bad := range [][]string{
		{"--trusted-proxies", "proxy.example"},
		{"--metrics-listen", "nope"},
		{"--auth-login-failures", "0"},
		{"--auth-login-failure-window", "100ms"},
	} {
		if _, err := Load(bad, env(nil), io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

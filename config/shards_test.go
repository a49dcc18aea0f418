package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShardDefaultsAreOneEmbeddedShard(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Headscale.Shards != 1 || c.Headscale.ShardNodeCap != 250 || len(c.Headscale.ExternalShards) != 0 {
		t.Fatalf("shard defaults: %d shards, cap %d, external %v", c.Headscale.Shards, c.Headscale.ShardNodeCap, c.Headscale.ExternalShards)
	}
	if EmbeddedShardName(0) != "default" || EmbeddedShardName(2) != "hs-2" {
		t.Fatalf("shard names %q %q", EmbeddedShardName(0), EmbeddedShardName(2))
	}
}

func TestShardsFromFlagsEnvAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	yaml := `headscale:
  shards: 2
  shard_listens: [127.0.0.1:9002, 127.0.0.1:9003]
  shard_server_urls:
    - https://hs1.example.com/
    - https://hs2.example.com
  external_shards:
    - name: eu-1
      address: hs-eu.example.com:50443
      api_key: secret-key
      server_url: https://hs-eu.example.com/
    - name: lab
      address: 127.0.0.1:50444
      api_key: other-key
      server_url: http://127.0.0.1:8090
      insecure: true
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", file, "--headscale-shard-node-cap", "100"},
		env(map[string]string{"ROOMNET_HEADSCALE_SHARDS": "3", "ROOMNET_HEADSCALE_SHARD_GRACE": "45s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Headscale.ShardListens) != 2 || c.Headscale.ShardListens[1] != "127.0.0.1:9003" || c.Headscale.ShardServerURLs[0] != "https://hs1.example.com" {
		t.Errorf("shard listens %q, server URLs %q", c.Headscale.ShardListens, c.Headscale.ShardServerURLs)
	}
	if c.Headscale.ShardGrace != 45*time.Second {
		t.Errorf("shard grace %v, want 45s from the environment", c.Headscale.ShardGrace)
	}
	if c.Headscale.Shards != 3 || c.Headscale.ShardNodeCap != 100 {
		t.Errorf("env must beat file, flags set the cap: shards %d cap %d", c.Headscale.Shards, c.Headscale.ShardNodeCap)
	}
	want := []ExternalShard{
		{Name: "eu-1", Address: "hs-eu.example.com:50443", APIKey: "secret-key", ServerURL: "https://hs-eu.example.com"},
		{Name: "lab", Address: "127.0.0.1:50444", APIKey: "other-key", ServerURL: "http://127.0.0.1:8090", Insecure: true},
	}
	if len(c.Headscale.ExternalShards) != 2 || c.Headscale.ExternalShards[0] != want[0] || c.Headscale.ExternalShards[1] != want[1] {
		t.Fatalf("external shards %+v", c.Headscale.ExternalShards)
	}
}

func TestInvalidShardsAreRefused(t *testing.T) {
	shard := func(name, extra string) string {
		return "  - name: " + name + "\n    address: a:1\n    api_key: k\n    server_url: http://a\n" + extra
	}
	cases := []struct {
		name string
		args []string
		file string
		want string
	}{
		{"no shards", []string{"--headscale-shards", "0"}, "", "headscale.shards: want 1..64"},
		{"too many", []string{"--headscale-shards", "65"}, "", "headscale.shards: want 1..64"},
		{"external mode", []string{"--headscale-mode", "external", "--headscale-shards", "2", "--derp-enabled=false",
			"--headscale-address", "a:1", "--headscale-api-key", "k", "--headscale-server-url", "http://a"}, "", "need headscale.mode embedded"},
		{"cap", []string{"--headscale-shard-node-cap", "0"}, "", "shard_node_cap"},
		{"grace", []string{"--headscale-shard-grace", "500ms"}, "", "headscale.shard_grace: want at least 1s"},
		{"listens count", []string{"--headscale-shards", "3", "--headscale-shard-listens", "127.0.0.1:9001"}, "", "want one for each embedded shard after the first (2), got 1"},
		{"bad listen", []string{"--headscale-shards", "2", "--headscale-shard-listens", "9001"}, "", "headscale.shard_listens"},
		{"urls count", []string{"--headscale-shard-server-urls", "https://hs1.example.com"}, "", "want one for each embedded shard after the first (0), got 1"},
		{"bad url", []string{"--headscale-shards", "2", "--headscale-shard-server-urls", "hs1.example.com"}, "", "want http(s) URLs"},
		{"duplicate", nil, shard("x", "") + shard("x", ""), "listed twice"},
		{"embedded name", nil, shard("hs-1", ""), "name of an embedded shard"},
		{"default name", nil, shard("default", ""), "name of an embedded shard"},
		{"bad name", nil, shard("Eu_1", ""), "want 1-63"},
		{"missing key", nil, "  - name: x\n    address: a:1\n    server_url: http://a\n", "address and api_key are required"},
		{"bad url", nil, "  - name: x\n    address: a:1\n    api_key: k\n    server_url: a\n", "server_url: want an http(s) URL"},
		{"unknown field", nil, shard("x", "    region: eu\n"), "field region not found"},
		{"not a list", nil, "    name: x\n", "want a list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				file := filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(file, []byte("headscale:\n  external_shards:\n"+tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", file)
			}
			_, err := Load(args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ExternalShard is a Headscale server that roomnetd does not run but
// places rooms on (headscale.external_shards in the YAML file).
type ExternalShard struct {
	Name      string `yaml:"name"`       // stable: stored with every room placed on it
	Address   string `yaml:"address"`    // gRPC host:port
	APIKey    string `yaml:"api_key"`    // secret
	ServerURL string `yaml:"server_url"` // login server URL handed to nodes; its /verify admits DERP clients
	Insecure  bool   `yaml:"insecure"`   // gRPC without TLS
}

// MaxEmbeddedShards bounds headscale.shards.
const MaxEmbeddedShards = 64

var shardName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// EmbeddedShardName names embedded shard i. Shard 0 keeps the name a
// single Headscale always had ("default"), so rooms created before
// sharding stay on it.
func EmbeddedShardName(i int) string {
	if i == 0 {
		return "default"
	}
	return fmt.Sprintf("hs-%d", i)
}

// takeStructured removes the keys that are lists of objects from a parsed
// config file and decodes them into c; the rest of the file is flat
// options.
func takeStructured[T any](c *T, tree map[string]any) error {
	cfg, ok := any(c).(*Config)
	if !ok {
		return nil
	}
	hs, ok := tree["headscale"].(map[string]any)
	if !ok {
		return nil
	}
	raw, ok := hs["external_shards"]
	if !ok {
		return nil
	}
	delete(hs, "external_shards")
	b, err := yaml.Marshal(raw)
	if err != nil {
		return fmt.Errorf("headscale.external_shards: %w", err)
	}
	var shards []ExternalShard
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&shards); err != nil {
		return fmt.Errorf("headscale.external_shards: want a list of {name, address, api_key, server_url, insecure}: %w", err)
	}
	cfg.Headscale.ExternalShards = shards
	return nil
}

// finishShards validates the shard options.
func (c *Config) finishShards() []error {
	var errs []error
	h := &c.Headscale
	switch {
	case h.Mode == "external" && h.Shards != 1:
		errs = append(errs, errors.New("headscale.shards: embedded shards need headscale.mode embedded (list more external servers in headscale.external_shards)"))
	case h.Shards < 1 || h.Shards > MaxEmbeddedShards:
		errs = append(errs, fmt.Errorf("headscale.shards: want 1..%d, got %d", MaxEmbeddedShards, h.Shards))
	}
	if h.ShardGrace < time.Second {
		errs = append(errs, errors.New("headscale.shard_grace: want at least 1s"))
	}
	if h.ShardNodeCap < 1 {
		errs = append(errs, errors.New("headscale.shard_node_cap: want at least 1"))
	}
	for name, l := range map[string][]string{"headscale.shard_listens": h.ShardListens, "headscale.shard_server_urls": h.ShardServerURLs} {
		if len(l) > 0 && len(l) != h.Shards-1 {
			errs = append(errs, fmt.Errorf("%s: want one for each embedded shard after the first (%d), got %d", name, h.Shards-1, len(l)))
		}
	}
	for _, a := range h.ShardListens {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("headscale.shard_listens: %w", err))
		}
	}
	for i, u := range h.ShardServerURLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			errs = append(errs, fmt.Errorf("headscale.shard_server_urls: want http(s) URLs, got %q", u))
		}
		h.ShardServerURLs[i] = strings.TrimRight(u, "/")
	}
	seen := map[string]bool{}
	for i, s := range h.ExternalShards {
		where := fmt.Sprintf("headscale.external_shards[%d]", i)
		switch {
		case !shardName.MatchString(s.Name):
			errs = append(errs, fmt.Errorf("%s.name: want 1-63 of a-z, 0-9 and '-', got %q", where, s.Name))
		case s.Name == "default" || reservedShardName(s.Name):
			errs = append(errs, fmt.Errorf("%s.name: %q is the name of an embedded shard", where, s.Name))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is listed twice", where, s.Name))
		}
		seen[s.Name] = true
		if s.Address == "" || s.APIKey == "" {
			errs = append(errs, fmt.Errorf("%s: address and api_key are required", where))
		}
		if u, err := url.Parse(s.ServerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.server_url: want an http(s) URL, got %q", where, s.ServerURL))
		}
		h.ExternalShards[i].ServerURL = strings.TrimRight(s.ServerURL, "/")
	}
	return errs
}

// list parses a comma-separated list (a YAML list in the file).
func list[T any](p func(*T) *[]string) func(*T, string) error {
	return func(c *T, v string) error {
		var out []string
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		*p(c) = out
		return nil
	}
}

// reservedShardName reports names of the form hs-<number>, which embedded
// shards use.
func reservedShardName(name string) bool {
	n, ok := strings.CutPrefix(name, "hs-")
	if !ok || n == "" {
		return false
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

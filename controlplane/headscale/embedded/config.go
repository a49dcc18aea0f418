package embedded

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// writeConfig writes the Headscale config for o into dir and returns its
// path. Everything that could reach the internet is off: no DERP URLs, no
// logtail, no update check, no ACME, no OIDC, no upstream DNS. No local
// surface beyond the HTTP listener and the 0700 unix socket either: the
// debug server is off.
func writeConfig(o Options) (string, error) {
	logLevel := "info"
	if o.Debug {
		logLevel = "debug"
	}
	cfg := map[string]any{
		"server_url":  o.ServerURL,
		"listen_addr": o.Listen,
		// Empty: no debug server. Headscale serves its metrics together
		// with pprof, its config, node store and map responses, without
		// authentication; roomnet needs none of it.
		"metrics_listen_addr":   "",
		"grpc_listen_addr":      "127.0.0.1:0",
		"grpc_allow_insecure":   false,
		"disable_check_updates": true,
		"noise":                 map[string]any{"private_key_path": filepath.Join(o.Dir, "noise_private.key")},
		"prefixes": map[string]any{
			"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential",
		},
		"derp": map[string]any{
			"server":              map[string]any{"enabled": false},
			"urls":                []string{},
			"paths":               []string{o.DERPMapPath},
			"auto_update_enabled": true,
			"update_frequency":    dur(o.DERPMapRefresh),
		},
		"node": map[string]any{
			"expiry":    "0",
			"ephemeral": map[string]any{"inactivity_timeout": dur(o.EphemeralTimeout)},
		},
		"database": map[string]any{
			"type": "sqlite",
			"sqlite": map[string]any{
				"path":            filepath.Join(o.Dir, "headscale.db"),
				"write_ahead_log": true,
			},
		},
		"log":    map[string]any{"level": logLevel, "format": "json"},
		"policy": map[string]any{"mode": "database"},
		"dns": map[string]any{
			"magic_dns":          false,
			"override_local_dns": false,
			"base_domain":        "roomnet.internal",
			"nameservers":        map[string]any{"global": []string{}},
		},
		"unix_socket":            SocketPath(o.Dir),
		"unix_socket_permission": "0700",
		"logtail":                map[string]any{"enabled": false},
		"taildrop":               map[string]any{"enabled": false},
		"tuning": map[string]any{
			"batch_change_delay":       dur(o.BatchDelay),
			"node_store_batch_timeout": dur(o.StoreBatchTimeout),
		},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding headscale config: %w", err)
	}
	path := filepath.Join(o.Dir, "config.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("writing headscale config: %w", err)
	}
	return path, nil
}

func dur(d time.Duration) string { return d.String() }

// SocketPath is where the embedded Headscale's gRPC socket lives in dir.
func SocketPath(dir string) string { return filepath.Join(dir, "headscale.sock") }

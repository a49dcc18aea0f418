package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"
)

// Relay is the validated configuration of a standalone roomnet-derp.
type Relay struct {
	Listen       string
	STUNListen   string
	Hostname     string
	CertFile     string
	KeyFile      string
	StateDir     string
	RegionID     int
	RegionCode   string
	RegionName   string
	NodeName     string
	VerifyURL    string // roomnetd's /verify (all shards) or Headscale's
	MeshKey      string
	MeshWith     string // comma-separated https://host:port/derp
	MeshInsecure bool
	Control      string // control plane URL to register with
	Token        string // relay token
	Heartbeat    time.Duration
	RateBytes    int // per client bytes/s, 0 unlimited
	RateBurst    int
	MaxConns     int
	AcceptPerSec float64
	Metrics      string // listen address of /metrics and /healthz
	LogLevel     string
}

var relayOptions = []option[Relay]{
	{"relay.listen", "DERP over TLS listen address", ":443", str(func(c *Relay) *string { return &c.Listen })},
	{"relay.stun_listen", "STUN UDP listen address (empty: off)", ":3478", str(func(c *Relay) *string { return &c.STUNListen })},
	{"relay.hostname", "host name or IP nodes dial (required)", "", str(func(c *Relay) *string { return &c.Hostname })},
	{"relay.cert_file", "TLS certificate (empty: self-signed, local development only)", "", str(func(c *Relay) *string { return &c.CertFile })},
	{"relay.key_file", "TLS key", "", str(func(c *Relay) *string { return &c.KeyFile })},
	{"relay.state_dir", "directory for the relay's key and self-signed certificate", "roomnet-derp", str(func(c *Relay) *string { return &c.StateDir })},
	{"relay.region_id", "DERP region id", "901", integer(func(c *Relay) *int { return &c.RegionID })},
	{"relay.region_code", "DERP region code", "", str(func(c *Relay) *string { return &c.RegionCode })},
	{"relay.region_name", "DERP region name", "", str(func(c *Relay) *string { return &c.RegionName })},
	{"relay.node_name", "this relay's node name, unique in the map", "", str(func(c *Relay) *string { return &c.NodeName })},
	{"relay.verify_url", "admission URL: roomnetd's /verify (every Headscale shard) or, with a single shard, Headscale's /verify; only nodes it knows are relayed (required)", "", str(func(c *Relay) *string { return &c.VerifyURL })},
	{"relay.mesh_key", "mesh key shared with the region's other relays", "", str(func(c *Relay) *string { return &c.MeshKey })},
	{"relay.mesh_with", "the region's other relays, comma-separated https://host:port/derp", "", str(func(c *Relay) *string { return &c.MeshWith })},
	{"relay.mesh_insecure", "accept self-signed mesh peers (development only)", "false", boolean(func(c *Relay) *bool { return &c.MeshInsecure })},
	{"relay.control_url", "control plane URL to register with (required)", "", str(func(c *Relay) *string { return &c.Control })},
	{"relay.token", "the control plane's derp.relay_token (required)", "", str(func(c *Relay) *string { return &c.Token })},
	{"relay.heartbeat", "registration heartbeat interval", "10s", duration(func(c *Relay) *time.Duration { return &c.Heartbeat })},
	{"relay.rate_bytes", "bytes per second each client may send (0: unlimited)", "0", integer(func(c *Relay) *int { return &c.RateBytes })},
	{"relay.rate_burst", "burst bytes for relay.rate_bytes", "0", integer(func(c *Relay) *int { return &c.RateBurst })},
	{"relay.max_conns", "concurrent client connections (0: unlimited)", "10000", integer(func(c *Relay) *int { return &c.MaxConns })},
	{"relay.accept_per_sec", "new connections per second (0: unlimited)", "500", float(func(c *Relay) *float64 { return &c.AcceptPerSec })},
	{"relay.metrics_listen", "listen address of /metrics and /healthz (empty: off)", "127.0.0.1:9100", str(func(c *Relay) *string { return &c.Metrics })},
	{"relay.log_level", "debug, info, warn or error", "info", str(func(c *Relay) *string { return &c.LogLevel })},
}

// LoadRelay builds and validates a standalone relay's configuration the
// same way Load does for roomnetd (flags, ROOMNET_RELAY_* env, YAML file).
func LoadRelay(args []string, env func(string) (string, bool), out io.Writer) (Relay, error) {
	c, err := load("roomnet-derp", relayOptions, args, env, out)
	if err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c *Relay) validate() error {
	var errs []error
	for name, addr := range map[string]string{"relay.listen": c.Listen, "relay.metrics_listen": c.Metrics, "relay.stun_listen": c.STUNListen} {
		if addr == "" && name != "relay.listen" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if c.Hostname == "" || c.RegionCode == "" || c.NodeName == "" {
		errs = append(errs, errors.New("relay.hostname, relay.region_code and relay.node_name are required"))
	}
	for name, v := range map[string]string{"relay.verify_url": c.VerifyURL, "relay.control_url": c.Control} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: want an http(s) URL, got %q", name, v))
		}
	}
	if len(c.Token) < 16 {
		errs = append(errs, errors.New("relay.token: want the control plane's relay token (at least 16 characters)"))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("relay: cert_file and key_file go together"))
	}
	if c.MeshWith != "" && c.MeshKey == "" {
		errs = append(errs, errors.New("relay.mesh_with needs relay.mesh_key"))
	}
	if c.RegionID < 1 || c.RegionID > 65535 || c.Heartbeat < time.Second || c.RateBytes < 0 || c.MaxConns < 0 {
		errs = append(errs, errors.New("relay: region_id 1..65535, heartbeat at least 1s, limits not negative"))
	}
	return errors.Join(errs...)
}

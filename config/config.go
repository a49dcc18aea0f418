// Package config declares every roomnetd option once (flag, ROOMNET_* env
// variable, YAML key, default) and loads them into a typed, validated
// Config. Precedence, lowest first: defaults, YAML file, environment, flags.
// It holds no global state: Load returns a fresh Config every call.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the validated configuration of a roomnetd process.
type Config struct {
	Listen    string // REST API, web and chat
	PublicURL string // how clients reach Listen
	DataDir   string
	LogLevel  string
	LogFormat string
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed; a request from any other address is its own client.
	TrustedProxies []netip.Prefix

	Metrics Metrics

	Database  Database
	Headscale Headscale
	DERP      DERP
	Rooms     Rooms
	Auth      Auth
	Chat      Chat
	Web       Web
	Redis     Redis
}

// Metrics configures the Prometheus listener.
type Metrics struct {
	Listen string // empty: no metrics listener
}

// Web holds options of the web pages.
type Web struct {
	// FiguresInterval is how often the admin dashboard's figures are sampled.
	FiguresInterval time.Duration
}

// Chat holds chat limits.
type Chat struct {
	MaxBody      int
	SendPerSec   float64
	FramesPerSec float64
	SyncMessages int
	// Lobby storm mode: thresholds in messages per second, the meter's
	// window and the notify interval.
	StormEnter, StormExit float64
	StormWindow           time.Duration
	NotifyInterval        time.Duration
}

// Database selects the gorm engine.
type Database struct {
	Driver string // sqlite or postgres
	DSN    string // empty for sqlite: <data-dir>/roomnet.db
}

// Headscale configures the coordination server: an embedded supervised
// child process (default) or an external server reached over gRPC.
type Headscale struct {
	Mode        string // embedded or external
	Listen      string // embedded: Headscale's HTTP listener
	ServerURL   string // URL nodes use as login server
	Address     string // external: gRPC host:port
	APIKey      string // external: API key (secret)
	Insecure    bool   // external: gRPC without TLS
	BatchDelay  time.Duration
	StoreBatch  time.Duration
	EphemeralGC time.Duration

	// Shards are the embedded Headscale children this process runs
	// (embedded mode; default 1). ExternalShards are more Headscale
	// servers rooms may go to (YAML only). ShardNodeCap is how many
	// nodes a shard holds before it takes no new rooms. See shards.go.
	Shards         int
	ExternalShards []ExternalShard
	ShardNodeCap   int
	// ShardGrace is how long a shard stays unhealthy before its open
	// rooms move to healthy shards.
	ShardGrace time.Duration
	// ShardListens and ShardServerURLs set the listener and login server
	// URL of embedded shards 1..Shards-1, in order (empty: the next free
	// ports after Listen, and http://<listener>).
	ShardListens    []string
	ShardServerURLs []string
}

// DERP configures the embedded relay.
type DERP struct {
	Enabled    bool
	Listen     string // DERP over TLS
	STUNListen string
	// STUNAltListen is a second STUN port (empty: none): with it, roomnet
	// doctor tells players whether their NAT is hard.
	STUNAltListen string
	Hostname      string // name or IP nodes dial; also the certificate name
	CertFile      string
	KeyFile       string
	RegionID      int
	RegionCode    string
	RegionName    string
	MeshKey       string        // secret; relays of one region share it
	RelayToken    string        // secret; standalone relays heartbeat with it
	RelayTTL      time.Duration // a relay silent this long leaves the map
	MapRefresh    time.Duration // how often Headscale re-reads the map
}

// Rooms holds room policy limits.
type Rooms struct {
	JoinKeyTTL        time.Duration
	MaxPlayers        int
	ReconcileInterval time.Duration
	MaxRoomsPerUser   int
	// PeerRelays lets a room's members relay for each other (the CLI's
	// --relay-port): the isolation policy's relay grant.
	PeerRelays bool
}

// Auth holds account options.
type Auth struct {
	AdminUsername  string
	AdminPassword  string // secret; empty: generated and printed once
	TokenTTL       time.Duration
	OpenSignup     bool
	LoginPerMinute int
	// LoginFailures wrong passwords an account takes within
	// LoginFailureWindow before its logins answer 429; one more is allowed
	// every LoginFailureWindow/LoginFailures.
	LoginFailures      int
	LoginFailureWindow time.Duration
}

// option is the one declaration of a setting of a config struct T.
type option[T any] struct {
	key   string // YAML key path, dotted; flag is the key with '.'/'_' → '-'
	usage string
	def   string
	set   func(c *T, v string) error
}

func (o option[T]) flagName() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(o.key)
}

func (o option[T]) envName() string {
	return "ROOMNET_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(o.key))
}

func str[T any](p func(*T) *string) func(*T, string) error {
	return func(c *T, v string) error { *p(c) = v; return nil }
}

func integer[T any](p func(*T) *int) func(*T, string) error {
	return func(c *T, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*p(c) = n
		return nil
	}
}

func float[T any](p func(*T) *float64) func(*T, string) error {
	return func(c *T, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", v)
		}
		*p(c) = f
		return nil
	}
}

func boolean[T any](p func(*T) *bool) func(*T, string) error {
	return func(c *T, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", v)
		}
		*p(c) = b
		return nil
	}
}

// prefixes parses a comma-separated list of CIDRs or single addresses.
func prefixes[T any](p func(*T) *[]netip.Prefix) func(*T, string) error {
	return func(c *T, v string) error {
		var out []netip.Prefix
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if pr, err := netip.ParsePrefix(f); err == nil {
				out = append(out, pr.Masked())
				continue
			}
			a, err := netip.ParseAddr(f)
			if err != nil {
				return fmt.Errorf("not a CIDR or an IP address: %q", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
		*p(c) = out
		return nil
	}
}

func duration[T any](p func(*T) *time.Duration) func(*T, string) error {
	return func(c *T, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration: %q", v)
		}
		*p(c) = d
		return nil
	}
}

var options = []option[Config]{
	{"listen", "address of the REST API, web panel and chat", "127.0.0.1:8080", str(func(c *Config) *string { return &c.Listen })},
	{"public_url", "URL clients use to reach --listen (default http://<bound listen address>)", "", str(func(c *Config) *string { return &c.PublicURL })},
	{"data_dir", "directory for all state", "roomnet-data", str(func(c *Config) *string { return &c.DataDir })},
	{"log.level", "debug, info, warn or error", "info", str(func(c *Config) *string { return &c.LogLevel })},
	{"log.format", "text or json", "text", str(func(c *Config) *string { return &c.LogFormat })},
	{"trusted_proxies", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For is trusted (empty: none, the peer address is the client)", "", prefixes(func(c *Config) *[]netip.Prefix { return &c.TrustedProxies })},
	{"metrics.listen", "address of the Prometheus /metrics listener (empty: off)", "", str(func(c *Config) *string { return &c.Metrics.Listen })},

	{"database.driver", "sqlite or postgres", "sqlite", str(func(c *Config) *string { return &c.Database.Driver })},
	{"database.dsn", "database DSN (sqlite default: <data-dir>/roomnet.db)", "", str(func(c *Config) *string { return &c.Database.DSN })},

	// Several nodes (config/redis.go).
	{"redis.url", "Redis shared by several nodes for chat sequence numbers and fan-out, redis://host:port/db (empty: one node, in process; needs database.driver=postgres)", "", str(func(c *Config) *string { return &c.Redis.URL })},

	{"headscale.mode", "embedded (supervised child process) or external", "embedded", str(func(c *Config) *string { return &c.Headscale.Mode })},
	{"headscale.listen", "embedded Headscale HTTP listen address", "127.0.0.1:8081", str(func(c *Config) *string { return &c.Headscale.Listen })},
	{"headscale.server_url", "login server URL handed to nodes (default http://<headscale.listen>)", "", str(func(c *Config) *string { return &c.Headscale.ServerURL })},
	{"headscale.address", "external Headscale gRPC address host:port", "", str(func(c *Config) *string { return &c.Headscale.Address })},
	{"headscale.api_key", "external Headscale API key", "", str(func(c *Config) *string { return &c.Headscale.APIKey })},
	{"headscale.insecure", "external Headscale gRPC without TLS", "false", boolean(func(c *Config) *bool { return &c.Headscale.Insecure })},
	{"headscale.batch_delay", "embedded Headscale map update batching delay", "100ms", duration(func(c *Config) *time.Duration { return &c.Headscale.BatchDelay })},
	{"headscale.store_batch_timeout", "embedded Headscale node store batch timeout", "20ms", duration(func(c *Config) *time.Duration { return &c.Headscale.StoreBatch })},
	{"headscale.ephemeral_timeout", "embedded Headscale: remove ephemeral nodes offline this long", "5m", duration(func(c *Config) *time.Duration { return &c.Headscale.EphemeralGC })},
	{"headscale.shards", "embedded Headscale children (shards) to run; shard i>0 uses headscale-i/ in the data dir and the next free port after headscale.listen", "1", integer(func(c *Config) *int { return &c.Headscale.Shards })},
	{"headscale.shard_node_cap", "nodes a Headscale shard holds before it takes no new rooms", "250", integer(func(c *Config) *int { return &c.Headscale.ShardNodeCap })},
	{"headscale.shard_grace", "how long a Headscale shard stays unhealthy before its open rooms move to healthy shards (several shards only)", "30s", duration(func(c *Config) *time.Duration { return &c.Headscale.ShardGrace })},
	{"headscale.shard_listens", "comma-separated listen addresses of embedded shards 1..N-1 (default: the next free ports after headscale.listen)", "", list(func(c *Config) *[]string { return &c.Headscale.ShardListens })},
	{"headscale.shard_server_urls", "comma-separated login server URLs of embedded shards 1..N-1 (default http://<their listen address>)", "", list(func(c *Config) *[]string { return &c.Headscale.ShardServerURLs })},

	{"derp.enabled", "run the embedded DERP relay", "true", boolean(func(c *Config) *bool { return &c.DERP.Enabled })},
	{"derp.listen", "embedded DERP relay TLS listen address", "127.0.0.1:8443", str(func(c *Config) *string { return &c.DERP.Listen })},
	{"derp.stun_listen", "embedded STUN UDP listen address", "127.0.0.1:3478", str(func(c *Config) *string { return &c.DERP.STUNListen })},
	{"derp.stun_alt_listen", "a second STUN UDP listen address on the same host, so roomnet doctor can tell a hard NAT (empty: off)", "", str(func(c *Config) *string { return &c.DERP.STUNAltListen })},
	{"derp.hostname", "host name or IP nodes use for the relay (default: host of derp.listen)", "", str(func(c *Config) *string { return &c.DERP.Hostname })},
	{"derp.cert_file", "TLS certificate (empty: self-signed, local development only)", "", str(func(c *Config) *string { return &c.DERP.CertFile })},
	{"derp.key_file", "TLS key for derp.cert_file", "", str(func(c *Config) *string { return &c.DERP.KeyFile })},
	{"derp.region_id", "DERP region id", "900", integer(func(c *Config) *int { return &c.DERP.RegionID })},
	{"derp.region_code", "DERP region code", "roomnet", str(func(c *Config) *string { return &c.DERP.RegionCode })},
	{"derp.region_name", "DERP region name", "roomnet embedded", str(func(c *Config) *string { return &c.DERP.RegionName })},

	{"derp.mesh_key", "mesh key shared by the relays of a region (64 hex digits)", "", str(func(c *Config) *string { return &c.DERP.MeshKey })},
	{"derp.relay_token", "shared secret standalone relays register with (empty: registration off)", "", str(func(c *Config) *string { return &c.DERP.RelayToken })},
	{"derp.relay_ttl", "a standalone relay that stops heartbeating leaves the DERP map after this", "30s", duration(func(c *Config) *time.Duration { return &c.DERP.RelayTTL })},
	{"derp.map_refresh", "how often Headscale re-reads the DERP map", "10s", duration(func(c *Config) *time.Duration { return &c.DERP.MapRefresh })},
	{"rooms.join_key_ttl", "lifetime of a join's pre-auth key", "5m", duration(func(c *Config) *time.Duration { return &c.Rooms.JoinKeyTTL })},
	{"rooms.max_players", "upper bound on a room's max_players", "64", integer(func(c *Config) *int { return &c.Rooms.MaxPlayers })},
	{"rooms.reconcile_interval", "how often rooms are reconciled with Headscale", "1m", duration(func(c *Config) *time.Duration { return &c.Rooms.ReconcileInterval })},
	{"rooms.max_per_user", "open rooms a user may host at once", "5", integer(func(c *Config) *int { return &c.Rooms.MaxRoomsPerUser })},
	{"rooms.peer_relays", "room members may relay for each other (roomnet --relay-port)", "true", boolean(func(c *Config) *bool { return &c.Rooms.PeerRelays })},

	{"admin.username", "name of the bootstrapped admin", "admin", str(func(c *Config) *string { return &c.Auth.AdminUsername })},
	{"admin.password", "bootstrap admin password (empty: generated and printed once)", "", str(func(c *Config) *string { return &c.Auth.AdminPassword })},
	{"auth.token_ttl", "lifetime of a bearer token", "168h", duration(func(c *Config) *time.Duration { return &c.Auth.TokenTTL })},
	{"auth.open_signup", "anyone may register an account", "true", boolean(func(c *Config) *bool { return &c.Auth.OpenSignup })},
	{"chat.max_body", "largest chat message body in bytes", "4096", integer(func(c *Config) *int { return &c.Chat.MaxBody })},
	{"chat.send_per_sec", "chat messages a user may send per second (burst twice that)", "10", float(func(c *Config) *float64 { return &c.Chat.SendPerSec })},
	{"chat.frames_per_sec", "frames a chat connection may send per second (burst twice that)", "50", float(func(c *Config) *float64 { return &c.Chat.FramesPerSec })},
	{"chat.sync_messages", "newest messages per conversation sent on (re)connect", "20", integer(func(c *Config) *int { return &c.Chat.SyncMessages })},
	{"chat.storm_enter", "a lobby enters storm mode (notify and pull) at this many messages per second", "100", float(func(c *Config) *float64 { return &c.Chat.StormEnter })},
	{"chat.storm_exit", "a lobby in storm mode returns to direct push below this many messages per second", "50", float(func(c *Config) *float64 { return &c.Chat.StormExit })},
	{"chat.storm_window", "sliding window of the lobby rate meter", "1s", duration(func(c *Config) *time.Duration { return &c.Chat.StormWindow })},
	{"chat.notify_interval", "in storm mode, at most one notify per connection this often", "250ms", duration(func(c *Config) *time.Duration { return &c.Chat.NotifyInterval })},
	{"auth.login_per_minute", "login and register attempts per minute per client address", "30", integer(func(c *Config) *int { return &c.Auth.LoginPerMinute })},
	{"auth.login_failures", "wrong passwords an account may take per auth.login_failure_window before its logins are refused with 429", "10", integer(func(c *Config) *int { return &c.Auth.LoginFailures })},
	{"auth.login_failure_window", "window of auth.login_failures: an account is never refused longer than this after the last wrong password", "10m", duration(func(c *Config) *time.Duration { return &c.Auth.LoginFailureWindow })},
	{"web.figures_interval", "how often the admin dashboard samples its figures (it keeps 360 samples)", "10s", duration(func(c *Config) *time.Duration { return &c.Web.FiguresInterval })},
}

// Default returns the configuration with every default applied.
func Default() Config { return defaults(options) }

func defaults[T any](opts []option[T]) T {
	var c T
	for _, o := range opts {
		if err := o.set(&c, o.def); err != nil {
			panic(fmt.Sprintf("config: bad default for %s: %v", o.key, err))
		}
	}
	return c
}

// Load builds a Config from defaults, the YAML file named by --config or
// ROOMNET_CONFIG, ROOMNET_* variables from env, and args (flags), then
// validates it. Help output goes to out.
func Load(args []string, env func(string) (string, bool), out io.Writer) (Config, error) {
	c, err := load("roomnetd", options, args, env, out)
	if err != nil {
		return c, err
	}
	if err := c.Finish(); err != nil {
		return c, err
	}
	return c, nil
}

func load[T any](name string, opts []option[T], args []string, env func(string) (string, bool), out io.Writer) (T, error) {
	c := defaults(opts)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	configFile := fs.String("config", "", "YAML configuration file (env ROOMNET_CONFIG)")
	given := map[string]string{} // flag values, applied last
	for _, o := range opts {
		fs.Func(o.flagName(), fmt.Sprintf("%s (env %s, default %q)", o.usage, o.envName(), o.def), func(s string) error {
			given[o.key] = s
			return nil
		})
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	path := *configFile
	if path == "" {
		path, _ = env("ROOMNET_CONFIG")
	}
	if path != "" {
		if err := applyFile(&c, opts, path); err != nil {
			return c, err
		}
	}
	for _, o := range opts {
		if v, ok := env(o.envName()); ok {
			if err := o.set(&c, v); err != nil {
				return c, fmt.Errorf("%s: %w", o.envName(), err)
			}
		}
	}
	for _, o := range opts {
		if v, ok := given[o.key]; ok {
			if err := o.set(&c, v); err != nil {
				return c, fmt.Errorf("--%s: %w", o.flagName(), err)
			}
		}
	}
	return c, nil
}

func applyFile[T any](c *T, opts []option[T], path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config file: %w", err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return fmt.Errorf("parsing config file %s: %w", path, err)
	}
	if err := takeStructured(c, tree); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	flat := map[string]string{}
	flatten("", tree, flat)
	known := map[string]option[T]{}
	for _, o := range opts {
		known[o.key] = o
	}
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		o, ok := known[k]
		if !ok {
			return fmt.Errorf("config file %s: unknown key %q", path, k)
		}
		if err := o.set(c, flat[k]); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, vv := range t {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, vv, out)
		}
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = fmt.Sprint(e)
		}
		out[prefix] = strings.Join(parts, ",")
	case nil:
		out[prefix] = ""
	default:
		out[prefix] = fmt.Sprint(t)
	}
}

// Finish fills derived defaults and validates c. Load calls it; callers
// that build a Config in code (tests) call it themselves.
func (c *Config) Finish() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("public_url: want an http(s) URL, got %q", c.PublicURL))
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	} else if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: want debug, info, warn or error, got %q", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: want text or json, got %q", c.LogFormat))
	}
	switch c.Database.Driver {
	case "sqlite":
		if c.Database.DSN == "" {
			c.Database.DSN = filepath.Join(c.DataDir, "roomnet.db")
		}
	case "postgres":
		if c.Database.DSN == "" {
			errs = append(errs, errors.New("database.dsn: required for postgres"))
		}
	default:
		errs = append(errs, fmt.Errorf("database.driver: want sqlite or postgres, got %q", c.Database.Driver))
	}
	switch c.Headscale.Mode {
	case "embedded":
		if _, _, err := net.SplitHostPort(c.Headscale.Listen); err != nil {
			errs = append(errs, fmt.Errorf("headscale.listen: %w", err))
		}
	case "external":
		if c.Headscale.Address == "" || c.Headscale.APIKey == "" || c.Headscale.ServerURL == "" {
			errs = append(errs, errors.New("headscale: external mode needs headscale.address, headscale.api_key and headscale.server_url"))
		}
		if c.DERP.Enabled {
			errs = append(errs, errors.New("derp.enabled: the embedded relay's map is written for the embedded Headscale; with an external Headscale run roomnet-derp and set derp.enabled=false"))
		}
	default:
		errs = append(errs, fmt.Errorf("headscale.mode: want embedded or external, got %q", c.Headscale.Mode))
	}
	errs = append(errs, c.finishShards()...)
	if c.Web.FiguresInterval < 100*time.Millisecond {
		errs = append(errs, errors.New("web.figures_interval: at least 100ms"))
	}
	if c.Headscale.BatchDelay <= 0 || c.Headscale.StoreBatch <= 0 || c.Headscale.EphemeralGC < time.Minute {
		errs = append(errs, errors.New("headscale: batch_delay and store_batch_timeout must be positive, ephemeral_timeout at least 1m"))
	}
	if c.DERP.Enabled {
		for name, addr := range map[string]string{"derp.listen": c.DERP.Listen, "derp.stun_listen": c.DERP.STUNListen} {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		if a := c.DERP.STUNAltListen; a != "" {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, fmt.Errorf("derp.stun_alt_listen: %w", err))
			}
		}
		if (c.DERP.CertFile == "") != (c.DERP.KeyFile == "") {
			errs = append(errs, errors.New("derp: cert_file and key_file go together"))
		}
		if c.DERP.RegionID < 1 || c.DERP.RegionID > 65535 {
			errs = append(errs, fmt.Errorf("derp.region_id: want 1..65535, got %d", c.DERP.RegionID))
		}
	}
	if c.DERP.RelayTTL < time.Second || c.DERP.MapRefresh < time.Second {
		errs = append(errs, errors.New("derp: relay_ttl and map_refresh want at least 1s"))
	}
	if c.DERP.RelayToken != "" && len(c.DERP.RelayToken) < 16 {
		errs = append(errs, errors.New("derp.relay_token: want at least 16 characters"))
	}
	if c.Rooms.JoinKeyTTL < time.Second || c.Rooms.JoinKeyTTL > time.Hour {
		errs = append(errs, fmt.Errorf("rooms.join_key_ttl: want 1s..1h, got %s", c.Rooms.JoinKeyTTL))
	}
	if c.Rooms.MaxPlayers < 2 || c.Rooms.MaxPlayers > 1024 {
		errs = append(errs, fmt.Errorf("rooms.max_players: want 2..1024, got %d", c.Rooms.MaxPlayers))
	}
	if c.Rooms.ReconcileInterval < time.Second {
		errs = append(errs, fmt.Errorf("rooms.reconcile_interval: want at least 1s, got %s", c.Rooms.ReconcileInterval))
	}
	if c.Rooms.MaxRoomsPerUser < 1 {
		errs = append(errs, errors.New("rooms.max_per_user: want at least 1"))
	}
	if c.Auth.TokenTTL < time.Minute {
		errs = append(errs, errors.New("auth.token_ttl: want at least 1m"))
	}
	if c.Auth.AdminPassword != "" && len(c.Auth.AdminPassword) < 8 {
		errs = append(errs, errors.New("admin.password: want at least 8 characters"))
	}
	if c.Chat.MaxBody < 1 || c.Chat.MaxBody > 32<<10 {
		errs = append(errs, errors.New("chat.max_body: want 1..32768"))
	}
	if c.Chat.SendPerSec <= 0 || c.Chat.FramesPerSec <= 0 || c.Chat.SyncMessages < 0 || c.Chat.SyncMessages > 200 {
		errs = append(errs, errors.New("chat: send_per_sec and frames_per_sec must be positive, sync_messages 0..200"))
	}
	if c.Chat.StormEnter <= 0 || c.Chat.StormExit <= 0 || c.Chat.StormExit > c.Chat.StormEnter {
		errs = append(errs, errors.New("chat: storm_enter and storm_exit must be positive and storm_exit at most storm_enter"))
	}
	if c.Chat.StormWindow < 100*time.Millisecond || c.Chat.NotifyInterval < 10*time.Millisecond {
		errs = append(errs, errors.New("chat: storm_window at least 100ms, notify_interval at least 10ms"))
	}
	if c.Auth.LoginPerMinute < 1 {
		errs = append(errs, errors.New("auth.login_per_minute: want at least 1"))
	}
	if c.Auth.LoginFailures < 1 || c.Auth.LoginFailureWindow < time.Second || c.Auth.LoginFailureWindow > 24*time.Hour {
		errs = append(errs, errors.New("auth: login_failures want at least 1, login_failure_window 1s..24h"))
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			errs = append(errs, fmt.Errorf("metrics.listen: %w", err))
		}
	}
	errs = append(errs, c.Redis.finish(c.Database)...)
	return errors.Join(errs...)
}

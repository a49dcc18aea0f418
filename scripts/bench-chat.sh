#!/usr/bin/env bash
# Runs the lobby load benchmark against roomnet's chat (storm mode off and
# on) and against Centrifugo v6.9.1 in one run, and measures memory per
# idle connection on both. Centrifugo is built from the Go module proxy
# into a temporary directory (never committed), started on loopback with
# usage stats off, and stopped at the end. Figures go to stdout as JSON
# lines; docs/benchmarks.md has a recorded run.
#
#   scripts/bench-chat.sh [clients] [rates] [duration]
#
# rates is a comma-separated list of offered lobby rates (messages/s);
# each is run against roomnet with storm mode off and on and against
# Centrifugo. A critical message is sent every 100 ms during each run.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-1000}
RATES=${2:-500,1000,2000,3000}
DUR=${3:-10s}
CENTRIFUGO_VERSION=v6.9.1
# With two or more cores the server gets core 0 and the load generator
# the others, so neither takes the other's CPU (PIN=0 turns this off).
srv=() load=()
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	srv=(taskset -c 0) load=(taskset -c "1-$(($(nproc) - 1))")
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "building chatload and centrifugo@$CENTRIFUGO_VERSION into $tmp" >&2
go build -o "$tmp/chatload" ./bench/chatload
(cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION")

cat >"$tmp/centrifugo.json" <<JSON
{
  "http_server": {"address": "127.0.0.1", "port": 7200},
  "log": {"level": "error"},
  "client": {"token": {"hmac_secret_key": "chatload-secret"}, "allowed_origins": ["*"]},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}},
  "http_api": {"key": "chatload-api-key"},
  "usage_stats": {"disabled": true}
}
JSON

wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 never opened" >&2
	return 1
}

start_roomnet() { # storm threshold
	rm -rf "$tmp/data" && mkdir -p "$tmp/data"
	"${srv[@]}" "$tmp/chatload" serve -addr 127.0.0.1:7100 -data "$tmp/data" -storm-enter "$1" 2>>"$tmp/roomnet.log" &
	pid=$!
	pids+=("$pid")
	wait_port 7100
}
start_centrifugo() {
	"${srv[@]}" "$tmp/centrifugo" --config "$tmp/centrifugo.json" >>"$tmp/centrifugo.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_port 7200
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

R=(-url ws://127.0.0.1:7100/ws -api http://127.0.0.1:7100)
C=(-target centrifugo -url ws://127.0.0.1:7200/connection/websocket -api http://127.0.0.1:7200/api)
for RATE in ${RATES//,/ }; do
	LOAD=(-clients "$CLIENTS" -rate "$RATE" -duration "$DUR" -critical-every 100ms)
	start_roomnet 1e12
	"${load[@]}" "$tmp/chatload" run "${R[@]}" -pid "$pid" "${LOAD[@]}" -label "storm off"
	stop "$pid"
	start_roomnet 100
	"${load[@]}" "$tmp/chatload" run "${R[@]}" -pid "$pid" "${LOAD[@]}" -label "storm on"
	stop "$pid"
	start_centrifugo
	"${load[@]}" "$tmp/chatload" run "${C[@]}" -pid "$pid" "${LOAD[@]}" -label "centrifugo"
	stop "$pid"
done

start_roomnet 100
"${load[@]}" "$tmp/chatload" idle "${R[@]}" -pid "$pid"
stop "$pid"
start_centrifugo
"${load[@]}" "$tmp/chatload" idle "${C[@]}" -pid "$pid"
stop "$pid"

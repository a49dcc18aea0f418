#!/usr/bin/env bash
# The scale-out chat benchmarks of docs/benchmarks.md, in one run:
#
#   1. the lobby storm with the subscribers on 1 node with in-process
#      engines against the same load split over 2 nodes sharing Redis
#      (sequencer and bus): CPU per delivered message;
#   2. the same 2-node load against Centrifugo v6.9.1 with its Redis
#      engine, 2 nodes;
#   3. acked send latency (send to the server's ack) through Redis and
#      PostgreSQL, read from the runs of 1, and where it went on the
#      roomnet nodes (seq allocation, group commit: their /metrics on
#      ports 7300+).
#
# Every roomnet node stores in PostgreSQL, so the engines are the only
# difference between the 1-node and 2-node runs. The script starts its own
# PostgreSQL (fsync and synchronous commit on, as in production) and Redis
# (no persistence) in a temporary directory, with a fresh database per run,
# and stops everything at the end. Centrifugo is built from the Go module
# proxy into the same directory. With two or more cores, the servers and
# their engines share core 0 and the load generator gets the others
# (PIN=0 turns this off). Figures go to stdout as JSON lines.
#
#   scripts/bench-chat-cluster.sh [clients] [rates] [duration]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-1000}
RATES=${2:-1000,2000}
DUR=${3:-10s}
CENTRIFUGO_VERSION=v6.9.1
PGPORT=7432 REDISPORT=7379
srv=() load=()
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	srv=(taskset -c 0) load=(taskset -c "1-$(($(nproc) - 1))")
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "needs PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -f "$tmp/pg/postmaster.pid" ] && su postgres -s /bin/sh -c "'$pgbin/pg_ctl' -D '$tmp/pg' -m fast stop" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "building chatload and centrifugo@$CENTRIFUGO_VERSION into $tmp" >&2
go build -o "$tmp/chatload" ./bench/chatload
(cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION")

port_free() { # fails when something already listens on the port
	if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
		echo "port $1 is already in use: stop what listens there first" >&2
		return 1
	fi
}
wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 never opened" >&2
	return 1
}

# PostgreSQL, as the postgres user, pinned with the servers.
port_free "$PGPORT"
mkdir "$tmp/pg" && chown postgres "$tmp/pg"
su postgres -s /bin/sh -c "'$pgbin/initdb' -D '$tmp/pg' -A trust -U postgres" >/dev/null
su postgres -s /bin/sh -c "${srv[*]} '$pgbin/pg_ctl' -D '$tmp/pg' -l '$tmp/pg/log' -w -o \"-p $PGPORT -k '$tmp/pg' -c listen_addresses=127.0.0.1 -c max_connections=200\" start" >/dev/null
PG="postgres://postgres@127.0.0.1:$PGPORT"
fresh_db() { # prints the DSN of a new, empty database (run in $(...): no counter survives)
	local name
	name=chatload_$(date +%s%N)
	psql -q "$PG/postgres?sslmode=disable" -c "create database $name" >/dev/null || return 1
	echo "$PG/$name?sslmode=disable"
}

port_free "$REDISPORT"
"${srv[@]}" redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
wait_port "$REDISPORT"
REDIS="redis://127.0.0.1:$REDISPORT/0"

engines() { # the engines' process ids: Redis and the postmaster (chatload adds its backends)
	echo "$redis_pid,$(head -n 1 "$tmp/pg/postmaster.pid")"
}

node_pids=()
start_roomnet() { # nodes, then serve's engine flags
	local n=$1
	shift
	node_pids=()
	local dsn
	dsn=$(fresh_db) || { echo "cannot create a database" >&2; return 1; }
	redis-cli -p "$REDISPORT" flushall >/dev/null
	for i in $(seq 0 $((n - 1))); do
		port_free $((7100 + i))
		port_free $((7300 + i))
		"${srv[@]}" "$tmp/chatload" serve -addr "127.0.0.1:$((7100 + i))" -pprof "127.0.0.1:$((7300 + i))" -postgres "$dsn" "$@" 2>>"$tmp/roomnet.log" &
		node_pids+=($!)
		pids+=($!)
		wait_port $((7100 + i))
	done
}
start_centrifugo() { # nodes
	node_pids=()
	redis-cli -p "$REDISPORT" flushall >/dev/null
	for i in $(seq 0 $(($1 - 1))); do
		port_free $((7200 + i))
		cat >"$tmp/centrifugo-$i.json" <<JSON
{
  "http_server": {"address": "127.0.0.1", "port": $((7200 + i))},
  "log": {"level": "error"},
  "engine": {"type": "redis", "redis": {"address": "$REDIS"}},
  "client": {"token": {"hmac_secret_key": "chatload-secret"}, "allowed_origins": ["*"]},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}},
  "http_api": {"key": "chatload-api-key"},
  "usage_stats": {"disabled": true}
}
JSON
		"${srv[@]}" "$tmp/centrifugo" --config "$tmp/centrifugo-$i.json" >>"$tmp/centrifugo.log" 2>&1 &
		node_pids+=($!)
		pids+=($!)
		wait_port $((7200 + i))
	done
}
stop_nodes() {
	for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
list() { # list PREFIX SUFFIX N: PREFIX7100SUFFIX,PREFIX7101SUFFIX,...
	local out=() i
	for i in $(seq 0 $(($4 - 1))); do out+=("$1$(($3 + i))$2"); done
	(IFS=,; echo "${out[*]}")
}
joined() { (IFS=,; echo "$*"); }

for RATE in ${RATES//,/ }; do
	LOAD=(-clients "$CLIENTS" -rate "$RATE" -duration "$DUR" -critical-every 100ms)

	start_roomnet 1
	"${load[@]}" "$tmp/chatload" run -url "$(list ws://127.0.0.1: /ws 7100 1)" -api "$(list http://127.0.0.1: '' 7100 1)" \
		-pid "$(joined "${node_pids[@]}")" -engine-pid "$(engines)" -metrics "$(list http://127.0.0.1: /metrics 7300 1)" "${LOAD[@]}" -label "1 node, in-process engines, postgres"
	stop_nodes

	start_roomnet 2 -redis "$REDIS"
	"${load[@]}" "$tmp/chatload" run -url "$(list ws://127.0.0.1: /ws 7100 2)" -api "$(list http://127.0.0.1: '' 7100 2)" \
		-pid "$(joined "${node_pids[@]}")" -engine-pid "$(engines)" -metrics "$(list http://127.0.0.1: /metrics 7300 2)" "${LOAD[@]}" -label "2 nodes, redis engines, postgres"
	stop_nodes

	start_centrifugo 2
	"${load[@]}" "$tmp/chatload" run -target centrifugo -url "$(list ws://127.0.0.1: /connection/websocket 7200 2)" \
		-api "$(list http://127.0.0.1: /api 7200 2)" -pid "$(joined "${node_pids[@]}")" -engine-pid "$redis_pid" "${LOAD[@]}" \
		-label "centrifugo, 2 nodes, redis engine"
	stop_nodes
done
if [ -s "$tmp/roomnet.log" ]; then
	echo "roomnet nodes logged:" >&2
	tail -n 20 "$tmp/roomnet.log" >&2
fi

#!/usr/bin/env bash
# bench-nodeload.sh SHARDS NODES... — one shard count, a curve of node
# counts: for each count a fresh roomnetd (SQLite, SHARDS embedded
# Headscale children, no node cap) is started on 127.0.0.1:18080, loaded
# by bench/nodeload (rooms of 4, 8 joins in flight, a 10 s idle hold,
# churn of 2 leave+rejoin a second for 20 s, 20 kicks), then stopped.
# Reports go to ./nodeload-s<SHARDS>n<NODES>.{txt,json}. docs/benchmarks.md
# has the figures. The measured processes run at nice -10: run as root on
# an otherwise idle machine.
#
#   scripts/bench-nodeload.sh 1 250 500 1000
#   scripts/bench-nodeload.sh 4 500 1000
set -euo pipefail
shards=${1:?usage: bench-nodeload.sh SHARDS NODES...}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
out=$PWD
work=$(mktemp -d /tmp/roomnet-nodeload.XXXXXX)
trap 'pkill -TERM -f "data-dir $work/" 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$root" && go build -o "$work/" ./cmd/roomnetd ./bench/nodeload)
tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{printf "%.1f", ($14+$15)/t}' "/proc/$1/stat"; }

for n in "$@"; do
	d=$work/s${shards}n$n
	nice -n -10 "$work/roomnetd" --data-dir "$d" --listen 127.0.0.1:18080 --metrics-listen 127.0.0.1:18081 \
		--headscale-listen 127.0.0.1:18090 --headscale-shards "$shards" --headscale-shard-node-cap 1000000 \
		--derp-listen 127.0.0.1:18082 --derp-stun-listen 127.0.0.1:18083 \
		--auth-login-per-minute 1000000 --admin-password admin-password-123 --log-level warn >"$d.log" 2>&1 &
	main=$!
	for _ in $(seq 90); do curl -sf 127.0.0.1:18080/healthz >/dev/null && break; sleep 1; done
	pids=$(pgrep -P "$main" | paste -sd, -)
	echo "== $shards shard(s), $n nodes, Headscale pids $pids, $(date +%T)"
	nice -n -10 "$work/nodeload" -api http://127.0.0.1:18080 -nodes "$n" -room-size 4 -concurrency 8 \
		-hold 10s -churn-rate 2 -churn-for 20s -kicks 20 -timeout 2m -pids "$pids" \
		-json "$out/nodeload-s${shards}n$n.json" | tee "$out/nodeload-s${shards}n$n.txt" || true
	echo "roomnetd (API process) CPU seconds: $(cpu "$main")"
	kill -TERM "$main"; wait "$main" || true
done

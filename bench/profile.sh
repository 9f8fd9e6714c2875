#!/usr/bin/env bash
# CPU and allocation profiles of one `dmq bench` workload (issue 9), on both sides: the broker (a
# separate `dmq server` process with fsync before ack, profiled through /debug/pprof on its HTTP
# port) and the load generator (`dmq bench --cpuprofile/--memprofile`). Prints the top functions
# of each, and the broker's exact allocations per published message (runtime.MemStats Mallocs and
# TotalAlloc before and after, from /debug/pprof/allocs?debug=1).
#
#   bench/profile.sh [--workload w1_1k] [--reps 5] [--seconds 15] [--scale 1] [--top 25]
#                    [--out /tmp/dmq-profile] [--standalone] [--server-args "..."]
#
# The broker's CPU profile covers the first --seconds of the runs: choose --reps so the runs last
# at least that long. Files in --out: server.cpu, server-allocs-{before,after}.pb.gz,
# client.cpu, client.allocs, bench.jsonl, the dmq binary (pprof needs it) and summary.txt.
# The broker is a plain `dmq server` (a one-voter cluster); --standalone runs it without Raft.
# --server-args passes more flags to `dmq server`.
# Read more with e.g. `go tool pprof -list 'seglog.*Append' $out/dmq $out/server.cpu`.
set -euo pipefail

workload=w1_1k
reps=5
seconds=15
scale=1
top=25
out=/tmp/dmq-profile
server_args=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
	case "$1" in
	--workload) workload=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--scale) scale=$2; shift 2 ;;
	--top) top=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--server-args) server_args=$2; shift 2 ;;
	--standalone) server_args="$server_args --standalone"; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "profile: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
mkdir -p "$out"
go build -o "$out/dmq" ./cmd/dmq
dmq=$out/dmq

. bench/lib.sh # the script runs from the repository root
trap stop_server EXIT

data=$out/data
rm -rf "$data"
grpc=$(free_port)
http=$(free_port)
# shellcheck disable=SC2086 # server_args is a list of flags
"$dmq" server --data "$data" --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" --cluster-listen "127.0.0.1:$(free_port)" $server_args >"$out/server.log" 2>&1 &
server_pid=$!
wait_ready "$http"

# memstat NAME FILE: one runtime.MemStats counter from a debug=1 allocs profile.
memstat() { awk -v k="# $1 = " 'index($0, k) == 1 { print substr($0, length(k) + 1) }' "$2"; }

curl -sf "http://127.0.0.1:$http/debug/pprof/allocs" -o "$out/server-allocs-before.pb.gz"
curl -sf "http://127.0.0.1:$http/debug/pprof/allocs?debug=1" -o "$out/server-memstats-before.txt"
curl -sf "http://127.0.0.1:$http/debug/pprof/profile?seconds=$seconds" -o "$out/server.cpu" &
cpu_pid=$!
"$dmq" bench all --server "127.0.0.1:$grpc" --workloads "$workload" --reps "$reps" --scale "$scale" \
	--no-warmup --settle 0s --broker-pid "$server_pid" --json \
	--cpuprofile "$out/client.cpu" --memprofile "$out/client.allocs" >"$out/bench.jsonl"
wait "$cpu_pid" || echo "profile: the broker's CPU profile failed" >&2
curl -sf "http://127.0.0.1:$http/debug/pprof/allocs" -o "$out/server-allocs-after.pb.gz"
curl -sf "http://127.0.0.1:$http/debug/pprof/allocs?debug=1" -o "$out/server-memstats-after.txt"
stop_server
rm -rf "$data"

msgs=$(python3 -c 'import json,sys; print(sum(json.loads(l)["msgs"] for l in open(sys.argv[1]) if l.strip()))' "$out/bench.jsonl")
{
	echo "workload $workload × $reps, $msgs messages published; $(date -u +%Y-%m-%dT%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
	python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print("  rep %d: %.0f msg/s, broker CPU %.1f µs/msg, client CPU %.1f µs/msg [%s]" % (r["rep"], r["msgs_per_s"],
          r.get("broker_cpu_s", 0) / max(r["msgs"], 1) * 1e6, r.get("client_cpu_s", 0) / max(r["msgs"], 1) * 1e6, r["durability"]))
' "$out/bench.jsonl"
	m0=$(memstat Mallocs "$out/server-memstats-before.txt") m1=$(memstat Mallocs "$out/server-memstats-after.txt")
	a0=$(memstat TotalAlloc "$out/server-memstats-before.txt") a1=$(memstat TotalAlloc "$out/server-memstats-after.txt")
	g0=$(memstat NumGC "$out/server-memstats-before.txt") g1=$(memstat NumGC "$out/server-memstats-after.txt")
	echo "broker allocations per published message: $(((m1 - m0) / msgs)) objects, $(((a1 - a0) / msgs)) bytes; $((g1 - g0)) GCs"
	echo
	echo "== broker CPU (first ${seconds}s)"
	go tool pprof -top -nodecount "$top" "$dmq" "$out/server.cpu" 2>/dev/null | sed -n '1,/^ *flat/d;p' | head -n "$top"
	echo
	echo "== broker CPU, cumulative"
	go tool pprof -top -cum -nodecount "$top" "$dmq" "$out/server.cpu" 2>/dev/null | sed -n '1,/^ *flat/d;p' | head -n "$top"
	echo
	echo "== broker allocations during the runs (alloc_space)"
	go tool pprof -top -sample_index=alloc_space -nodecount "$top" -base "$out/server-allocs-before.pb.gz" "$dmq" "$out/server-allocs-after.pb.gz" 2>/dev/null | sed -n '1,/^ *flat/d;p' | head -n "$top"
	echo
	echo "== broker allocations during the runs (alloc_objects)"
	go tool pprof -top -sample_index=alloc_objects -nodecount "$top" -base "$out/server-allocs-before.pb.gz" "$dmq" "$out/server-allocs-after.pb.gz" 2>/dev/null | sed -n '1,/^ *flat/d;p' | head -n "$top"
	echo
	echo "== load generator CPU"
	go tool pprof -top -nodecount "$top" "$dmq" "$out/client.cpu" 2>/dev/null | sed -n '1,/^ *flat/d;p' | head -n "$top"
	echo
	echo "== load generator allocations (alloc_space)"
	go tool pprof -top -sample_index=alloc_space -nodecount "$top" "$dmq" "$out/client.allocs" 2>/dev/null | sed -n '1,/^ *flat/d;p' | head -n "$top"
} | tee "$out/summary.txt"

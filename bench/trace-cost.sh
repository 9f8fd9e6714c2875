#!/usr/bin/env bash
# Measure what message tracing costs: runs `dmq bench` against a fresh `dmq server` with tracing
# on and with --no-trace, alternating (on, off, on, off, ...) so machine noise hits both alike,
# for publish only and for publish + one consuming group. Prints each run and, per workload,
# the median msgs/s of each mode with its spread and the ratio off/on.
#
#   bench/trace-cost.sh [--runs 5] [--count 200000] [--size 1024] [--out /tmp/tracecost]
#
# Needs go. Servers listen on free loopback ports with temporary data directories (fsync on)
# and are stopped by the script.
set -euo pipefail

runs=5
count=200000
size=1024
out=/tmp/tracecost

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--count) count=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "trace-cost: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
mkdir -p "$out"
go build -o "$out/dmq" ./cmd/dmq
dmq=$out/dmq

. bench/lib.sh # the script runs from the repository root

trap stop_server EXIT

# run MODE WORKLOAD N: one bench run against a fresh server; appends its JSON to $out/MODE-WORKLOAD.
run() {
	local mode=$1 workload=$2 n=$3 flags=() bflags=()
	[ "$mode" = off ] && flags+=(--no-trace)
	[ "$workload" = consume ] && bflags+=(--consume)
	local data=$out/data-$mode-$workload-$n grpc http
	rm -rf "$data"
	grpc=$(free_port)
	http=$(free_port)
	"$dmq" server --data "$data" --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" "${flags[@]}" >"$out/server-$mode-$workload-$n.log" 2>&1 &
	server_pid=$!
	wait_ready "$http"
	"$dmq" bench --server "127.0.0.1:$grpc" --count "$count" --size "$size" "${bflags[@]}" --json | tee -a "$out/$mode-$workload.jsonl"
	stop_server
	rm -rf "$data"
}

rm -f "$out"/*.jsonl
for n in $(seq "$runs"); do
	for workload in publish consume; do
		for mode in on off; do
			printf 'run %d %-7s trace %-3s ' "$n" "$workload" "$mode"
			run "$mode" "$workload" "$n"
		done
	done
done

echo
echo "| workload | trace on msgs/s (median [min–max]) | trace off msgs/s (median [min–max]) | off/on |"
echo "| -------- | ---------------------------------- | ----------------------------------- | ------ |"
for workload in publish consume; do
	python3 - "$out/on-$workload.jsonl" "$out/off-$workload.jsonl" "$workload" <<'PY'
import json, statistics, sys
def rates(p):
    return sorted(json.loads(l)["msgs_per_sec"] for l in open(p) if l.strip())
on, off = rates(sys.argv[1]), rates(sys.argv[2])
mon, moff = statistics.median(on), statistics.median(off)
f = lambda xs, m: f"{m/1000:.0f}k [{xs[0]/1000:.0f}k–{xs[-1]/1000:.0f}k]"
print(f"| {sys.argv[3]} | {f(on, mon)} | {f(off, moff)} | {moff/mon:.2f} |")
PY
done

#!/usr/bin/env bash
# A/B comparison of two builds of DMQ on one workload, run by run in alternation so the machine's
# noise (this is a shared VM) hits both alike. Each run starts a fresh `dmq server` (fsync before
# ack) from that build and drives it with the same `dmq bench` load generator (the B build's).
# Prints every run and, per build, the median [min–max] of msgs/s and of the broker's CPU time per
# message (the steadier figure when the machine is noisy).
#
#   bench/ab.sh [--a REV] [--b REV|worktree] [--workload w1_1k] [--rounds 6] [--reps 1]
#               [--out /tmp/dmq-ab] [--server-args "..."] [--one-voter] [--standalone]
#
# --a defaults to HEAD and --b to the working tree (uncommitted changes included).
# --server-args passes flags to both builds' `dmq server`; --one-voter is short for a one-voter
# cluster's (--node-id n1), which a plain server is since the one-voter default (73be0a2), and
# --standalone (builds from then on) for a broker without Raft. Each server's Raft port is free.
set -euo pipefail

a=HEAD
b=worktree
workload=w1_1k
rounds=6
reps=1
out=/tmp/dmq-ab
server_args=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
	case "$1" in
	--a) a=$2; shift 2 ;;
	--b) b=$2; shift 2 ;;
	--workload) workload=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--server-args) server_args=$2; shift 2 ;;
	--one-voter) server_args="$server_args --node-id n1"; shift ;;
	--standalone) server_args="$server_args --standalone"; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "ab: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
. bench/lib.sh
rm -rf "$out"
mkdir -p "$out"

# build REV BIN: the dmq binary of a revision, or of the working tree.
build() {
	if [ "$1" = worktree ]; then
		go build -o "$2" ./cmd/dmq
		return
	fi
	local src=$out/src-$(basename "$2")
	git worktree add -q --detach "$src" "$1"
	(cd "$src" && go build -o "$2" ./cmd/dmq)
	git worktree remove --force "$src"
}
build "$a" "$out/dmq-a"
build "$b" "$out/dmq-b"

trap stop_server EXIT

# run SIDE: one run of the workload against a fresh server of that side's build.
run() {
	local side=$1 data=$out/data grpc http
	rm -rf "$data"
	grpc=$(free_port)
	http=$(free_port)
	# shellcheck disable=SC2086 # server_args is a list of flags
	"$out/dmq-$side" server --data "$data" --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" --cluster-listen 127.0.0.1:0 $server_args \
		>"$out/server-$side.log" 2>&1 &
	server_pid=$!
	wait_ready "$http"
	"$out/dmq-b" bench all --server "127.0.0.1:$grpc" --workloads "$workload" --reps "$reps" \
		--broker-pid "$server_pid" --json | sed "s/^{/{\"side\":\"$side\",/" >>"$out/runs.jsonl"
	stop_server
	rm -rf "$data"
}

echo "ab: $workload, $rounds rounds of $reps run(s) per build; A=$a B=$b${server_args:+; server $server_args}; load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$rounds"); do
	if [ $((i % 2)) -eq 1 ]; then run a; run b; else run b; run a; fi
done
python3 - "$out/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def fig(r, key):
    if key == "cpu":
        return r.get("broker_cpu_s", 0) / max(r["msgs"], 1) * 1e6
    return r[key]
keys = [k for k in ("msgs_per_s", "p50_ms", "p99_ms") if k in runs[0]] + ["cpu"]
names = {"msgs_per_s": "msgs/s", "p50_ms": "p50 ms", "p99_ms": "p99 ms", "cpu": "broker CPU µs/msg"}
for r in runs:
    print("  %s: %s" % (r["side"], ", ".join("%s %.3g" % (names[k], fig(r, k)) for k in keys)))
med = {}
for side in "ab":
    for k in keys:
        v = [fig(r, k) for r in runs if r["side"] == side]
        med[side, k] = statistics.median(v)
        print("%s %-18s median %.4g [%.4g–%.4g]" % (side.upper(), names[k], med[side, k], min(v), max(v)))
for k in keys:
    print("B/A %-18s %.3f" % (names[k], med["b", k] / med["a", k]))
PY

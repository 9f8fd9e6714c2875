#!/usr/bin/env bash
# Measure DMQ in cluster mode with its own workloads (dmq bench w1|w2|w3): a cluster of
# --nodes nodes on this machine (1 = a one-voter cluster), once per shard count of
# --shards and replica count of --replicas (0: every node keeps every shard; each run
# waits until the shards' leaders are on different nodes), and for comparison a standalone
# server (--standalone, no Raft), alternating run by run. After each setup's workloads, the
# bytes each node keeps on disk.
# --args passes flags to every `dmq bench` (the W1 scaling run uses
# "--topics 3 --producers 3 --shards 3": one topic per shard).
#
#   bench/cluster.sh [--nodes 3] [--shards "1 3"] [--replicas "0 3"] [--reps 3]
#                    [--workloads "w1 w2 w3"] [--args "..."] [--no-single]
#
# Prints every run's lines and, per workload and setup, the median and the range of
# msgs/s and of the latency columns. Everything runs on loopback; the nodes' data goes
# to a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

nodes=3 reps=3 workloads="w1 w2 w3" single=1 shardcounts=1 replicacounts=0 args=""
while [ $# -gt 0 ]; do
	case "$1" in
	--nodes) nodes=$2; shift 2 ;;
	--shards) shardcounts=$2; shift 2 ;;
	--replicas) replicacounts=$2; shift 2 ;;
	--args) args=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	--workloads) workloads=$2; shift 2 ;;
	--no-single) single=0; shift ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done

work=$(mktemp -d)
bin=$work/dmq
go build -o "$bin" ./cmd/dmq
pids=()
stop_all() {
	for p in "${pids[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]:-}"; do
		[ -n "$p" ] && wait "$p" 2>/dev/null || true
	done
	pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

# cpu_seconds prints the CPU seconds (user + system) each server process has used so far.
cpu_seconds() {
	local p tck
	tck=$(getconf CLK_TCK)
	for p in "${pids[@]}"; do
		awk -v t="$tck" '{ printf "%.3f ", ($14 + $15) / t }' "/proc/$p/stat"
	done
}

# start_cluster DIR SHARDS REPLICAS starts the nodes, waits until every shard has a
# leader, on different nodes where there are enough, and sets leader_grpc to every node's
# gRPC address.
start_cluster() {
	local dir=$1 shards=$2 replicas=$3 peers="" i
	local -a grpc http raft
	for i in $(seq "$nodes"); do
		grpc[$i]=$(free_port) http[$i]=$(free_port) raft[$i]=$(free_port)
		peers+="${peers:+,}n$i=127.0.0.1:${raft[$i]}"
	done
	[ "$nodes" = 1 ] && peers=""
	for i in $(seq "$nodes"); do
		"$bin" server --node-id "n$i" --shards "$shards" --replicas "$replicas" ${peers:+--peers "$peers"} --cluster-listen "127.0.0.1:${raft[$i]}" \
			--listen "127.0.0.1:${grpc[$i]}" --http "127.0.0.1:${http[$i]}" --data "$dir/n$i" \
			>"$dir.n$i.log" 2>&1 &
		pids+=($!)
	done
	leader_grpc=""
	for i in $(seq "$nodes"); do
		leader_grpc+="${leader_grpc:+,}127.0.0.1:${grpc[$i]}"
	done
	for _ in $(seq 600); do
		if curl -sf "http://127.0.0.1:${http[1]}/api/v1/cluster" 2>/dev/null | python3 -c '
import json, sys
st = json.load(sys.stdin)
groups = st["groups"] + st.get("elsewhere", [])
leaders = [g.get("leader", {}).get("id", "") for g in groups]
want = min(len(leaders), int(sys.argv[1]))
sys.exit(0 if all(leaders) and len(set(leaders)) >= want and all(g["leader"].get("grpc") for g in groups) else 1)' "$nodes" 2>/dev/null; then
			sleep 1 # the leaders open their brokers
			return 0
		fi
		sleep 0.1
	done
	echo "the shards have no leaders on different nodes after 60 s; the nodes' last lines:" >&2
	for i in $(seq "$nodes"); do
		echo "== n$i" >&2
		grep -E 'level=(WARN|ERROR)|cluster:' "$dir.n$i.log" | tail -8 >&2 || true
	done
	curl -s "http://127.0.0.1:${http[1]}/api/v1/cluster" >&2 || true
	return 1
}

start_single() {
	local dir=$1 grpc http
	grpc=$(free_port) http=$(free_port)
	"$bin" server --standalone --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" --data "$dir" >"$dir.log" 2>&1 &
	pids+=($!)
	wait_ready "$http"
	leader_grpc=127.0.0.1:$grpc
}

results=$work/results
: >"$results"
for rep in $(seq "$reps"); do
	setups=""
	for n in $shardcounts; do
		for r in $replicacounts; do setups+=" ${nodes}nodes-${n}shards-r${r}"; done
	done
	[ "$single" = 1 ] && setups+=" single"
	for setup in $setups; do
		dir=$work/$setup-$rep
		if [ "$setup" = single ]; then
			start_single "$dir"
		else
			start_cluster "$dir" "$(echo "$setup" | sed 's/.*nodes-\(.*\)shards.*/\1/')" "${setup##*-r}"
		fi
		for w in $workloads; do
			before=$(cpu_seconds)
			# shellcheck disable=SC2086
			"$bin" bench "$w" --server "$leader_grpc" $args 2>&1 | grep ' rep ' | sed "s/^/$setup /" | tee -a "$results"
			# CPU each server process used over the workload: on separate machines the
			# busiest node bounds the throughput; its share is printed as busiest=.
			python3 -c '
import sys
b, a = [list(map(float, x.split())) for x in sys.argv[1:3]]
d = [y - x for x, y in zip(b, a)]
t = sum(d)
print(sys.argv[3], "cpu", sys.argv[4], " ".join("n%d=%.2fs" % (i + 1, x) for i, x in enumerate(d)),
      "total=%.2fs busiest=%.2f" % (t, max(d) / t if t else 0))' "$before" "$(cpu_seconds)" "$setup" "$w" | tee -a "$results"
		done
		# What each node keeps on disk (topic logs, metadata, Raft logs and snapshots).
		if [ "$setup" != single ]; then
			echo "$setup disk $(for i in $(seq "$nodes"); do printf 'n%d=%s ' "$i" "$(du -sm "$dir/n$i" | cut -f1)MiB"; done)" | tee -a "$results"
		fi
		stop_all
	done
done

echo
echo "medians over $reps runs (range):"
python3 - "$results" <<'EOF'
import re, sys, statistics, collections
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split()
    if f[1] == "disk":
        continue
    if f[1] == "cpu":
        m = re.search(r"busiest=([\d.]+)", line)
        rows[(f[2] + " cpu", f[0])]["busiest node's share"].append(float(m.group(1)))
        continue
    setup, name = f[0], f[2]
    for key, pat in (("msg/s", r"([\d.]+) msg/s"), ("p50", r"p50=([\d.]+)"), ("p99", r"p99=([\d.]+)")):
        m = re.search(pat, line)
        if m:
            rows[(name, setup)][key].append(float(m.group(1)))
for (name, setup), cols in sorted(rows.items()):
    parts = []
    for key, vals in cols.items():
        parts.append(f"{key} {statistics.median(vals):,.3f} ({min(vals):,.3f}-{max(vals):,.3f})" if key != "msg/s"
                     else f"{key} {statistics.median(vals):,.0f} ({min(vals):,.0f}-{max(vals):,.0f})")
    print(f"  {name:9} {setup:16} " + "  ".join(parts))
EOF

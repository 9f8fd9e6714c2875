#!/usr/bin/env bash
# Measure DMQ in cluster mode with its own workloads (dmq bench w1|w2|w3): a cluster of
# --nodes nodes on this machine (replication factor = nodes; 1 = a one-voter cluster),
# and for comparison a plain single node, alternating run by run.
#
#   bench/cluster.sh [--nodes 3] [--reps 3] [--workloads "w1 w2 w3"] [--no-single]
#
# Prints every run's lines and, per workload and setup, the median and the range of
# msgs/s and of the latency columns. Everything runs on loopback; the nodes' data goes
# to a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

nodes=3 reps=3 workloads="w1 w2 w3" single=1
while [ $# -gt 0 ]; do
	case "$1" in
	--nodes) nodes=$2; shift 2 ;;
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

# start_cluster sets leader_grpc to the gRPC address of the elected leader.
start_cluster() {
	local dir=$1 peers="" i
	local -a grpc http raft
	for i in $(seq "$nodes"); do
		grpc[$i]=$(free_port) http[$i]=$(free_port) raft[$i]=$(free_port)
		peers+="${peers:+,}n$i=127.0.0.1:${raft[$i]}"
	done
	[ "$nodes" = 1 ] && peers=""
	for i in $(seq "$nodes"); do
		"$bin" server --node-id "n$i" ${peers:+--peers "$peers"} --cluster-listen "127.0.0.1:${raft[$i]}" \
			--listen "127.0.0.1:${grpc[$i]}" --http "127.0.0.1:${http[$i]}" --data "$dir/n$i" \
			>"$dir.n$i.log" 2>&1 &
		pids+=($!)
	done
	for _ in $(seq 200); do
		for i in $(seq "$nodes"); do
			if curl -sf "http://127.0.0.1:${http[$i]}/readyz" >/dev/null 2>&1; then
				leader_grpc=127.0.0.1:${grpc[$i]}
				return 0
			fi
		done
		sleep 0.1
	done
	echo "no leader after 20 s" >&2
	return 1
}

start_single() {
	local dir=$1 grpc http
	grpc=$(free_port) http=$(free_port)
	"$bin" server --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" --data "$dir" >"$dir.log" 2>&1 &
	pids+=($!)
	wait_ready "$http"
	leader_grpc=127.0.0.1:$grpc
}

results=$work/results
: >"$results"
for rep in $(seq "$reps"); do
	setups="cluster$nodes"
	[ "$single" = 1 ] && setups+=" single"
	for setup in $setups; do
		dir=$work/$setup-$rep
		if [ "$setup" = single ]; then start_single "$dir"; else start_cluster "$dir"; fi
		for w in $workloads; do
			"$bin" bench "$w" --server "$leader_grpc" 2>&1 | grep ' rep ' | sed "s/^/$setup /" | tee -a "$results"
		done
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
    print(f"  {name:9} {setup:9} " + "  ".join(parts))
EOF

#!/usr/bin/env bash
# DMQ against its peers (issue 9): runs the peers' harness (run.sh of ../shared/bench-peers, never
# copied into this repository) and then `dmq bench all` on the same machine, one after the other,
# with the same workloads, repetitions and scale, and prints one markdown report: the machine, a
# table of medians with the ratio DMQ/peer per workload, and the harness's detailed tables with
# DMQ's rows added (dmq bench writes the harness's JSON fields, so its report tool reads both).
#
#   bench/compare.sh [--peers DIR] [--targets "nats nats-sync rabbitmq redis-always redis-everysec"]
#                    [--reps 3] [--scale 1] [--workloads w1_1k,w1_128,w2,w3_tput,w3_lat,w4]
#                    [--maxdur 90s] [--out /tmp/dmq-compare] [--dmq-only] [--peers-results FILE]
#                    [--dmq-flags "--producers 2"]
#
# --peers defaults to ../shared/bench-peers relative to the repository. The disk's fsync and write
# limits are measured on /tmp first with the harness's fsbench. A peer that cannot run here
# (its server is missing and cannot be installed, or its run fails) is reported and skipped; the
# others still run. run.sh installs redis-server and rabbitmq-server with apt when missing. Kafka is
# not in the default targets: its broker jars come from Maven Central (see the harness's
# RESULTS.md); add it with --targets. --dmq-only skips the peers and, with --peers-results, reuses
# a results file of an earlier run (only ratios inside one session are meaningful: the machine
# drifts). DMQ runs as its own `dmq server` process with fsync before ack, data under /tmp like the
# peers, on free loopback ports; the script stops it by PID. Everything is written to --out:
# peers.jsonl (+ .meta, the harness's log), dmq.jsonl, server.log and report.md.
# SCALE=0.05 REPS=1 gives a smoke test of a minute or two (plus installs); the full run takes
# about 20 minutes on 2 cores.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
peers=$repo/../shared/bench-peers
targets="nats nats-sync rabbitmq redis-always redis-everysec"
reps=${REPS:-3}
scale=${SCALE:-1}
workloads=${WORKLOADS:-w1_1k,w1_128,w2,w3_tput,w3_lat,w4}
maxdur=${MAXDUR:-90s}
out=/tmp/dmq-compare
dmq_only=
peers_results=
dmq_flags=

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
	case "$1" in
	--peers) peers=$2; shift 2 ;;
	--targets) targets=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	--scale) scale=$2; shift 2 ;;
	--workloads) workloads=$2; shift 2 ;;
	--maxdur) maxdur=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--dmq-only) dmq_only=1; shift ;;
	--peers-results) peers_results=$2; shift 2 ;;
	--dmq-flags) dmq_flags=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done
peers=$(cd "$peers" 2>/dev/null && pwd) || { echo "compare: no peers' harness at $peers (--peers)" >&2; exit 2; }
[ -x "$peers/run.sh" ] || { echo "compare: $peers/run.sh missing" >&2; exit 2; }
mkdir -p "$out"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/compare.log" >&2; }
: >"$out/compare.log"

# ---------------------------------------------------------------- machine
{
	echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "nproc: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
	echo "mem: $(free -g | awk '/Mem:/{print $2" GiB"}')"
	echo "kernel: $(uname -r)"
	echo "disk (/tmp): $(findmnt -n -o SOURCE,FSTYPE -T /tmp)"
	echo "go: $(go version | awk '{print $3}')"
	echo "dmq: $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- . 2>/dev/null || echo ' (+ uncommitted changes)')"
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "reps: $reps scale: $scale maxdur: $maxdur workloads: $workloads"
} >"$out/machine.txt"

# ---------------------------------------------------------------- peers
# peer_available TARGET: whether its server can be started here (installing it as run.sh would).
peer_available() {
	case $1 in
	redis-*) command -v redis-server >/dev/null || apt_install redis-server; command -v redis-server >/dev/null ;;
	rabbitmq) [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server; [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] ;;
	nats | nats-sync) [ -x "$harness" ] ;; # embedded in the harness binary
	kafka) true ;;                       # run.sh itself reports "SKIPPED" without broker jars
	*) false ;;
	esac
}
apt_install() {
	log "installing $1 with apt"
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1"; } >>"$out/apt.log" 2>&1 ||
		log "$1: apt install failed (see $out/apt.log)"
}

peers_jsonl=$out/peers.jsonl
harness=/tmp/peersbench/peersbench # where run.sh builds it too
log "building the peers' harness into $harness"
mkdir -p "$(dirname "$harness")"
(cd "$peers" && go build -o "$harness" .) >>"$out/compare.log" 2>&1 || log "the peers' harness does not build: no peers, no detailed tables"
if [ -z "$dmq_only" ]; then
	rm -f "$peers_jsonl" "${peers_jsonl%.jsonl}.meta"
	# The disk's limits at the time of the run, on /tmp where every broker keeps its data (run.sh's
	# own "fs" target also writes into the harness's directory, which is shared: not used here).
	if [ -x "$harness" ]; then
		log "fs: disk limits of /tmp"
		"$harness" fsbench -dir /tmp/dmq-compare-fs -label "/tmp" -reps "$reps" -out "$peers_jsonl" >>"$out/peers-run.log" 2>&1 ||
			log "fs: fsbench failed"
		rm -rf /tmp/dmq-compare-fs
	fi
	for t in $targets; do
		if ! peer_available "$t"; then
			log "peer $t: NOT AVAILABLE on this machine, skipped"
			echo "$t" >>"$out/skipped.txt"
			continue
		fi
		log "peer $t: running $peers/run.sh $t"
		# One run.sh per target, so one failing peer does not stop the others; all append to one file.
		if ! OUT=$peers_jsonl REPS=$reps SCALE=$scale WORKLOADS=$workloads MAXDUR=$maxdur \
			"$peers/run.sh" "$t" >>"$out/peers-run.log" 2>&1; then
			log "peer $t: run.sh failed (see $out/peers-run.log)"
			echo "$t" >>"$out/skipped.txt"
		fi
	done
elif [ -n "$peers_results" ]; then
	cp "$peers_results" "$peers_jsonl"
else
	: >"$peers_jsonl"
fi

# ---------------------------------------------------------------- dmq
log "dmq: building"
(cd "$repo" && go build -o "$out/dmq" ./cmd/dmq)
. "$repo/bench/lib.sh"
trap stop_server EXIT
data=/tmp/dmq-compare-data
rm -rf "$data"
grpc=$(free_port)
http=$(free_port)
"$out/dmq" server --data "$data" --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" --cluster-listen "127.0.0.1:$(free_port)" >"$out/server.log" 2>&1 &
server_pid=$!
wait_ready "$http"
log "dmq: server pid $server_pid on 127.0.0.1:$grpc, data $data; load:$(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086 # dmq_flags is a list of flags
"$out/dmq" bench all --server "127.0.0.1:$grpc" --broker-pid "$server_pid" --reps "$reps" --scale "$scale" \
	--workloads "$workloads" --maxdur "$maxdur" --json $dmq_flags >"$out/dmq.jsonl" 2>>"$out/compare.log" ||
	log "dmq bench failed"
stop_server
rm -rf "$data"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"

# ---------------------------------------------------------------- report
{
	echo "## Run of $(sed -n 's/^date_utc: //p' "$out/machine.txt")"
	echo
	echo '```'
	cat "$out/machine.txt"
	[ -s "$out/skipped.txt" ] && echo "peers skipped: $(sort -u "$out/skipped.txt" | tr '\n' ' ')"
	echo '```'
	echo
	python3 - "$peers_jsonl" "$out/dmq.jsonl" <<'PY'
import json, statistics, sys

def load(p):
    try:
        return [json.loads(l) for l in open(p) if l.strip()]
    except FileNotFoundError:
        return []

peers, dmq = load(sys.argv[1]), load(sys.argv[2])
runs = {}
for r in peers + dmq:
    runs.setdefault((r["workload"], r["label"]), []).append(r)
dmq_label = dmq[0]["label"] if dmq else "dmq"
peer_labels = []
for r in peers:
    if r["label"] not in peer_labels and not r["workload"].startswith("fs_"):
        peer_labels.append(r["label"])

# (workload, metric title, value of a run, format, higher is better)
metrics = [
    ("w1_1k", "W1 1 KiB msgs/s", lambda r: r["msgs_per_s"], "{:,.0f}", True),
    ("w1_128", "W1 128 B msgs/s", lambda r: r["msgs_per_s"], "{:,.0f}", True),
    ("w2", "W2 sync publish p50 ms", lambda r: r.get("p50_ms", 0), "{:.3f}", False),
    ("w2", "W2 sync publish p99 ms", lambda r: r.get("p99_ms", 0), "{:.3f}", False),
    ("w3_tput", "W3 msgs/s until all acked", lambda r: r["msgs_per_s"], "{:,.0f}", True),
    ("w3_lat", "W3 e2e p50 ms @5k/s", lambda r: r.get("p50_ms", 0), "{:.2f}", False),
    ("w3_lat", "W3 e2e p99 ms @5k/s", lambda r: r.get("p99_ms", 0), "{:.2f}", False),
    ("w4", "W4 published msgs/s into 4 groups", lambda r: r["msgs_per_s"], "{:,.0f}", True),
]

def med(rs, f):
    v = sorted(f(r) for r in rs)
    return statistics.median(v), v[0], v[-1]

def failed(rs):
    return any(r.get("err") or r.get("capped") for r in rs)

print("Medians of %s; DMQ cells show [min–max]; peer cells show the ratio DMQ/peer in bold"
      " (above 1 is better for DMQ on msgs/s rows, below 1 on latency rows). `!` marks a"
      " run with an error or a time cap; `≠ counts` a comparison of different message counts (--scale)." % ("%d run(s) per cell" % max((len(v) for v in runs.values()), default=0)))
print()
print("| metric | %s | %s |" % (dmq_label, " | ".join(peer_labels)))
print("|" + " --- |" * (2 + len(peer_labels)))
for w, title, f, fmt, _ in metrics:
    d = runs.get((w, dmq_label))
    if not d and not any(runs.get((w, l)) for l in peer_labels):
        continue
    cells = []
    dm = None
    if d:
        dm, lo, hi = med(d, f)
        cells.append("%s [%s–%s]%s" % (fmt.format(dm), fmt.format(lo), fmt.format(hi), " !" if failed(d) else ""))
    else:
        cells.append("–")
    for l in peer_labels:
        p = runs.get((w, l))
        if not p:
            cells.append("–")
            continue
        pm, _, _ = med(p, f)
        ratio = ""
        if dm is not None and pm > 0:
            r = dm / pm
            ratio = " **%s×**" % ("%.2f" % r if r >= 0.1 else "%.2g" % r)
        if d and p[0]["target"] != d[0]["target"]:
            ratio += " (≠ counts: %d vs %d)" % (d[0]["target"], p[0]["target"])
        cells.append(fmt.format(pm) + ratio + (" !" if failed(p) else ""))
    print("| %s | %s |" % (title, " | ".join(cells)))
durs = sorted({r.get("durability", "") for r in dmq})
print()
print("DMQ durability, as its broker reported it in every run: %s." % ", ".join(durs or ["(no DMQ results)"]))
PY
	echo
	echo "### Detailed tables (the harness's report over both result files)"
	echo
	if [ -x "$harness" ]; then
		files=()
		[ -s "$peers_jsonl" ] && files+=("$peers_jsonl")
		[ -s "$out/dmq.jsonl" ] && files+=("$out/dmq.jsonl")
		[ ${#files[@]} -gt 0 ] && "$harness" report "${files[@]}"
	else
		echo "(the harness did not build: no detailed tables)"
	fi
} >"$out/report.md"
log "report: $out/report.md"
cat "$out/report.md"

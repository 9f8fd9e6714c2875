#!/usr/bin/env bash
# Compare DMQ's delayed messages with a hand-written Redis sorted-set delay queue on the same
# workload: --count messages of --size bytes due uniformly over the next --span.
#
# Starts a DMQ server and, for each Redis setting, a fresh redis-server (appendonly yes), all on
# free loopback ports with temporary data directories; runs `dmq bench delay` and then
# bench/redisdelay one after the other; stops every server it started; prints one markdown table.
# Raw outputs (JSON results, server logs) go to --out.
#
#   bench/delay-compare.sh [--count 1000000] [--span 10m] [--size 128]
#                          [--redis-fsync always[,everysec]] [--redis-poll 10ms[,100ms]]
#                          [--out /tmp/delaycompare] [--skip-dmq]
#
# Needs go and redis-server (Debian: apt-get install -y redis-server). Installs nothing.
set -euo pipefail

count=1000000
span=10m
size=128
fsyncs=always
polls=10ms
out=/tmp/delaycompare
skip_dmq=0

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case "$1" in
	--count) count=$2; shift 2 ;;
	--span) span=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--redis-fsync) fsyncs=$2; shift 2 ;;
	--redis-poll) polls=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--skip-dmq) skip_dmq=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "delay-compare: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done
for f in ${fsyncs//,/ }; do
	case "$f" in always | everysec | no) ;; *) echo "delay-compare: --redis-fsync takes always, everysec or no" >&2; exit 2 ;; esac
done

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	echo "delay-compare: redis-server (and redis-cli) not found; install them with:" >&2
	echo "  apt-get install -y redis-server" >&2
	exit 1
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
tmp=$(mktemp -d /tmp/delay-compare.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		if kill -0 "$p" 2>/dev/null; then
			kill "$p" 2>/dev/null || true
			wait "$p" 2>/dev/null || true
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback TCP port nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# wait_port waits until something listens on the port (up to 30 s).
wait_port() {
	for _ in $(seq 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "delay-compare: nothing listens on 127.0.0.1:$1 after 30 s" >&2
	return 1
}

# stop ends one server this script started and waits for it.
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# field NAME FILE prints one numeric field of a one-line JSON result.
field() { grep -o "\"$1\":[^,}]*" "$2" | head -1 | cut -d: -f2; }

span_secs() { # 10m, 90s, 1h30m → seconds (for the timeouts only)
	local s=$1 total=0 n
	while [[ $s =~ ^([0-9]+)(h|m|s)(.*)$ ]]; do
		n=${BASH_REMATCH[1]}
		case ${BASH_REMATCH[2]} in h) n=$((n * 3600)) ;; m) n=$((n * 60)) ;; esac
		total=$((total + n))
		s=${BASH_REMATCH[3]}
	done
	[ -z "$s" ] || total=3600
	echo "$total"
}
limit=$(($(span_secs "$span") + 900)) # a run that takes 15 minutes longer than the span is stuck

echo "delay-compare: building into $tmp" >&2
(cd "$repo" && go build -o "$tmp/dmq" ./cmd/dmq && go build -o "$tmp/redisdelay" ./bench/redisdelay)

rows=()
row() { # name json
	local f=$2
	rows+=("$(printf '| %s | %.0f | %.1f | %.1f | %.1f | %s | %.0f |' "$1" \
		"$(field schedule_msgs_per_sec "$f")" "$(field lateness_p50_ms "$f")" "$(field lateness_p99_ms "$f")" \
		"$(field lateness_max_ms "$f")" "$(field early "$f")" "$(field broker_peak_rss_mb "$f")" 2>/dev/null || true)")
}

if [ "$skip_dmq" = 0 ]; then
	grpc=$(free_port)
	http=$(free_port)
	while [ "$http" = "$grpc" ]; do http=$(free_port); done
	echo "delay-compare: DMQ server on 127.0.0.1:$grpc (HTTP $http), data $tmp/dmq-data" >&2
	"$tmp/dmq" server --data "$tmp/dmq-data" --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" --log-level warn \
		>"$out/dmq-server.log" 2>&1 &
	dmq_pid=$!
	pids+=("$dmq_pid")
	wait_port "$grpc"
	echo "delay-compare: dmq bench delay --count $count --size $size --span $span" >&2
	if timeout "$limit" "$tmp/dmq" --server "127.0.0.1:$grpc" bench delay --count "$count" --size "$size" --span "$span" --json \
		>"$out/dmq.json" 2>"$out/dmq-bench.stderr"; then
		row DMQ "$out/dmq.json"
	else
		echo "delay-compare: dmq bench delay failed (exit $?), see $out/dmq-bench.stderr" >&2
		rows+=("| DMQ | failed | | | | | |")
	fi
	stop "$dmq_pid"
	cat "$out/dmq.json" >&2 || true
fi

for fs in ${fsyncs//,/ }; do
	for poll in ${polls//,/ }; do
		port=$(free_port)
		dir="$tmp/redis-$fs-$poll"
		mkdir -p "$dir"
		# appendfsync always: each write is fsynced to the AOF before Redis answers, like DMQ's
		# fsync before ack. RDB snapshots are off so only the AOF persists.
		echo "delay-compare: redis-server on 127.0.0.1:$port, appendfsync $fs, data $dir" >&2
		redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes --appendfsync "$fs" \
			--save "" --daemonize no --logfile "$out/redis-$fs-$poll.log" &
		redis_pid=$!
		pids+=("$redis_pid")
		wait_port "$port"
		for _ in $(seq 100); do
			[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
			sleep 0.1
		done
		res="$out/redis-$fs-$poll.json"
		echo "delay-compare: redisdelay --count $count --size $size --span $span --poll $poll" >&2
		if timeout "$limit" "$tmp/redisdelay" --addr "127.0.0.1:$port" --count "$count" --size "$size" --span "$span" \
			--poll "$poll" --json >"$res" 2>"$out/redis-$fs-$poll.stderr"; then
			row "Redis ZSET, appendfsync $fs, poll $poll" "$res"
		else
			echo "delay-compare: redisdelay failed (exit $?), see $out/redis-$fs-$poll.stderr" >&2
			rows+=("| Redis ZSET, appendfsync $fs, poll $poll | failed | | | | | |")
		fi
		stop "$redis_pid"
		cat "$res" >&2 || true
	done
done

{
	echo "Delayed messages: $count × $size B due uniformly over the next $span — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -srm); $(redis-server --version | grep -o 'v=[^ ]*' | sed 's/v=/Redis /'); $(go version | cut -d' ' -f3)"
	echo
	echo "| system | schedule msgs/s | lateness p50 ms | lateness p99 ms | lateness max ms | early | peak RSS MB |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${rows[@]}"
} | tee "$out/table.md"

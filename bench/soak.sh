#!/usr/bin/env bash
# Soak test: starts a dmq server (fsync on, fresh data directory, free loopback ports), runs
# bench/soak against it for --duration, prints the per-minute table, then stops the server.
# Outside CI.
#
#   bench/soak.sh [--duration 30m] [--out /tmp/soak] [-- extra bench/soak flags]
set -euo pipefail

duration=30m
out=/tmp/soak
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) duration=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--) shift; break ;;
	-h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak: unknown argument $1" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
mkdir -p "$out"
go build -o "$out/dmq" ./cmd/dmq
go build -o "$out/soak" ./bench/soak
. bench/lib.sh # the script runs from the repository root
grpc=$(free_port)
http=$(free_port)
rm -rf "$out/data"
"$out/dmq" server --data "$out/data" --listen "127.0.0.1:$grpc" --http "127.0.0.1:$http" --cluster-listen "127.0.0.1:$(free_port)" >"$out/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
wait_ready "$http"
"$out/soak" --server "127.0.0.1:$grpc" --http "127.0.0.1:$http" --pid "$pid" --duration "$duration" "$@" | tee "$out/soak.md"

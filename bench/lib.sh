# Shell helpers shared by the bench/ scripts; source it, do not run it.

# free_port prints a loopback TCP port nothing listens on.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready HTTP_PORT waits up to 10 s for a dmq server's /readyz on loopback.
wait_ready() {
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "dmq server on HTTP port $1 is not ready after 10 s" >&2
	return 1
}

# stop_server stops the dmq server whose PID the script put in server_pid, if any, and waits
# for it; scripts call it between runs and set `trap stop_server EXIT`.
server_pid=
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=
	fi
}

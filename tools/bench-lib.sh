# shellcheck shell=bash
# What tools/bench.sh and tools/bench-tools.sh share: the binaries, a
# scratch directory cleaned up at exit, a private redis-server and a
# daemon started and waited for.  Source it after setting BENCH (the
# script's name, for messages), BUILD, keep and tcp.

# bench_setup PREFIX: svd, ctl, svbench, nice_cmd, dir; the exit trap.
# NICE=-10 runs redis, the daemon/peer and svbench at that nice level (on a
# machine shared with other work: the same for both sides of a comparison)
bench_setup() {
	BUILD=$(cd "${BUILD:?no build dir: set BUILD}" && pwd)
	svd=$BUILD/src/streamvisord ctl=$BUILD/src/streamvisorctl svbench=$BUILD/tools/svbench
	for b in "$svd" "$ctl" "$svbench"; do [ -x "$b" ] || { echo "$BENCH: $b missing" >&2; exit 2; }; done
	nice_cmd=()
	[ -n "${NICE:-}" ] && nice_cmd=(nice -n "$NICE")
	dir=$(mktemp -d "/tmp/$1.XXXXXX")
	redis_pid= svd_pid= perf_pid=
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	set +e
	[ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" 2>/dev/null
	if [ -n "$svd_pid" ] && kill -0 "$svd_pid" 2>/dev/null; then
		kill -TERM "$svd_pid"
		for _ in $(seq 100); do kill -0 "$svd_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$svd_pid" 2>/dev/null
	fi
	[ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
	if [ "$keep" = 1 ]; then echo "$BENCH: kept $dir" >&2; else rm -rf "$dir"; fi
}

# bench_start_redis [EXTRA ARGS]: on TCP when tcp=1, else a unix socket;
# sets redis_url, rcli, redis_pid.
bench_start_redis() {
	if [ "$tcp" = 1 ]; then
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		"${nice_cmd[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
			--logfile "$dir/redis.log" "$@" &
		redis_url="redis://127.0.0.1:$port/0" rcli=(redis-cli -p "$port")
	else
		"${nice_cmd[@]}" redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save '' \
			--appendonly no --dir "$dir" --logfile "$dir/redis.log" "$@" &
		redis_url="unix://$dir/redis.sock" rcli=(redis-cli -s "$dir/redis.sock")
	fi
	redis_pid=$!
	for _ in $(seq 100); do "${rcli[@]}" ping >/dev/null 2>&1 && break; sleep 0.05; done
	"${rcli[@]}" ping >/dev/null || { echo "$BENCH: redis-server did not start" >&2; exit 1; }
}

# bench_start_daemon: streamvisord on $dir/sv.conf, waited for until its
# control socket answers; sets svd_pid.
bench_start_daemon() {
	"${nice_cmd[@]}" "$svd" -c "$dir/sv.conf" 2>"$dir/streamvisord.log" &
	svd_pid=$!
	local ok=0
	for _ in $(seq 200); do
		if "$ctl" -s "$dir/ctl.sock" -t 2 status >/dev/null 2>&1; then ok=1; break; fi
		kill -0 "$svd_pid" 2>/dev/null || break
		sleep 0.05
	done
	if [ "$ok" != 1 ]; then
		echo "$BENCH: streamvisord did not become ready; its log:" >&2
		cat "$dir/streamvisord.log" >&2
		exit 1
	fi
}

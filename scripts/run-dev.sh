#!/bin/sh
# Build streamvisor and run it in the foreground with etc/streamvisor.conf:
# SQLite and the control socket under ./var, Redis at 127.0.0.1:6379 (a
# private redis-server is started there when nothing answers).
set -e
cd "$(dirname "$0")/.."
./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build
meson compile -C build
mkdir -p var
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
	echo "starting a private redis-server on 127.0.0.1:6379 (data in ./var)"
	redis-server --bind 127.0.0.1 --port 6379 --dir "$PWD/var" --appendonly yes \
		--daemonize yes --pidfile "$PWD/var/redis.pid" --logfile "$PWD/var/redis.log"
	for i in 1 2 3 4 5 6 7 8 9 10; do
		redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
		sleep 0.2
	done
fi
echo "streamvisord running; in another shell: build/src/streamvisorctl -c etc/streamvisor.conf status"
exec build/src/streamvisord -c etc/streamvisor.conf

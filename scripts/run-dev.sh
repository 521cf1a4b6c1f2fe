#!/bin/sh
# Build streamvisor and run it in the foreground with etc/streamvisor.conf:
# SQLite and the control socket under ./var.
#
# Redis: the URL in $SV_REDIS_URL, else $REDIS_URL, else
# redis://127.0.0.1:6379/0 (the one etc/streamvisor.conf names), in the
# daemon's syntax: redis://[user[:password]@]host[:port][/db] or
# unix:///path.sock[?db=N].  When nothing answers there and the address is
# local without credentials (127.0.0.1, localhost or ::1 and a port, or a
# unix socket), a private redis-server is started there (data in ./var);
# otherwise the script stops.  The daemon runs on var/streamvisor.dev.conf,
# a copy of etc/streamvisor.conf with that URL and the web console's token
# file var/http.token (made once; its relative paths ../var/... name the
# same files from var/).
#
#   SV_REDIS_URL=redis://127.0.0.1:6390/0 ./scripts/run-dev.sh
#   SV_REDIS_URL=unix://$PWD/var/redis.sock ./scripts/run-dev.sh
set -e
cd "$(dirname "$0")/.."

DEFAULT_URL=redis://127.0.0.1:6379/0
url=${SV_REDIS_URL:-${REDIS_URL:-$DEFAULT_URL}}

# Split the URL into what redis-cli and redis-server need.
creds=
sock=
host=
port=
case $url in
[Uu][Nn][Ii][Xx]://*)
	rest=${url#*://}
	case $rest in *@/*) creds=${rest%%@/*}; rest=/${rest#*@/} ;; esac
	sock=${rest%%\?*}
	;;
[Rr][Ee][Dd][Ii][Ss]://*)
	rest=${url#*://}
	case $rest in *@*) creds=${rest%@*}; rest=${rest##*@} ;; esac
	hostport=${rest%%/*}
	case $hostport in
	\[*\]*) host=${hostport%%]*}; host=${host#\[}; port=${hostport#*]}; port=${port#:} ;;
	*:*) host=${hostport%:*}; port=${hostport##*:} ;;
	*) host=$hostport ;;
	esac
	port=${port:-6379}
	;;
*)
	echo "run-dev.sh: unsupported Redis URL scheme (want redis:// or unix://)" >&2
	exit 1
	;;
esac

# The URL with the password hidden, for messages.
shown=$url
[ -z "$creds" ] || shown=$(printf '%s' "$url" | sed 's#//[^@]*@#//***@#')

# Whether a server answers there: any reply counts (NOAUTH too), so no
# credentials are needed and none go on a command line.
ping() {
	if [ -n "$sock" ]; then
		out=$(redis-cli -s "$sock" ping 2>/dev/null) || true
	else
		out=$(redis-cli -h "$host" -p "$port" ping 2>/dev/null) || true
	fi
	[ -n "$out" ]
}

./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build
meson compile -C build
mkdir -p var

if ! ping; then
	local_addr=
	case $host in 127.0.0.1 | localhost | ::1) local_addr=1 ;; esac
	[ -z "$sock" ] || local_addr=1
	if [ -z "$local_addr" ] || [ -n "$creds" ]; then
		echo "run-dev.sh: no Redis answers at $shown (a private redis-server is only started" >&2
		echo "  for a local address without credentials); start it or set SV_REDIS_URL" >&2
		exit 1
	fi
	if [ -n "$sock" ]; then
		echo "starting a private redis-server on $sock (data in ./var)"
		set -- --port 0 --unixsocket "$sock" --unixsocketperm 700
	else
		echo "starting a private redis-server on $host:$port (data in ./var)"
		set -- --bind "$host" --port "$port"
	fi
	redis-server "$@" --dir "$PWD/var" --appendonly yes \
		--daemonize yes --pidfile "$PWD/var/redis.pid" --logfile "$PWD/var/redis.log"
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		ping && break
		sleep 0.2
	done
fi

# The web console's token: made once, readable by this user only.
if [ ! -s var/http.token ]; then
	(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >var/http.token && echo >>var/http.token)
fi

# etc/streamvisor.conf with the URL and the token file: a libconfig
# string, so escape backslashes and double quotes.
conf=var/streamvisor.dev.conf
SV_URL=$url awk '
	BEGIN {
		u = ENVIRON["SV_URL"]; e = ""
		for (i = 1; i <= length(u); i++) {
			c = substr(u, i, 1)
			e = e ((c == "\\" || c == "\"") ? "\\" c : c)
		}
	}
	/^[ \t]*url[ \t]*=/ { print substr($0, 1, index($0, "=")) " \"" e "\";"; next }
	/^[ \t]*token_file[ \t]*=/ { print substr($0, 1, index($0, "=")) " \"http.token\";"; next }
	{ print }' etc/streamvisor.conf >"$conf.tmp"
chmod 600 "$conf.tmp"
mv "$conf.tmp" "$conf"
[ "$url" = "$DEFAULT_URL" ] || echo "Redis at $shown: running on $conf (etc/streamvisor.conf with that URL)"
echo "streamvisord running; in another shell: build/src/streamvisorctl -c etc/streamvisor.conf status"
echo "web console: http://127.0.0.1:8470/ (log in with the token in var/http.token)"
exec build/src/streamvisord -c "$conf"

#!/usr/bin/env bash
# web_tls (issue 15): http.tls_cert and http.tls_key serve HTTPS (GnuTLS
# in the web child):
#   - a self-signed certificate for 127.0.0.1: GET /api/v1/status over
#     https answers 200, plain http on the same port does not;
#   - the login cookie carries Secure as well as HttpOnly and
#     SameSite=Strict, and an action with it works;
#   - a reload with a renewed certificate under the same file names
#     restarts the web child, which then serves the new certificate; a
#     reload moving http.listen moves the console;
#   - -t refuses a listener off loopback without TLS.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/web/common.sh"

command -v openssl >/dev/null || skip "no openssl to make a certificate"
command -v curl >/dev/null || skip "no curl"

# cert NAME: a self-signed certificate for 127.0.0.1 with subject CN=NAME.
cert() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
		-addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$TMPD/key.pem" -out "$TMPD/cert.pem" >/dev/null 2>&1 ||
		fail "openssl could not make a certificate"
	chmod 600 "$TMPD/key.pem"
}
cert sv-first

start_redis
web_config persist_count=1 tools_count=0 log_level=info
sed -i "s|^http = { |http = { tls_cert = \"$TMPD/cert.pem\"; tls_key = \"$TMPD/key.pem\"; |" "$CONF"
grep -q tls_cert "$CONF" || fail "could not add tls_cert: $(grep '^http' "$CONF")"
require_http
start_daemon
wait_for 30 'all_running 1' || fail "worker not RUNNING: $(worker_table 2>&1)"

https() { curl -sS --max-time 10 --cacert "$TMPD/cert.pem" "$@"; }

check "HTTPS answers, plain HTTP does not"
wait_for 20 'https -o /dev/null "https://127.0.0.1:$PORT/api/v1/status"' ||
	fail "no HTTPS answer on $PORT: $(https "https://127.0.0.1:$PORT/api/v1/status" 2>&1 | head -c 300)"
code=$(https -o "$TMPD/status.json" -w '%{http_code}' "https://127.0.0.1:$PORT/api/v1/status")
[ "$code" = 200 ] || fail "GET /api/v1/status over https: $code"
pyjson 'd["workers"][0]["name"]' <"$TMPD/status.json" >/dev/null || fail "status is not the state JSON"
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/v1/status" || true)
[ "$code" != 200 ] || fail "plain http answered 200 on the TLS port"
# (OpenSSL's own security level refuses TLS 1.0/1.1 too: ask at level 0.)
for v in tls1 tls1_1; do
	if openssl s_client -"$v" -cipher 'DEFAULT:@SECLEVEL=0' -connect "127.0.0.1:$PORT" </dev/null >"$TMPD/old.tls" 2>&1 &&
		grep -Eq "^New, TLSv1(\.1)?, " "$TMPD/old.tls"; then
		fail "the server accepted $v: $(grep -m1 '^New' "$TMPD/old.tls")"
	fi
done
for v in tls1_2 tls1_3; do
	openssl s_client -"$v" -connect "127.0.0.1:$PORT" </dev/null >"$TMPD/new.tls" 2>&1 ||
		fail "no $v: $(tail -3 "$TMPD/new.tls")"
done
ok "https 200 (certificate checked against its own CA), plain http $code, TLS 1.0/1.1 refused"

check "the session cookie is Secure, HttpOnly, SameSite=Strict; an action with it works"
printf '{"token": "%s"}' "$TOKEN" >"$TMPD/login.json"
chmod 600 "$TMPD/login.json"
code=$(https -o /dev/null -D "$TMPD/login.h" -w '%{http_code}' -H 'Content-Type: application/json' \
	-H "Origin: https://127.0.0.1:$PORT" --data-binary @"$TMPD/login.json" \
	"https://127.0.0.1:$PORT/api/v1/login")
rm -f "$TMPD/login.json"
[ "$code" = 204 ] || fail "login over https: $code"
cookie=$(grep -i '^set-cookie:' "$TMPD/login.h" | tr -d '\r')
for attr in Secure HttpOnly SameSite=Strict; do
	grep -qi "; *$attr" <<<"$cookie" || fail "cookie without $attr: ${cookie%%=*}=..."
done
session=$(sed -n 's/^[Ss]et-[Cc]ookie: *\(sv_session=[0-9a-f]*\).*/\1/p' <<<"$cookie")
[ -n "$session" ] || fail "no sv_session cookie"
old=$(ctl --json status | pyjson '[w["pid"] for w in d["workers"]][0]')
code=$(https -o "$TMPD/ctl.json" -w '%{http_code}' -H 'Content-Type: application/json' -H "Cookie: $session" \
	-H "Origin: https://127.0.0.1:$PORT" -d '{"command":"restart","args":["persist"]}' \
	"https://127.0.0.1:$PORT/api/v1/ctl")
[ "$code" = 200 ] || fail "restart with the cookie over https: $code $(head -c 300 "$TMPD/ctl.json")"
new=$(ctl --json status | pyjson '[w["pid"] for w in d["workers"]][0]')
[ "$new" != "$old" ] || fail "the worker pid did not change ($old)"
ok "cookie Secure; HttpOnly; SameSite=Strict; restart $old -> $new"

check "a reload with a renewed certificate under the same names restarts the web child"
web_old=$(web_child_pid)
subject() {
	openssl s_client -connect "127.0.0.1:$PORT" -servername 127.0.0.1 </dev/null 2>/dev/null |
		openssl x509 -noout -subject 2>/dev/null
}
grep -q sv-first <<<"$(subject)" || fail "served certificate: $(subject)"
cert sv-renewed
ctl reload >/dev/null || fail "reload failed"
wait_for 20 'grep -q sv-renewed <<<"$(subject)"' || fail "still serving: $(subject)"
web_new=$(web_child_pid)
[ "$web_new" != "$web_old" ] || fail "the web child was not restarted ($web_old)"
[ "$(ctl --json status | pyjson '[w["pid"] for w in d["workers"]][0]')" = "$new" ] ||
	fail "the reload restarted the worker"
ok "web child $web_old -> $web_new serves CN=sv-renewed; the worker kept pid $new"

check "a reload moving http.listen to another port: the new port serves, the old one is closed"
PORT2=$(free_port)
sed -i "s|listen = \"127.0.0.1:$PORT\"|listen = \"127.0.0.1:$PORT2\"|" "$CONF"
ctl reload >/dev/null || fail "reload failed"
wait_for 20 'https -o /dev/null "https://127.0.0.1:$PORT2/api/v1/status"' || fail "nothing on the new port $PORT2"
code=$(https -o /dev/null -w '%{http_code}' -H "Host: 127.0.0.1:$PORT2" "https://127.0.0.1:$PORT2/api/v1/status")
[ "$code" = 200 ] || fail "new port: $code"
wait_for 10 '! curl -sk --max-time 2 -o /dev/null "https://127.0.0.1:$PORT/api/v1/status"' || fail "the old port $PORT still answers"
sed -i "s|listen = \"127.0.0.1:$PORT2\"|listen = \"127.0.0.1:$PORT\"|" "$CONF"
ok "port $PORT -> $PORT2 by reload: 200 there, nothing on $PORT"

check "-t: a listener off loopback needs TLS"
sed "s|listen = \"127.0.0.1:$PORT\"|listen = \"0.0.0.0:$PORT\"|; s|tls_cert = \"[^\"]*\"; tls_key = \"[^\"]*\"; ||" \
	"$CONF" >"$TMPD/offlo.conf"
rc=0
out=$("$STREAMVISORD" -t -c "$TMPD/offlo.conf" 2>&1) || rc=$?
[ "$rc" = 78 ] || fail "-t of an off-loopback listener without TLS: exit $rc: $out"
grep -q "is not a loopback address: set http.tls_cert" <<<"$out" || fail "-t said: $out"
ok "exit 78: $(grep -m1 'not a loopback' <<<"$out" | sed 's/^[^ ]* //')"

stop_daemon
[ "$DAEMON_RC" = 0 ] || fail "daemon exit $DAEMON_RC"
grep -qF -- "$TOKEN" "$DLOG" && fail "the token is in the daemon log"
pass

#!/usr/bin/env bash
# A fresh `meson setup --prefix=/usr --sysconfdir=/etc -Dtests=false` build
# installed with --destdir: binaries, man pages, the sample config and the
# systemd unit land where a Debian package expects them, and the unit is
# complete (Type=notify, ExecReload, RestartPreventExitStatus=78,
# KillMode=mixed, WatchdogSec, no @...@ left).  Compiles the project: slow.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MESON=$(command -v meson) || fail "meson not found"
B=$TMPD/build
STAGE=$TMPD/stage

check "meson setup (prefix /usr, sysconfdir /etc, no tests)"
"$MESON" setup "$B" "$SV_SRC_DIR" --prefix=/usr --sysconfdir=/etc -Dtests=false >"$TMPD/setup.log" 2>&1 ||
	{ tail -n 30 "$TMPD/setup.log"; fail "meson setup failed"; }
ok "configured"

check "compile (ninja -j2) and install into a staging dir"
nice -n 5 ninja -C "$B" -j2 >"$TMPD/build.log" 2>&1 || { tail -n 40 "$TMPD/build.log"; fail "build failed"; }
"$MESON" install -C "$B" --no-rebuild --destdir "$STAGE" >"$TMPD/install.log" 2>&1 ||
	{ tail -n 30 "$TMPD/install.log"; fail "meson install failed"; }
(cd "$STAGE" && find . -type f -o -type l | sort | sed 's/^/#   /')
ok "installed"

check "files in place"
for f in usr/sbin/streamvisord usr/bin/streamvisorctl usr/share/man/man8/streamvisord.8 \
	usr/share/man/man1/streamvisorctl.1 usr/share/man/man5/streamvisor.conf.5 \
	usr/share/man/man7/streamvisor-events.7 etc/streamvisor/streamvisor.conf; do
	[ -f "$STAGE/$f" ] || fail "missing $f"
done
[ -x "$STAGE/usr/sbin/streamvisord" ] && [ -x "$STAGE/usr/bin/streamvisorctl" ] || fail "binaries not executable"
cmp -s "$STAGE/etc/streamvisor/streamvisor.conf" "$SV_SRC_DIR/etc/streamvisor.conf.sample" ||
	fail "etc/streamvisor/streamvisor.conf is not the sample (etc/streamvisor.conf.sample)"
UNIT=
for d in usr/lib/systemd/system lib/systemd/system; do
	if [ -f "$STAGE/$d/streamvisord.service" ]; then
		[ -z "$UNIT" ] || fail "unit installed twice (/$UNIT and /$d)"
		UNIT=$d/streamvisord.service
	fi
done
[ -n "$UNIT" ] || fail "streamvisord.service not installed under usr/lib/systemd/system or lib/systemd/system"
info "unit installed as /$UNIT (default systemdunitdir = PREFIX/lib/systemd/system)"
ok "binaries, 4 man pages, sample config, unit"

check "the installed binaries run and default to /etc/streamvisor/streamvisor.conf"
"$STAGE/usr/sbin/streamvisord" -V >"$TMPD/v.out" 2>&1 || fail "streamvisord -V exit $?: $(cat "$TMPD/v.out")"
info "$(head -n1 "$TMPD/v.out")"
"$STAGE/usr/bin/streamvisorctl" -h >/dev/null 2>&1 || true
grep -aq '/etc/streamvisor/streamvisor.conf' "$STAGE/usr/sbin/streamvisord" ||
	fail "streamvisord does not embed the default config path /etc/streamvisor/streamvisor.conf"
rc=0
"$STAGE/usr/sbin/streamvisord" -t -c "$STAGE/etc/streamvisor/streamvisor.conf" >"$TMPD/t.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "the installed sample config does not validate (exit $rc): $(cat "$TMPD/t.out")"
ok "streamvisord -V; the sample config validates"

check "the unit file"
U=$STAGE/$UNIT
sed 's/^/#   /' "$U"
! grep -n '@[A-Za-z_]*@' "$U" || fail "unexpanded @...@ placeholders in the unit"
key() { grep -E "^$1=" "$U" | tail -n 1 | cut -d= -f2-; }
[ "$(key Type)" = notify ] || fail "Type='$(key Type)', want notify"
er=$(key ExecReload)
[[ $er == *streamvisorctl* ]] || fail "ExecReload='$er' does not use streamvisorctl"
[[ $er == /usr/bin/streamvisorctl\ * ]] || fail "ExecReload='$er' does not use the installed /usr/bin/streamvisorctl"
[[ $er == *reload* ]] || fail "ExecReload='$er' does not run reload"
es=$(key ExecStart)
[[ $es == /usr/sbin/streamvisord* ]] || fail "ExecStart='$es' is not /usr/sbin/streamvisord"
[[ $es == *" -d"* ]] && fail "ExecStart daemonizes (-d) under Type=notify: '$es'"
grep -qE '^RestartPreventExitStatus=(.* )?78( |$)' "$U" || fail "no RestartPreventExitStatus=78"
[ "$(key KillMode)" = mixed ] || fail "KillMode='$(key KillMode)', want mixed"
wd=$(key WatchdogSec)
[ -n "$wd" ] && [ "$wd" != 0 ] || fail "WatchdogSec missing or 0"
[[ $es == *"/etc/streamvisor/streamvisor.conf"* ]] || info "ExecStart relies on the compiled-in config path: '$es'"
if command -v systemd-analyze >/dev/null 2>&1; then
	out=$(SYSTEMD_LOG_LEVEL=err systemd-analyze verify --root="$STAGE" "$U" 2>&1) || info "systemd-analyze verify (informational): $out"
else
	info "systemd-analyze not available: unit syntax not verified by systemd"
fi
ok "Type=notify, ExecReload=$er, RestartPreventExitStatus=78, KillMode=mixed, WatchdogSec=$wd"

check "-Dsystemdunitdir=/lib/systemd/system moves the unit (Debian's path)"
"$MESON" configure "$B" -Dsystemdunitdir=/lib/systemd/system >"$TMPD/conf2.log" 2>&1 || fail "meson configure failed: $(tail -n 5 "$TMPD/conf2.log")"
nice -n 5 ninja -C "$B" -j2 >>"$TMPD/build.log" 2>&1 || { tail -n 20 "$TMPD/build.log"; fail "rebuild failed"; }
"$MESON" install -C "$B" --no-rebuild --destdir "$TMPD/stage2" >"$TMPD/install2.log" 2>&1 || fail "second install failed"
[ -f "$TMPD/stage2/lib/systemd/system/streamvisord.service" ] || fail "unit not in /lib/systemd/system with -Dsystemdunitdir"
[ ! -e "$TMPD/stage2/usr/lib/systemd/system/streamvisord.service" ] || fail "unit also in /usr/lib/systemd/system"
ok "unit at /lib/systemd/system/streamvisord.service"

pass

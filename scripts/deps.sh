#!/bin/sh
# Install the Debian 12 packages streamvisor needs to build, run and test
# (chromium, chromium-driver and python3-selenium only for the console test).
# Runs apt-get only when something is missing (apt-get update once).
set -e
PKGS="meson ninja-build pkg-config gcc clang libhiredis-dev libconfig-dev libsqlite3-dev
      libjansson-dev libcmocka-dev redis-server redis-tools sqlite3 python3 procps
      util-linux mandoc valgrind libmicrohttpd-dev libgnutls28-dev
      chromium chromium-driver python3-selenium"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "installing:$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

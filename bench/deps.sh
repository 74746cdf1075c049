#!/bin/sh
# Installs what the benchmarks need beyond the build (Debian packages): the
# peers (Pushpin; nginx with the nchan module), gnuplot for the charts and perf
# for profiles. Idempotent: only missing packages are installed, and a dpkg lock
# held by another apt run is waited for instead of failing.
set -eu
pkgs="make gcc pkg-config libevent-dev liblua5.3-dev libhiredis-dev libnats-dev libssl-dev libjansson-dev python3 \
      pushpin nginx-light libnginx-mod-nchan gnuplot-nox linux-perf procps redis-server nats-server"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
# gnuplot (the X11 variant) does as well as gnuplot-nox.
case "$missing" in *gnuplot-nox*) command -v gnuplot >/dev/null && missing=$(echo "$missing" | sed 's/ gnuplot-nox//') ;; esac
[ -z "$missing" ] && exit 0
echo "bench/deps.sh: installing$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq || true
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing

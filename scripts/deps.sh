#!/bin/sh
# Installs the Debian packages fooking needs to build, test or run the demo.
# Idempotent: only missing packages are installed.
# Usage: scripts/deps.sh build|test|demo|demo-bus|demo-nats (the demo with BUS=redis, BUS=nats)
set -eu
what=${1:-build}
build="make gcc pkg-config libevent-dev liblua5.3-dev libhiredis-dev libnats-dev libssl-dev libjansson-dev"
test="$build prometheus systemd logrotate man-db groff-base dpkg-dev libcmocka-dev python3 python3-pytest python3-websockets python3-redis php-fpm php-cli php-redis golang-go golang-github-gomodule-redigo-dev golang-github-nats-io-go-nats-dev redis-server nats-server openssl clang libclang-rt-14-dev chromium"
# The chat demo needs no Redis; the Go backend builds the fooking package, whose
# Redis and NATS transports need redigo and nats.go. redis-server only for BUS=redis.
demo="$build php-fpm php-cli golang-go golang-github-gomodule-redigo-dev golang-github-nats-io-go-nats-dev"
case $what in
  build) pkgs=$build ;;
  test) pkgs=$test ;;
  demo) pkgs=$demo ;;
  demo-bus) pkgs="$demo redis-server" ;;
  demo-nats) pkgs="$demo nats-server" ;;
  *) echo "usage: $0 build|test|demo|demo-bus|demo-nats" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
# The browser test drives chromium with playwright-core from npm: Node.js and
# npm come from Debian unless the machine already has them.
if [ "$what" = test ] && ! command -v npm >/dev/null 2>&1; then
  command -v node >/dev/null 2>&1 || missing="$missing nodejs"
  missing="$missing npm"
fi
[ -z "$missing" ] && exit 0
echo "installing missing packages:$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends $missing

#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks run for real: a second PostgreSQL major
# version (15) as a source, Redis as a work-queue backend, pgcopydb as the copy peer to beat,
# docker-compose to check the packaged compose file (`config` only: no Docker engine needed).
# Already-installed packages cost one dpkg query; a missing one without root/apt is an error,
# never a skip, because a test that cannot find its server must fail loudly.
set -euo pipefail
pkgs=(postgresql-15 redis-server pgcopydb docker-compose)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "zdtp: need ${missing[*]} and this system has no apt-get" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "zdtp: need ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2; exit 1; }
echo "zdtp: installing ${missing[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packaged clusters must not hold ports or run beside the test servers: tests start their own.
for unit in postgresql redis-server; do
  if command -v service >/dev/null; then service "$unit" stop >/dev/null 2>&1 || true; fi
done

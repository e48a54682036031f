#!/usr/bin/env bash
# Install the real servers the tests and benchmarks start on 127.0.0.1: valkey-server (8.0
# from Debian bookworm-backports) for the near-cache tests, redis-server and memcached (Debian
# bookworm) for the peers harness. Idempotent: does nothing when all three are on PATH; adds
# the backports suite once, on the same mirror and keyring as the machine's bookworm source.
set -euo pipefail
if command -v valkey-server && command -v redis-server && command -v memcached; then
    exit 0
fi >/dev/null
list=/etc/apt/sources.list.d/bookworm-backports.sources
if [ ! -e "$list" ]; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    if [ -z "$mirror" ]; then
        mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
    fi
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" > "$list"
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports valkey-server >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server memcached >/dev/null
# The packages start system-wide servers (6379, 11211); the tests start their own.
for unit in valkey-server redis-server memcached; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || service "$unit" stop >/dev/null 2>&1 || true
done
valkey-server --version
redis-server --version
memcached -V

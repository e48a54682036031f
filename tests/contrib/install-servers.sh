#!/usr/bin/env bash
# Install valkey-server (8.0 from Debian bookworm-backports) for the near-cache tests.
# Idempotent: does nothing when valkey-server is on PATH; adds the backports suite once,
# on the same mirror and keyring as the machine's bookworm source.
set -euo pipefail
command -v valkey-server >/dev/null && exit 0
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
# The package starts a system-wide server on 6379; the tests start their own.
systemctl disable --now valkey-server >/dev/null 2>&1 || service valkey-server stop >/dev/null 2>&1 || true
valkey-server --version

#!/usr/bin/env bash
# Installs the servers the tests talk to, from Debian's packages: redis-server. The
# tests start their own instances on free loopback ports; the packaged service is
# stopped so that nothing listens that the tests did not start.
set -euo pipefail

install() {
    if apt-get install -y -q --no-install-recommends "$@"; then return 0; fi
    apt-get update -q && apt-get install -y -q --no-install-recommends "$@"
}

if ! command -v redis-server >/dev/null; then
    echo "crac: installing redis-server (Debian package) for the client tests"
    install redis-server >/dev/null
    service redis-server stop >/dev/null 2>&1 || true
fi
redis-server --version

#!/usr/bin/env bash
# Installs the servers the tests talk to, from Debian's packages: redis-server and
# PostgreSQL (tests/common/postgres_server.rs runs a cluster of its own as `postgres`). The
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
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "crac: installing postgresql (Debian package) for the pool tests"
    install postgresql >/dev/null
    service postgresql stop >/dev/null 2>&1 || true
fi
redis-server --version
ls -d /usr/lib/postgresql/*/bin/initdb

#!/usr/bin/env bash
# Installs what the container tests (crac-cli/tests/e2e/containers.rs) and
# scripts/container.sh need, from Debian's packages: podman, runc (podman's default
# runtime crun fails on hosts with cgroup v1 controllers: "cgroups in hybrid mode not
# supported"; the tests use runc) and catatonit (podman builds its pod infra image
# from it; `podman kube play` needs that image) and docker-registry (a registry on
# 127.0.0.1 that a baked image travels through). Quiet when all are there.
#
# Nothing is configured system-wide: the tests give podman their own containers.conf
# (runtime runc, ulimits within this host's hard limits).
set -euo pipefail

install() {
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y -q --no-install-recommends "$@" >/dev/null; then return 0; fi
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/libexec/podman/catatonit ]] || command -v catatonit >/dev/null || missing+=(catatonit)
command -v docker-registry >/dev/null || missing+=(docker-registry)
if ((${#missing[@]})); then
    [[ $EUID -eq 0 ]] || { echo "crac: installing ${missing[*]} needs root; run: sudo $0" >&2; exit 1; }
    echo "crac: installing ${missing[*]} (Debian packages) for the container tests" >&2
    install "${missing[@]}"
fi
podman --version

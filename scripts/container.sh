#!/usr/bin/env bash
# Builds the container images of examples/container/ locally, without a registry: a
# `FROM scratch` image holding binaries this machine already built and the shared
# libraries they load (no second Rust build, no base image to pull).
#
#   scripts/container.sh service [--profile debug|release] [--tag NAME] [--service FILE]
#       The runtime image of examples/axum_service.rs: the service, the `crac` command,
#       CRIU and `unshare` (util-linux), laid out as examples/container/Dockerfile lays
#       them out, with the same entrypoint. Builds the two Rust binaries first if
#       they are missing (cargo, on this machine). Default tag: crac-axum-service:latest.
#       --service FILE packages another build of the service (the tests use it to make
#       an image of "another build").
#   scripts/container.sh redis [--tag NAME]
#       A redis-server image from Debian's redis-server package (installed by
#       scripts/install-servers.sh), for examples/container/pod.yaml's redis container
#       where Docker Hub is unreachable. Default tag: redis:7-bookworm.
#
# Needs root, podman (scripts/install-containers.sh) and CRIU (scripts/install-criu.sh).
# CARGO_TARGET_DIR is honoured. Prints the image's name when done.
set -Eeuo pipefail

say() { printf 'crac: %s\n' "$*" >&2; }
die() {
    printf 'crac: error: %s\n' "$*" >&2
    exit 1
}
trap 'die "unexpected failure (line $LINENO: $BASH_COMMAND)"' ERR

repo=$(cd "$(dirname "$0")/.." && pwd)
command -v podman >/dev/null || die "podman not found: run scripts/install-containers.sh as root"

# Copies executable $1 to $root$2, and every shared library it loads (ldd) to the same
# path under $root, so the binary runs in an image that has nothing else.
add_binary() {
    local from=$1 to=$2 lib
    [[ -x $from ]] || die "$from is missing or not executable"
    install -D -m 0755 "$from" "$root$to"
    # Debug builds carry most of their size as debug info, which a container does not
    # need (the image records the packaged file's own SHA-256, so this is consistent).
    if [[ ${strip_debug:-yes} == yes ]] && command -v strip >/dev/null; then
        strip --strip-debug "$root$to"
    fi
    while read -r lib; do
        [[ -e $root$lib ]] && continue
        install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done < <(ldd "$from" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# `podman build` of $root with the Containerfile lines on stdin, tagged $1.
build_image() {
    local tag=$1
    {
        echo "FROM scratch"
        echo "COPY root/ /"
        cat
    } >"$work/Containerfile"
    local previous
    previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    podman build --quiet --tag "$tag" --file "$work/Containerfile" "$work" >/dev/null ||
        die "podman build of $tag failed"
    # The build it replaces would linger untagged: remove it (unless a container uses it).
    if [[ -n $previous && $previous != "$(podman image inspect --format '{{.Id}}' "$tag")" ]]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    say "built $tag ($(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec) uncompressed)"
    echo "$tag"
}

service_image() {
    local profile=debug tag=crac-axum-service:latest service=''
    while (($#)); do
        case $1 in
        --profile) profile=${2:?--profile needs debug or release}; shift 2 ;;
        --tag) tag=${2:?--tag needs a name}; shift 2 ;;
        --service) service=${2:?--service needs a file}; shift 2 ;;
        *) die "unknown option $1 (see the comment at the top of $0)" ;;
        esac
    done
    local cargo_profile=()
    case $profile in
    debug) ;;
    release) cargo_profile=(--release) ;;
    *) die "--profile $profile: use debug or release" ;;
    esac
    local bin=${CARGO_TARGET_DIR:-$repo/target}/$profile
    if [[ ! -x $bin/crac ]]; then
        say "building the crac command ($profile)"
        (cd "$repo" && cargo build --locked "${cargo_profile[@]}" -p crac-cli)
    fi
    if [[ -z $service && ! -x $bin/examples/axum_service ]]; then
        say "building examples/axum_service.rs ($profile)"
        (cd "$repo" && cargo build --locked "${cargo_profile[@]}" --features axum --example axum_service)
    fi
    local criu
    criu=$(command -v criu || true)
    [[ -n $criu ]] || criu=/usr/local/sbin/criu
    [[ -x $criu ]] || die "criu not found: run scripts/install-criu.sh as root"

    add_binary "$bin/crac" /usr/local/bin/crac
    add_binary "${service:-$bin/examples/axum_service}" /usr/local/bin/axum_service
    add_binary "$criu" /usr/local/sbin/criu
    # crac run and crac restore start their PID namespaces with util-linux's unshare.
    add_binary "$(command -v unshare)" /usr/bin/unshare
    # The image volume's mount point, CRIU's kdat cache directory (give it a tmpfs) and
    # a /tmp.
    install -d -m 0700 "$root/var/lib/crac" "$root/run/crac-criu"
    install -d -m 1777 "$root/tmp"

    build_image "$tag" <<'EOF'
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin
VOLUME /var/lib/crac
EXPOSE 3000
ENV ADDR=0.0.0.0:3000 PORT=3000
ENTRYPOINT ["crac", "run", "--image", "/var/lib/crac/axum", "--replace-invalid", "--env", "PORT", "--", "/usr/local/bin/axum_service"]
EOF
}

redis_image() {
    local tag=redis:7-bookworm
    while (($#)); do
        case $1 in
        --tag) tag=${2:?--tag needs a name}; shift 2 ;;
        *) die "unknown option $1 (see the comment at the top of $0)" ;;
        esac
    done
    local redis
    redis=$(command -v redis-server) || die "redis-server not found: run scripts/install-servers.sh as root"
    add_binary "$redis" /usr/local/bin/redis-server
    install -d -m 0755 "$root/data"
    install -d -m 1777 "$root/tmp"
    build_image "$tag" <<'EOF'
ENV PATH=/usr/local/bin:/usr/bin
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--save", "", "--appendonly", "no"]
EOF
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"

case ${1:-} in
service) shift; service_image "$@" ;;
redis) shift; redis_image "$@" ;;
*) die "usage: $0 service [--profile debug|release] [--tag NAME] [--service FILE] | $0 redis [--tag NAME]" ;;
esac

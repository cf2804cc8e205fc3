#!/usr/bin/env bash
# Make a working CRIU >= 4.1 available as `criu` (installed to /usr/local/sbin/criu).
#
# Idempotent and silent when there is nothing to do:
#   1. `criu` on PATH is >= 4.1 and `criu check` passes      -> exit 0, print nothing.
#   2. the distribution's packaged criu is >= 4.1               -> apt-get install it.
#   3. otherwise build the upstream tarball shipped in Debian's source package of a
#      newer release (sid, then trixie), fetched through a private apt directory.
#
# The CRIU built here keeps its kernel-feature probe (~30 ms, paid by every dump and
# restore) cached in $RUNDIR/criu.kdat. CRIU only trusts that cache on a tmpfs, and
# only root may write there (a planted cache would mislead CRIU), so every run of this
# script makes $RUNDIR a root-only tmpfs if it is not one yet (it is gone after a
# reboot until the next run; CRIU then probes the kernel again, correctly but slower).
#
# Why step 3: Debian 12 ships criu 3.17, which fails on current kernels
# ("vdso: Unexpected rt vDSO area bounds"), and trixie/sid binary packages need a
# newer glibc; the upstream source builds fine against Debian 12's libraries.
#
# Progress and errors go to stderr. Verbose apt/build output goes to
# $CACHE_DIR/install.log, whose path is printed on failure.
#
# Environment overrides:
#   CRAC_CRIU_CACHE      cache dir (default /var/cache/crac-criu-build); holds the
#                        downloaded source and build tree, so a rerun after the binary
#                        was removed rebuilds without downloading. Delete it to pick up
#                        a newer release.
#   CRAC_CRIU_SUITES     Debian suites to try for the source package (default "sid trixie").
#   CRAC_DEBIAN_MIRROR   Debian archive URI to use instead of the one found in apt's sources.
set -Eeuo pipefail

readonly MIN_VERSION=4.1
readonly TARGET=/usr/local/sbin/criu
readonly RUNDIR=/run/crac-criu
readonly CACHE_DIR=${CRAC_CRIU_CACHE:-/var/cache/crac-criu-build}
readonly SUITES=${CRAC_CRIU_SUITES:-sid trixie}
readonly KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
readonly LOG=$CACHE_DIR/install.log
# Build dependencies of `make criu` on Debian 12 (measured; see the CRIU field notes).
readonly BUILD_DEPS=(
    build-essential pkg-config
    libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler python3-protobuf
    libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev libnftables-dev
    libaio-dev uuid-dev
)

logging=false   # becomes true once $LOG is in use, so failures can point at it

say() { printf 'crac: %s\n' "$*" >&2; }

die() {
    printf 'crac: error: %s\n' "$*" >&2
    if $logging; then printf 'crac: full log: %s\n' "$LOG" >&2; fi
    exit 1
}

trap 'die "unexpected failure (line $LINENO: $BASH_COMMAND)"' ERR

# Run a command with its output appended to the log.
logged() {
    printf '\n+ [%(%T)T] %s\n' -1 "$*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

version_ge() { dpkg --compare-versions "$1" ge "$2"; }

# Print the version of the criu binary $1 ("Version: 4.2.1" line of --version).
criu_version() {
    "$1" --version 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

# Succeed if criu binary $1 is >= MIN_VERSION and `criu check` passes. `criu check`
# also logs "Can't setup RLIMIT_NOFILE" as an error on every run; that is harmless,
# so judge by the exit status and the "Looks good." verdict only.
criu_works() {
    local version output
    version=$(criu_version "$1") || return 1
    [[ -n $version ]] && version_ge "$version" "$MIN_VERSION" || return 1
    output=$("$1" check 2>&1) || return 1
    [[ $output == *"Looks good."* ]]
}

# Step 1: nothing to do? Must stay quiet and fast. A CRIU this script built earlier
# without the kdat cache directory is rebuilt.
quick_check() {
    local existing
    existing=$(command -v criu 2>/dev/null) && criu_works "$existing" || return 1
    [[ $existing != "$TARGET" ]] || grep -qa "$RUNDIR/criu.kdat" "$existing"
}

# The kdat cache directory: a tmpfs only root can write (on systemd hosts /run is one
# already; elsewhere a small one is mounted). Best effort: without it CRIU works,
# probing the kernel on every call. Fails (quietly) when there is no cache.
kdat_cache() {
    [[ $EUID -eq 0 ]] || return 0
    mkdir -p -m 0700 "$RUNDIR" 2>/dev/null || return 1
    chmod 0700 "$RUNDIR" 2>/dev/null || true
    [[ $(stat -f -c %T "$RUNDIR" 2>/dev/null) == tmpfs ]] && return 0
    mount -t tmpfs -o mode=0700,size=4m crac-criu-kdat "$RUNDIR" 2>/dev/null
}

# Install packages, refreshing apt's lists once if the first attempt fails (lists
# missing or stale on a fresh machine).
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if logged apt-get install -y -q --no-install-recommends "$@"; then return 0; fi
    logged apt-get update -q || die "apt-get update failed; check network access and /etc/apt sources"
    logged apt-get install -y -q --no-install-recommends "$@" ||
        die "apt-get install $* failed"
}

# The Debian archive URI already configured for this release (deb822 *.sources or the
# one-line sources.list format), so the script uses whatever mirror the machine uses.
debian_mirror() {
    local codename=$1 uri=''
    if [[ -n ${CRAC_DEBIAN_MIRROR:-} ]]; then
        printf '%s\n' "${CRAC_DEBIAN_MIRROR%/}"
        return
    fi
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # Paragraph mode: one stanza per record. Take the first http(s) URI of an
        # enabled stanza whose Suites list the release codename itself.
        uri=$(awk -v codename="$codename" '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^#/ || $i !~ /^[A-Za-z-]+:/) continue
                    key = tolower(substr($i, 1, index($i, ":") - 1))
                    val = substr($i, index($i, ":") + 1)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                if (enabled ~ /no/ || types !~ /(^|[ \t])deb(-src)?([ \t]|$)/) next
                n = split(suites, s, /[ \t]+/)
                for (j = 1; j <= n; j++) if (s[j] == codename) {
                    m = split(uris, u, /[ \t]+/)
                    for (k = 1; k <= m; k++) if (u[k] ~ /^https?:\/\//) { print u[k]; exit }
                }
            }' "$f")
        [[ -n $uri ]] && break
    done
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        # "deb [options] URI suite components..."
        uri=$(awk -v codename="$codename" '
            $1 == "deb" || $1 == "deb-src" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == codename && $i ~ /^https?:\/\//) { print $i; exit }
            }' /etc/apt/sources.list)
    fi
    [[ -n $uri ]] || return 1
    printf '%s\n' "${uri%/}"
}

# SHA-256 of file $2 as listed in the .dsc $1 (whose own download apt verified).
dsc_sha256() {
    awk -v name="$2" '
        /^Checksums-Sha256:/ { in_sums = 1; next }
        /^[^ ]/ { in_sums = 0 }
        in_sums && $3 == name { print $1; exit }' "$1"
}

# Print "<upstream version> <tarball>" for the newest verified criu >= MIN_VERSION
# tarball in the cache's src dir, or fail if there is none.
cached_tarball() {
    local dsc tarball upstream expected best='' best_tar=''
    for dsc in "$CACHE_DIR"/src/criu_*.dsc; do
        [[ -f $dsc ]] || continue
        upstream=$(awk '/^Version:/ { print $2; exit }' "$dsc")
        upstream=${upstream#*:}
        upstream=${upstream%-*}
        tarball=$CACHE_DIR/src/criu_$upstream.orig.tar.xz
        [[ -f $tarball ]] || continue
        version_ge "$upstream" "$MIN_VERSION" || continue
        expected=$(dsc_sha256 "$dsc" "${tarball##*/}")
        [[ -n $expected ]] || continue
        [[ $(sha256sum "$tarball" | cut -d' ' -f1) == "$expected" ]] || continue
        if [[ -z $best ]] || version_ge "$upstream" "$best"; then
            best=$upstream
            best_tar=$tarball
        fi
    done
    [[ -n $best ]] || return 1
    printf '%s %s\n' "$best" "$best_tar"
}

# Download criu's .dsc and upstream tarball from Debian's source package through a
# private apt directory: the system's sources, lists and caches are not touched.
# Trust: the suite's InRelease must be signed by a key in Debian's archive keyring
# (Signed-By), and apt checks the downloaded files against the signed Sources index.
fetch_source() {
    local os_id codename mirror suite apt_dir version
    # shellcheck source=/dev/null
    os_id=$(. /etc/os-release && printf '%s' "${ID:-}")
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    if [[ $os_id != debian && -z ${CRAC_DEBIAN_MIRROR:-} ]]; then
        die "no CRIU >= $MIN_VERSION package for this distribution ($os_id); install CRIU >= $MIN_VERSION yourself, or set CRAC_DEBIAN_MIRROR=<Debian archive URI> to build from Debian's source package"
    fi
    mirror=$(debian_mirror "$codename") ||
        die "no Debian archive entry for '$codename' found in /etc/apt/sources.list{,.d}; add one or set CRAC_DEBIAN_MIRROR=<Debian archive URI>"
    [[ -r $KEYRING ]] || apt_install debian-archive-keyring

    apt_dir=$CACHE_DIR/apt
    mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache" "$CACHE_DIR/src"
    : >"$apt_dir/sources.list"
    # apt downloads as the unprivileged _apt user; let it write the target directory
    # (otherwise apt warns and downloads as root).
    if getent passwd _apt >/dev/null; then chown _apt "$CACHE_DIR/src"; fi
    local apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o Acquire::Languages=none
    )

    for suite in $SUITES; do
        cat >"$apt_dir/sources.list.d/crac-criu-src.sources" <<EOF
Types: deb-src
URIs: $mirror
Suites: $suite
Components: main
Signed-By: $KEYRING
EOF
        if ! logged apt-get "${apt_opts[@]}" -q --error-on=any update; then
            say "could not read Debian $suite source index from $mirror (see log); trying next suite"
            continue
        fi
        version=$(apt-cache "${apt_opts[@]}" showsrc --only-source criu 2>>"$LOG" |
            awk '/^Version:/ { print $2 }' | sort -V | tail -n 1) || true
        if [[ -z $version ]] || ! version_ge "${version%-*}" "$MIN_VERSION"; then
            say "Debian $suite has no criu source >= $MIN_VERSION (found '${version:-none}'); trying next suite"
            continue
        fi
        # Only the .dsc (for the checksum) and the upstream tarball are needed; asking
        # for them alone also avoids the .debian.tar.xz, which may 404 on the mirror.
        if (cd "$CACHE_DIR/src" &&
            logged apt-get "${apt_opts[@]}" -q source --download-only --dsc-only "criu=$version" &&
            logged apt-get "${apt_opts[@]}" -q source --download-only --tar-only "criu=$version"); then
            return 0
        fi
        say "downloading criu $version source from Debian $suite failed (see log); trying next suite"
    done
    die "could not download a criu >= $MIN_VERSION source package from Debian ($SUITES) via $mirror. If apt reported NO_PUBKEY, update debian-archive-keyring (apt-get update && apt-get install debian-archive-keyring)."
}

build_from_source() {
    local version tarball src cached
    if ! cached=$(cached_tarball); then
        fetch_source
        cached=$(cached_tarball) ||
            die "downloaded criu source failed its checksum against the .dsc; remove $CACHE_DIR/src and retry"
    fi
    read -r version tarball <<<"$cached"
    # Extract once (via a temp dir, so an interrupted run leaves no half tree); the
    # tree is kept so a later rebuild is incremental.
    src=$CACHE_DIR/build/criu-$version
    if [[ -x $src/criu/criu ]]; then
        say "reinstalling CRIU $version from the cached build in $CACHE_DIR…"
    else
        say "building CRIU $version from Debian source (about a minute)…"
    fi

    apt_install "${BUILD_DEPS[@]}"

    if [[ ! -f $src/Makefile ]]; then
        rm -rf "$src" "$src.tmp"
        mkdir -p "$src.tmp"
        logged tar -xJf "$tarball" -C "$src.tmp" --strip-components=1 ||
            die "could not extract $tarball; remove $CACHE_DIR/src and retry"
        mv "$src.tmp" "$src"
    fi

    # RUNDIR is compiled into kerndat.o only: a cached tree built without it relinks.
    if ! grep -qa "$RUNDIR/criu.kdat" "$src/criu/kerndat.o" 2>/dev/null; then
        rm -f "$src/criu/kerndat.o"
    fi
    logged make -C "$src" -j"$(nproc)" criu RUNDIR="$RUNDIR" ||
        die "building CRIU $version failed (make criu in $src)"

    # Install via rename so a running criu is never overwritten in place.
    install -m 0755 "$src/criu/criu" "$TARGET.tmp"
    mv -f "$TARGET.tmp" "$TARGET"
}

# Final check of what `criu` on PATH now resolves to.
verify() {
    local how=$1 resolved output
    resolved=$(command -v criu 2>/dev/null) ||
        die "criu was installed ($how) but is not on PATH ($PATH); add /usr/local/sbin and /usr/sbin to PATH"
    if ! criu_works "$resolved"; then
        output=$("$resolved" check 2>&1 | tail -n 5) || true
        die "criu was installed ($how), but '$resolved' (version $(criu_version "$resolved" || true)) fails 'criu check':
$output"
    fi
    say "CRIU $(criu_version "$resolved") ready at $resolved ($how, ${SECONDS}s)"
}

main() {
    local cache=yes
    kdat_cache || cache=no
    if quick_check; then exit 0; fi
    [[ $cache == yes ]] ||
        say "no kdat cache: cannot make $RUNDIR a tmpfs; every criu call will probe the kernel (~30-60 ms)"

    [[ $EUID -eq 0 ]] ||
        die "installing CRIU needs root; run: sudo $0"
    if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
        die "this installer supports Debian-based systems (apt-get) only; install CRIU >= $MIN_VERSION yourself"
    fi

    mkdir -p "$CACHE_DIR"
    # Serialise concurrent runs; whoever waited re-checks, as the other run may have
    # just installed CRIU.
    exec 9>"$CACHE_DIR/lock"
    flock 9
    if quick_check; then exit 0; fi

    : >"$LOG"
    logging=true
    SECONDS=0

    # Step 2: the distribution's own package, if new enough.
    local candidate
    candidate=$(apt-cache policy criu 2>/dev/null | awk '/Candidate:/ { print $2; exit }') || true
    if [[ -z $candidate || $candidate == "(none)" ]]; then
        logged apt-get update -q || die "apt-get update failed; check network access and /etc/apt sources"
        candidate=$(apt-cache policy criu 2>/dev/null | awk '/Candidate:/ { print $2; exit }') || true
    fi
    if [[ -n $candidate && $candidate != "(none)" ]] && version_ge "${candidate#*:}" "$MIN_VERSION"; then
        say "installing the distribution's criu $candidate…"
        apt_install criu
        if quick_check; then
            verify "distribution package"
            return
        fi
        say "the packaged criu $candidate does not pass 'criu check' here; building from source instead"
    fi

    # Step 3: build from Debian's source package of a newer release.
    build_from_source
    verify "built from Debian source"
}

main "$@"

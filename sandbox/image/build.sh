#!/usr/bin/env bash
# Build a daj sandbox image with no registry but Debian's mirror and PyPI (issue 17; docs/docker.md).
#
#   sandbox/image/build.sh base   # Debian root filesystem (debootstrap) -> `docker import` -> daj-base
#   sandbox/image/build.sh test   # base + pyseccomp: the small image the docker-backend tests use
#   sandbox/image/build.sh bcb    # base + the BigCodeBench evaluation libraries (sandbox/Dockerfile)
#   sandbox/image/build.sh lock   # re-resolve sandbox/requirements-bcb.txt into sandbox/image/bcb-lock.txt
#
# The bcb image installs the lock file: every package pinned, transitive ones resolved by uv (from
# PyPI) as of LOCK_DATE, BigCodeBench's own release month, so that unpinned dependencies are the ones
# its environment had, not today's.
#
# Every image is tagged with a hash of what it is built from (<name>:<hash>) and also <name>:latest
# (the bcb image also as daj-sandbox:latest, params execute.docker_image). A build whose hash tag
# exists is skipped, so CI rebuilds the small image only when its inputs change. The harness is not
# in the image: the docker backend bind-mounts the working tree's sandbox/ at container start.
#
# Needs root (debootstrap), docker and debootstrap; `.ci/run` installs them. Env: DEBIAN_MIRROR,
# DEBIAN_SUITE, DAJ_IMAGE_PREFIX (default daj), DAJ_IMAGE_QUIET=1 (docker build output to a log only).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
SANDBOX="$(dirname "$HERE")"
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE="${DEBIAN_SUITE:-bookworm}"
PREFIX="${DAJ_IMAGE_PREFIX:-daj}"
# Debian's python3 (3.11 on bookworm) with the whole standard library, and libseccomp for pyseccomp.
BASE_PACKAGES="python3,python3-pip,python3-distutils,python3-lib2to3,libseccomp2,ca-certificates,tzdata"
# Bump when build_base below changes what it makes (the base tag hashes this, not the whole script).
BASE_RECIPE="base-2"

LOCK_DATE="${LOCK_DATE:-2024-07-01}"
UV_SPEC="uv==0.13.9"

log() { printf '[image %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# sha256 of the given strings and files, 12 hex digits
digest() {
    { for x in "$@"; do if [ -f "$x" ]; then cat "$x"; else printf '%s\n' "$x"; fi; done; } \
        | sha256sum | cut -c1-12
}

build_base() {
    local tag
    tag="$PREFIX-base:$(digest "$SUITE" "$MIRROR" "$BASE_PACKAGES" "$BASE_RECIPE" /usr/local/share/ca-certificates/*.crt)"
    if have_image "$tag"; then
        log "base image $tag exists"
    else
        command -v debootstrap >/dev/null || { log "debootstrap missing (apt-get install debootstrap)"; exit 1; }
        local root
        root="$(mktemp -d /tmp/daj-rootfs.XXXXXX)"
        log "debootstrap $SUITE from $MIRROR into $root"
        debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$root/fs" "$MIRROR" \
            >"$root/debootstrap.log" 2>&1 || { tail -20 "$root/debootstrap.log" >&2; exit 1; }
        # this machine's own CAs (a TLS-inspecting egress proxy): pip and apt in the derived builds
        # must trust what the host trusts; the sandbox itself has no network
        if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
            cp /usr/local/share/ca-certificates/*.crt "$root/fs/usr/local/share/ca-certificates/"
            chroot "$root/fs" update-ca-certificates >/dev/null 2>&1
        fi
        # apt sources for the derived builds (bookworm and its security updates), no caches
        printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
            "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "${MIRROR%/debian}/debian-security" "$SUITE" \
            >"$root/fs/etc/apt/sources.list"
        rm -rf "$root"/fs/var/cache/apt/archives/*.deb "$root"/fs/var/lib/apt/lists/* \
            "$root"/fs/usr/share/doc/* "$root"/fs/usr/share/man/* "$root"/fs/usr/share/locale/*
        log "docker import -> $tag"
        tar -C "$root/fs" --numeric-owner -c . | docker import \
            -c 'ENV LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin' -c 'CMD ["python3"]' \
            -m "daj base: debootstrap $SUITE minbase" - "$tag" >/dev/null
        rm -rf "$root"
    fi
    docker tag "$tag" "$PREFIX-base:latest"
    BASE_TAG="$tag"
}

# docker_build NAME DOCKERFILE [more files the image depends on]
docker_build() {
    local name="$1" dockerfile="$2"
    shift 2
    local tag="$name:$(digest "$BASE_TAG" "$dockerfile" "$@")"
    if have_image "$tag"; then
        log "image $tag exists (same inputs): not rebuilt"
    else
        log "docker build $dockerfile -> $tag"
        local out=/dev/stderr
        if [ "${DAJ_IMAGE_QUIET:-0}" = 1 ]; then out="/tmp/daj-image-${name//[:\/]/_}.log"; fi
        DOCKER_BUILDKIT=0 docker build --force-rm --network host --build-arg "BASE=$BASE_TAG" -f "$dockerfile" \
            -t "$tag" "$SANDBOX" >"$out" 2>&1 || { [ "$out" = /dev/stderr ] || tail -30 "$out" >&2; exit 1; }
    fi
    docker tag "$tag" "$name:latest"
    echo "$tag"
}

lock() {
    local venv
    venv="$(mktemp -d /tmp/daj-uv.XXXXXX)"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "$UV_SPEC"
    # --native-tls: trust the system's CAs (this machine reaches PyPI through a TLS proxy)
    printf 'pyseccomp==0.1.2\n' >"$venv/extra.txt"
    (cd "$SANDBOX" && "$venv/bin/uv" pip compile --native-tls --quiet --python-version 3.11 \
        --python-platform x86_64-manylinux_2_28 --exclude-newer "$LOCK_DATE" \
        --index-url https://pypi.org/simple --no-header --annotation-style line \
        requirements-bcb.txt "$venv/extra.txt" -o "$venv/lock.txt")
    { printf '# Generated by sandbox/image/build.sh lock from requirements-bcb.txt (+ pyseccomp) with %s:\n' "$UV_SPEC"
      printf '# Python 3.11, manylinux x86_64, PyPI as of %s. Installed with pip --no-deps.\n' "$LOCK_DATE"
      sed "s#$venv/extra.txt#sandbox-harness#" "$venv/lock.txt"; } >"$HERE/bcb-lock.txt"
    rm -rf "$venv"
    log "wrote $HERE/bcb-lock.txt ($(grep -c '==' "$HERE/bcb-lock.txt") packages)"
}

main() {
    local what="${1:-test}" start=$SECONDS tag
    if [ "$what" = lock ]; then lock; return; fi
    command -v docker >/dev/null || { log "docker missing"; exit 1; }
    build_base
    case "$what" in
        base) tag="$BASE_TAG" ;;
        test) tag="$(docker_build "$PREFIX-sandbox-test" "$HERE/Dockerfile.test")" ;;
        bcb)
            tag="$(docker_build "$PREFIX-sandbox-bcb" "$SANDBOX/Dockerfile" "$HERE/bcb-lock.txt")"
            docker tag "$tag" "$PREFIX-sandbox:latest" ;;
        *) log "usage: $0 base|test|bcb|lock"; exit 2 ;;
    esac
    log "$tag ready in $((SECONDS - start)) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}

main "$@"

#!/usr/bin/env bash
# Build a local Debian 12 + Python 3.11 base image for the connector images, for hosts that
# cannot pull `python:3.11-slim` (no registry, air-gapped). Skips the build when the image
# exists already.
#
# Usage: scripts/build-base-image.sh [TAG]        (default etlctl/base-python:3.11-bookworm)
# Then:  etlctl images build --base-image etlctl/base-python:3.11-bookworm
#
# How: debootstrap --variant=minbase --include=python3,ca-certificates bookworm DIR, then
# `tar -C DIR -c . | docker import - TAG`. Needs root (debootstrap creates device nodes),
# the Docker engine, and a Debian mirror: taken from $ETLCTL_DEBIAN_MIRROR, else from this
# machine's apt sources (the mirror apt already reaches), else deb.debian.org.
set -euo pipefail

readonly TAG="${1:-etlctl/base-python:3.11-bookworm}"
readonly SUITE="bookworm"
readonly PACKAGES="python3,ca-certificates"

say() { printf 'build-base-image: %s\n' "$*"; }
die() { printf 'build-base-image: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# The first apt source URI that serves "$SUITE main" (both the one-line and the deb822
# formats), so debootstrap uses a mirror this machine is known to reach.
mirror_from_apt_sources() {
    local files=()
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    local f
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    awk -v suite="$SUITE" '
        # one-line format: deb [options] URI SUITE COMPONENT...
        /^[[:space:]]*deb[[:space:]]/ {
            i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit }
            next
        }
        # deb822 format: a stanza of "Key: value" lines ended by a blank line
        /^[[:space:]]*$/ { if (types ~ /deb( |$)/ && suites ~ ("(^| )" suite "( |$)") && uri != "") { print uri; exit } types = suites = uri = ""; next }
        /^Types:/  { sub(/^Types:[[:space:]]*/, ""); types = $0 }
        /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
        /^URIs:/   { uri = $2 }
        END { if (types ~ /deb( |$)/ && suites ~ ("(^| )" suite "( |$)") && uri != "") print uri }
    ' "${files[@]}" | head -n 1
}

choose_mirror() {
    if [ -n "${ETLCTL_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "$ETLCTL_DEBIAN_MIRROR"
        return
    fi
    local mirror
    mirror="$(mirror_from_apt_sources || true)"
    printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

main() {
    have docker || die "docker client not found (run scripts/ensure-services.sh docker)"
    docker info >/dev/null 2>&1 \
        || die "Docker engine is not reachable (run scripts/ensure-services.sh docker)"
    if docker image inspect "$TAG" >/dev/null 2>&1; then
        say "$TAG exists already, nothing to do"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run this script as root"
    if ! have debootstrap; then
        say "installing debootstrap (apt-get)"
        apt-cache policy debootstrap 2>/dev/null | grep -q "Candidate: [0-9]" || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
            debootstrap >/dev/null || die "apt-get install debootstrap failed"
    fi

    local mirror rootfs
    mirror="$(choose_mirror)"
    # /var/tmp, not /tmp: /tmp may be a small tmpfs or mounted nodev, which debootstrap breaks.
    rootfs="$(mktemp -d /var/tmp/etlctl-rootfs.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -rf --one-file-system '$rootfs'" EXIT

    say "debootstrap $SUITE from $mirror (about a minute)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" \
        >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed (log: $rootfs.log)"; }
    rm -f "$rootfs.log"

    # Downloaded .debs and package lists are dead weight in an image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/apt/*.bin

    say "importing $rootfs as $TAG"
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        --change "LABEL io.etlctl.base=debootstrap-$SUITE" \
        - "$TAG" >/dev/null
    say "built $TAG ($(docker image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
}

main "$@"

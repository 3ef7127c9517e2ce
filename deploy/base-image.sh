#!/usr/bin/env bash
# Make a base image where no registry answers: deploy/base-image.sh NAME.
#
# Debian bookworm's minimal system with Python 3.11, from the apt mirror this machine's own
# sources name (MIRROR= overrides), imported into podman as NAME. Nothing is pulled.
set -euo pipefail

NAME=${1:?usage: deploy/base-image.sh NAME}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
podman image exists "$NAME" && { echo "$NAME already there"; exit 0; }

if [ -z "${MIRROR:-}" ]; then
    # The first Debian archive named (deb822 `URIs:` or one-line `deb`); not every file exists.
    MIRROR=$( (cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true) |
        grep -oE '^(URIs: *|deb +)[^ ]+/debian/?( |$)' | head -1 | awk '{print $NF}') || true
fi
[ -n "$MIRROR" ] || { echo "no Debian mirror in /etc/apt/sources*; set MIRROR=" >&2; exit 1; }

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/pyserving-base.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
start=$SECONDS
debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,netbase \
    bookworm "$rootfs" "$MIRROR"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$NAME"
echo "$NAME made from $MIRROR in $((SECONDS - start)) s"

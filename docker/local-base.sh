#!/bin/sh
# Builds a stand-in for the python:3.13-slim base from Debian's own packages, for a machine
# that cannot pull from Docker Hub but reaches a Debian mirror. Debian bookworm (minbase) with
# its Python (3.11, which the project supports), python3-venv, and `python` on PATH as the
# official image has it. Prints the image's name; builds it only when it is missing.
#   docker/local-base.sh                       uses the mirror of /etc/apt/sources.list*
#   DEBIAN_MIRROR=http://... docker/local-base.sh
# Needs root, debootstrap and a running Docker daemon (DOCKER names the client, default docker).
# The image's own sources.list names deb.debian.org, whatever mirror built it.
set -eu

docker="${DOCKER:-docker}"
suite=bookworm
packages=python3,python3-venv,python-is-python3
# The name changes with this script, so that an edited recipe builds a new image.
name="wallet-api-base:$suite-$(cksum < "$0" | cut -d' ' -f1)"

if "$docker" image inspect "$name" >/dev/null 2>&1; then
    echo "$name"
    exit 0
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ && /\/debian\/?$/ {print $2; exit} /^deb / && / bookworm / && $2 ~ /\/debian\/?$/ {print $2; exit}')"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "local-base: debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$root/rootfs" "$mirror" >"$root/log" 2>&1 \
    || { tail -20 "$root/log" >&2; exit 1; }
echo "deb http://deb.debian.org/debian $suite main" > "$root/rootfs/etc/apt/sources.list"
rm -rf "$root"/rootfs/var/cache/apt/archives/*.deb "$root"/rootfs/var/lib/apt/lists/* \
    "$root"/rootfs/usr/share/doc/* "$root"/rootfs/usr/share/man/* "$root"/rootfs/var/log/*
tar -C "$root/rootfs" -c . | "$docker" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python"]' \
    - "$name" >/dev/null
echo "$name"

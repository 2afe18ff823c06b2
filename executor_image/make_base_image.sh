#!/usr/bin/env bash
# Build a minimal Debian + Python base image without any container registry.
#
#   executor_image/make_base_image.sh [TAG]
#
# debootstraps a minimal Debian (python3, python3-venv, ca-certificates) into a
# temporary directory and turns it into an image with `docker import`.  Used on
# air-gapped hosts and in CI, where nothing can be pulled.  The Debian mirror is
# taken from DEBIAN_MIRROR, else from the host's apt sources.  Needs root and
# debootstrap (apt-get install debootstrap).
set -euo pipefail

TAG="${1:-${CODEEXEC_BASE_IMAGE:-codeexec-base:bookworm}}"
SUITE="${DEBIAN_SUITE:-bookworm}"
DOCKER="${CODEEXEC_DOCKER:-docker}"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG already present"
    exit 0
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    # First main-archive URI of the host's apt configuration (deb822 or one-line form).
    mirror="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
              | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
    mirror="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null \
              | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
    echo "no Debian mirror found: set DEBIAN_MIRROR" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    echo "debootstrap is missing: apt-get install -y debootstrap" >&2
    exit 1
fi

# One private (0700) directory holds both the tree and the log: nothing is written
# at a path in the shared /tmp that another user could guess or plant a link at.
work="$(mktemp -d "${TMPDIR:-/tmp}/codeexec-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
log="$work/debootstrap.log"
mkdir -m 0755 "$root"
echo "debootstrap $SUITE from the host's mirror into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$root" "$mirror" >"$log" 2>&1 || { tail -n 40 "$log" >&2; exit 1; }
# Trim what a runtime image does not need.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar -C "$root" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$TAG" >/dev/null
echo "built base image $TAG"

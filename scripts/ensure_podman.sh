#!/usr/bin/env bash
# Make podman usable for the podman tests (tests/integration/test_podman.py): on a
# fresh Debian machine, as root, install podman and catatonit (podman's --init), then
# give podman the offline base image from the Docker engine (`docker save | podman
# load`: podman's image store is its own). Usage: ensure_podman.sh IMAGE.
# CODEEXEC_NO_PODMAN=1 skips it (the podman tests then fail: they never skip in CI).
set -euo pipefail
IMAGE="${1:-${CODEEXEC_BASE_IMAGE:-codeexec-base:bookworm}}"
[ "${CODEEXEC_NO_PODMAN:-0}" = 1 ] && exit 0
if ! command -v podman >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "podman is not installed: apt-get install podman catatonit (as root)" >&2
        exit 1
    fi
    echo "installing podman and catatonit with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq podman catatonit >/dev/null
fi
if ! podman image exists "$IMAGE" 2>/dev/null; then
    echo "copying $IMAGE from the Docker engine into podman" >&2
    docker save "$IMAGE" | podman load -q >/dev/null
fi

#!/usr/bin/env bash
# Make sure a Docker engine answers. On a fresh Debian machine, as root and without
# systemd, this installs docker.io (and debootstrap for the offline base image),
# starts dockerd in the background and waits for `docker info`.
set -euo pipefail
DOCKER="${CODEEXEC_DOCKER:-docker}"

if command -v "$DOCKER" >/dev/null 2>&1 && timeout 10 "$DOCKER" info >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "the Docker engine does not answer; start it (or set DOCKER_HOST) and retry" >&2
    exit 1
fi
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing ${need[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
# A dockerd that was killed may linger as a zombie: only a live one counts.
if ! ps -C dockerd -o stat= 2>/dev/null | grep -qv '^Z'; then
    echo "starting dockerd in the background (log: /var/log/codeexec-dockerd.log)" >&2
    nohup dockerd >/var/log/codeexec-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
    if timeout 10 "$DOCKER" info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
echo "dockerd did not come up; see /var/log/codeexec-dockerd.log" >&2
tail -n 20 /var/log/codeexec-dockerd.log >&2 || true
exit 1

#!/usr/bin/env bash
# Make sure a Docker engine answers. On a fresh Debian machine, as root and without
# systemd, this installs docker.io (and debootstrap for the offline base image),
# starts dockerd in the background and waits for `docker info`.
set -euo pipefail
DOCKER="${CODEEXEC_DOCKER:-docker}"
HERE="$(cd "$(dirname "$0")" && pwd)"
DAEMON_JSON="${CODEEXEC_DAEMON_JSON:-/etc/docker/daemon.json}"

# gVisor for the snapshot tests (docs/snapshots.md): Debian's runsc, and the runtimes
# `runsc` and `runsc-ckpt` ADDED to daemon.json (scripts/engine_runtimes.py merges,
# keeping every key already there). Only as root on a local engine; CODEEXEC_NO_GVISOR=1
# skips it. Exit 3 of the merge: runtimes added (a running dockerd reloads them on
# SIGHUP); 4: "experimental" added too, which only a dockerd restart reads.
configure_gvisor() {
    [ "${CODEEXEC_NO_GVISOR:-0}" = 1 ] && return 0
    [ "$(id -u)" = 0 ] && [ -z "${DOCKER_HOST:-}" ] || return 0
    if ! command -v runsc >/dev/null 2>&1; then
        echo "installing runsc (gVisor) with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq runsc >/dev/null || {
            echo "could not install runsc: snapshots use the portable method only" >&2
            return 0
        }
    fi
    local rc=0
    python3 "$HERE/engine_runtimes.py" "$DAEMON_JSON" || rc=$?
    MERGED=$rc
    case $rc in 0|3|4) ;; *) echo "engine_runtimes.py failed ($rc)" >&2; return 1 ;; esac
}

reload_running_engine() {
    [ "${MERGED:-0}" = 0 ] && return 0
    local pid
    pid="$(ps -C dockerd -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1; exit}')"
    [ -n "$pid" ] || return 0
    echo "reloading dockerd ($pid) with SIGHUP for the new runtimes" >&2
    kill -HUP "$pid"
    if [ "$MERGED" = 4 ]; then
        echo "note: \"experimental\" was added to $DAEMON_JSON; dockerd reads it only when it" \
            "starts, so the checkpoint snapshot method needs a dockerd restart" \
            "(\`codeexec doctor\` says which method works now)" >&2
    fi
    for _ in $(seq 1 20); do
        timeout 10 "$DOCKER" info --format '{{json .Runtimes}}' 2>/dev/null | grep -q runsc-ckpt \
            && return 0
        sleep 0.5
    done
}

if command -v "$DOCKER" >/dev/null 2>&1 && timeout 10 "$DOCKER" info >/dev/null 2>&1; then
    configure_gvisor
    reload_running_engine
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
configure_gvisor  # before dockerd starts, so it reads the runtimes and experimental
# A dockerd that was killed may linger as a zombie: only a live one counts.
if ps -C dockerd -o stat= 2>/dev/null | grep -qv '^Z'; then
    reload_running_engine
else
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

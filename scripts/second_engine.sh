#!/usr/bin/env bash
# A second Docker engine that is remote in every way that matters, for the tests.
#
#   scripts/second_engine.sh start   # idempotent; prints the engine's DOCKER_HOST
#   scripts/second_engine.sh stop    # idempotent; removes its containers and namespace
#   scripts/second_engine.sh status  # exit 0 when it answers
#
# It runs `dockerd` in a network namespace of its own (`ip netns`), with no veth: its
# own loopback (a port it publishes on its 127.0.0.1 is unreachable from this host,
# which is what a remote host looks like), its own bridge on a subnet of its own
# (--bip), its own data root, exec root, pid file, config and unix socket. The first
# engine is never touched: nothing here runs in the host's network namespace but
# `ip netns add/del`, and a dockerd started in the host's namespace with
# --bridge=none would delete the first engine's docker0. The namespace is offline, so
# the base image is copied in with `docker save | docker load`. Needs root and
# iproute2 (installed with apt-get when missing). A docker context named
# codeexec-engine2 points at the same socket.
set -euo pipefail

NAME="${CODEEXEC_ENGINE2_NAME:-codeexec-engine2}"
NETNS="$NAME"
STATE="/run/$NAME"
SOCK="$STATE/docker.sock"
HOST="unix://$SOCK"
DATA="/var/lib/$NAME"
BIP="${CODEEXEC_ENGINE2_BIP:-10.213.0.1/24}"
IMAGE="${CODEEXEC_BASE_IMAGE:-codeexec-base:bookworm}"
LOG="/var/log/$NAME.log"
DOCKER="${CODEEXEC_DOCKER:-docker}"

answers() { timeout 10 "$DOCKER" -H "$HOST" info >/dev/null 2>&1; }

need_tools() {
    if [ "$(id -u)" != 0 ]; then
        echo "second_engine.sh needs root (ip netns, dockerd)" >&2
        exit 1
    fi
    if ! command -v ip >/dev/null 2>&1 || ! command -v unshare >/dev/null 2>&1; then
        echo "installing iproute2 with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq iproute2 util-linux >/dev/null
    fi
}

# Inside `ip netns exec` (a mount namespace of its own, /sys remounted) the cgroup
# hierarchies are hidden: mount them again, v1 controllers or the v2 unified tree,
# exactly as the host has them, then run dockerd.
inner() {
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup 2>/dev/null || true
    while read -r _ target fstype options _; do
        case "$target" in /sys/fs/cgroup/*) ;; *) continue ;; esac
        mkdir -p "$target"
        case "$fstype" in
            cgroup2) mount -t cgroup2 none "$target" ;;
            cgroup)
                opts=$(echo "$options" | tr ',' '\n' | grep -Ev '^(rw|ro|relatime|nosuid|nodev|noexec)$' | paste -sd, -)
                mount -t cgroup -o "$opts" cgroup "$target" ;;
        esac
    done < <(grep -E ' /sys/fs/cgroup(/| )' /proc/1/mounts | grep -Ev ' tmpfs ')
    if grep -q ' /sys/fs/cgroup cgroup2 ' /proc/1/mounts; then
        mount -t cgroup2 none /sys/fs/cgroup
    fi
    ip link set lo up
    exec dockerd --config-file "$STATE/daemon.json" -H "$HOST" --data-root "$DATA" \
        --exec-root "$STATE/exec" --pidfile "$STATE/docker.pid" --bip "$BIP" \
        --cgroup-parent "/$NAME"
}

start() {
    need_tools
    if answers; then
        load_image
        echo "$HOST"
        return
    fi
    mkdir -p "$STATE" "$DATA"
    [ -f "$STATE/daemon.json" ] || echo '{}' >"$STATE/daemon.json"
    ip netns list | grep -qw "^$NETNS" || ip netns add "$NETNS"
    rm -f "$SOCK"
    echo "starting the second engine in network namespace $NETNS (log: $LOG)" >&2
    nohup ip netns exec "$NETNS" bash "$0" __inner >"$LOG" 2>&1 &
    for _ in $(seq 1 60); do
        if answers; then
            break
        fi
        sleep 1
    done
    if ! answers; then
        echo "the second engine did not come up; see $LOG" >&2
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
    load_image
    if "$DOCKER" context inspect "$NAME" >/dev/null 2>&1; then
        "$DOCKER" context update "$NAME" --docker "host=$HOST" >/dev/null
    else
        "$DOCKER" context create "$NAME" --docker "host=$HOST" \
            --description "codeexec's second test engine (scripts/second_engine.sh)" >/dev/null
    fi
    echo "$HOST"
}

load_image() {
    if ! "$DOCKER" -H "$HOST" image inspect "$IMAGE" >/dev/null 2>&1; then
        echo "copying $IMAGE into the second engine" >&2
        "$DOCKER" save "$IMAGE" | "$DOCKER" -H "$HOST" load >/dev/null
    fi
}

stop() {
    if answers; then
        ids=$("$DOCKER" -H "$HOST" ps -aq)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            "$DOCKER" -H "$HOST" rm -f $ids >/dev/null 2>&1 || true
        fi
    fi
    if [ -f "$STATE/docker.pid" ]; then
        pid=$(cat "$STATE/docker.pid")
        # Only the dockerd that this script started: its command line names our socket.
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$SOCK"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    if ip netns list 2>/dev/null | grep -qw "^$NETNS"; then
        ip netns del "$NETNS" || true
    fi
    rm -f "$SOCK"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) answers ;;
    __inner) inner ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac

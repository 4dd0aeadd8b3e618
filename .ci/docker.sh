#!/usr/bin/env bash
# A Docker engine in Swarm mode for the rig, kept inside the work tree, and the rig's image.
#
#   bash .ci/docker.sh          # start: prints DOCKER_HOST (unix://...) as its last line
#   bash .ci/docker.sh stop     # leave the swarm, stop dockerd by its PID, unmount what it left
#   bash .ci/docker.sh restart  # stop dockerd and start it again (the swarm survives)
#   bash .ci/docker.sh halt     # stop dockerd only (the swarm survives: `start` brings it back)
#   bash .ci/docker.sh status   # exit 0 if the engine answers
#
# Idempotent: installs Debian's docker.io and mmdebstrap only if missing, starts dockerd only if
# its PID file names no live process, inits the swarm only if inactive, and builds the images
# only when their inputs changed. dockerd's data root, exec root, PID file, socket and log live
# in .ci/cache/docker/; it makes no bridge and touches no iptables (everything is on loopback,
# services use the host network). The image needs no registry: mmdebstrap makes a Debian root
# file system with python3, numpy and prometheus-client (cached as a tarball, keyed by its
# package list), `docker import` turns it into the base image, and a one-COPY `docker build`
# adds rig/server.py (keyed by the file's hash). Everything but the last line goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.ci/cache/docker"
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"
export DOCKER_HOST="unix://$sock"
SUITE=bookworm
PACKAGES=python3-minimal,python3-numpy,python3-prometheus-client
IMAGE=rlscale-rig

log() { echo "docker.sh: $*" >&2; }

running_pid() {
    [[ -f "$pidfile" ]] || return 1
    local pid
    pid="$(cat "$pidfile")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() { docker version >/dev/null 2>&1; }

install_missing() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    (( ${#missing[@]} )) || return 0
    log "installing ${missing[*]} from Debian's packages"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
}

storage_driver() {
    # overlay2 starts containers in under a second; vfs (a full copy per container) works anywhere
    if grep -qw overlay /proc/filesystems 2>/dev/null; then echo overlay2; else echo vfs; fi
}

start_dockerd() {
    if running_pid >/dev/null; then
        return 0
    fi
    mkdir -p "$dir/data" "$dir/exec"
    rm -f "$sock" "$pidfile"
    local driver
    driver="$(cat "$dir/storage-driver" 2>/dev/null || storage_driver)"
    echo "$driver" >"$dir/storage-driver"  # a data root keeps the driver it was made with
    log "starting dockerd ($driver) with its socket at $sock"
    setsid dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$pidfile" --host "$DOCKER_HOST" \
        --iptables=false --ip6tables=false --bridge=none --storage-driver="$driver" --log-level=warn \
        >>"$dir/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 150); do
        answers && return 0
        sleep 0.2
    done
    log "dockerd did not answer within 30 s; the end of $dir/dockerd.log:"
    tail -20 "$dir/dockerd.log" >&2
    exit 1
}

init_swarm() {
    local state
    for _ in $(seq 50); do  # after a restart the node reports "pending" while it rejoins
        state="$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true)"
        [[ "$state" == pending ]] || break
        sleep 0.2
    done
    if [[ "$state" != active ]]; then
        log "initialising a one-node swarm on 127.0.0.1"
        docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 --data-path-addr 127.0.0.1 >/dev/null
    fi
    for _ in $(seq 100); do  # the manager needs a moment before it takes service commands
        docker node ls >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "the swarm manager is not ready"
    exit 1
}

build_images() {
    local base_key base tarball key
    base_key="$(echo "$SUITE $PACKAGES" | sha256sum | cut -c1-12)"
    base="$IMAGE-base:$base_key"
    tarball="$dir/rootfs-$base_key.tar"
    if ! docker image inspect "$base" >/dev/null 2>&1; then
        if [[ ! -f "$tarball" ]]; then
            log "building the root file system with mmdebstrap ($PACKAGES; about 30 s)"
            mmdebstrap --quiet --format=tar --variant=apt --include="$PACKAGES" \
                --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
                --dpkgopt='path-exclude=/usr/share/locale/*' --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
                "$SUITE" "$tarball.part" >&2
            mv "$tarball.part" "$tarball"
        fi
        log "importing $base"
        docker import "$tarball" "$base" >/dev/null
    fi
    key="$( (echo "$base"; cat "$root/rig/server.py" "$root/rig/Dockerfile") | sha256sum | cut -c1-12)"
    if ! docker image inspect "$IMAGE:$key" >/dev/null 2>&1; then
        log "building $IMAGE:$key"
        DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$base" -t "$IMAGE:$key" -f "$root/rig/Dockerfile" "$root/rig" >/dev/null 2>&1 \
            || DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$base" -t "$IMAGE:$key" -f "$root/rig/Dockerfile" "$root/rig" >&2
    fi
    docker tag "$IMAGE:$key" "$IMAGE:latest"
}

halt_dockerd() {
    # only the daemon goes down (its containers with it); the swarm's state stays in the data root
    local pid
    if pid="$(running_pid)"; then
        kill "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
}

stop_dockerd() {
    local pid
    if pid="$(running_pid)"; then
        if answers && [[ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" == active ]]; then
            docker swarm leave --force >/dev/null 2>&1 || true
        fi
        kill "$pid"
        for _ in $(seq 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd ($pid) did not stop in 30 s; killing it"
            kill -9 "$pid"
        fi
    fi
    # dockerd leaves its network namespace mounted under the exec root
    grep -o " $dir/exec/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r mnt; do umount "$mnt" 2>/dev/null || true; done
    rm -f "$pidfile" "$sock"
}

case "${1:-start}" in
    start)
        install_missing
        start_dockerd
        init_swarm
        build_images
        echo "$DOCKER_HOST"
        ;;
    stop)
        stop_dockerd
        ;;
    halt)
        halt_dockerd
        ;;
    restart)
        halt_dockerd
        start_dockerd
        init_swarm
        echo "$DOCKER_HOST"
        ;;
    status)
        running_pid >/dev/null && answers
        ;;
    *)
        echo "usage: $0 [start|stop|restart|halt|status]" >&2
        exit 2
        ;;
esac

#!/bin/sh
# A private Docker engine and a Debian base image for machines without either (CI, sandboxes).
#
#   docker/local-engine.sh start   start dockerd on a private socket unless one answers there
#   docker/local-engine.sh stop    stop the dockerd this script started
#   docker/local-engine.sh base    make neuroscan/debian-base:bookworm with debootstrap
#   docker/local-engine.sh env     print the DOCKER_HOST line to eval
#
# Why: where no registry is reachable, `FROM python:3.11-slim-bookworm` cannot be pulled, and
# the machine may run no engine. Debian's docker.io works when dockerd is started by hand with
# its own data/exec roots and without touching the host's network (no bridge, no iptables);
# builds then reach apt only with `docker build --network host`. Needs root.
set -eu

ROOT="${NEUROSCAN_DOCKER_ROOT:-/var/tmp/neuroscan-docker}"
SOCK="${NEUROSCAN_DOCKER_SOCK:-/tmp/neuroscan-docker.sock}"
DOCKER="${DOCKER_CLI:-/usr/bin/docker}"
BASE_TAG="${NEUROSCAN_BASE_IMAGE:-neuroscan/debian-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

answers() { DOCKER_HOST="unix://$SOCK" "$DOCKER" info >/dev/null 2>&1; }

need() {
  command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || {
    echo "$1 missing: apt-get install -y docker.io debootstrap" >&2; exit 1; }
}

case "${1:-}" in
  start)
    need /usr/sbin/dockerd
    if answers; then echo "engine already answering on $SOCK"; exit 0; fi
    mkdir -p "$ROOT/data" /tmp/neuroscan-docker-exec
    nohup /usr/sbin/dockerd --data-root "$ROOT/data" --exec-root /tmp/neuroscan-docker-exec \
      --pidfile "$ROOT/dockerd.pid" --host "unix://$SOCK" \
      --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
      >"$ROOT/dockerd.log" 2>&1 &
    i=0
    until answers; do
      i=$((i + 1))
      if [ "$i" -gt 60 ]; then tail -20 "$ROOT/dockerd.log" >&2; exit 1; fi
      sleep 1
    done
    echo "engine started on $SOCK (log: $ROOT/dockerd.log)"
    ;;
  stop)
    if [ -f "$ROOT/dockerd.pid" ]; then
      kill "$(cat "$ROOT/dockerd.pid")" 2>/dev/null || true
      rm -f "$ROOT/dockerd.pid"
      sleep 3
    fi
    # dockerd leaves its network-namespace mount behind when stopped this way
    umount /tmp/neuroscan-docker-exec/netns/default 2>/dev/null || true
    ;;
  base)
    need debootstrap
    if DOCKER_HOST="unix://$SOCK" "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
      echo "$BASE_TAG exists"; exit 0
    fi
    rootfs="$ROOT/rootfs"
    rm -rf "$rootfs"
    nice -n 19 debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | DOCKER_HOST="unix://$SOCK" "$DOCKER" import - "$BASE_TAG"
    rm -rf "$rootfs"
    ;;
  env)
    echo "export DOCKER_HOST=unix://$SOCK"
    ;;
  *)
    echo "usage: $0 start|stop|base|env" >&2
    exit 2
    ;;
esac

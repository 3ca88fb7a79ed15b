#!/bin/sh
# Build the images (model server, dashboard + PACS worker, Orthanc) and run the container tests; what `make docker-build` and
# `make test-docker` call, so the Makefile stays short and CI runs the same steps.
#
#   docker/images.sh wheels   host-built wheelhouses in docker/wheels/{server,dashboard}
#   docker/images.sh build    wheels + `docker build` of the three images
#   docker/images.sh test     engine (existing, else a private one) + base + wheels + pytest
#   docker/images.sh prometheus        Prometheus from Debian's package (for compose.host.yaml)
#   docker/images.sh host-compose ARGS docker-compose ARGS on compose.yaml + compose.host.yaml
#
# Environment: BASE_IMAGE (default python:3.11-slim-bookworm; `test` uses the debootstrap base
# when it had to start the private engine), NEUROSCAN_TAG (default dev), DOCKER_CLI, PIP, PY.
# Why a wheelhouse: RUN steps may have no network (or only apt's), and pip --no-index against
# files made here gives the same packages in the image as the lock files say, every time.
set -eu

cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
PY="${PY:-.venv/bin/python}"
DOCKER_CLI="${DOCKER_CLI:-docker}"
TAG="${NEUROSCAN_TAG:-dev}"

wheels() {
  for kind in server dashboard; do
    "$PIP" download --quiet --no-deps --only-binary=:all: \
      -d "docker/wheels/$kind" -r "docker/requirements-$kind.txt"
  done
}

build() {
  base="${BASE_IMAGE:-python:3.11-slim-bookworm}"
  [ -f model_store/brain_tumor.mar ] || { echo "model_store/brain_tumor.mar missing: make archive" >&2; exit 1; }
  wheels
  for kind in server dashboard orthanc; do
    start=$(date +%s)
    DOCKER_BUILDKIT=1 nice -n 19 "$DOCKER_CLI" build --network host --build-arg "BASE_IMAGE=$base" \
      -f "docker/Dockerfile.$kind" -t "neuroscan/$( [ "$kind" = server ] && echo model-server || echo "$kind" ):$TAG" .
    echo "built $kind image in $(( $(date +%s) - start )) s (base $base)"
  done
}

prometheus() {
  DOCKER_BUILDKIT=1 nice -n 19 "$DOCKER_CLI" build --network host \
    --build-arg "BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}" \
    -f docker/Dockerfile.prometheus -t "neuroscan/prometheus-debian:$TAG" .
}

# The stack on the host's network. Docker refuses published ports there, and compose v1 cannot
# drop compose.yaml's `ports` in an override (v2's `!reset` can), so the merged file is
# rendered, stripped of them, and read back from stdin.
host_compose() {
  compose=docker-compose
  command -v docker-compose >/dev/null 2>&1 || compose="$DOCKER_CLI compose"
  $compose -f docker/compose.yaml -f docker/compose.host.yaml config \
    | "$PY" -c 'import sys, yaml
stack = yaml.safe_load(sys.stdin)
for service in stack["services"].values():
    service.pop("ports", None)
yaml.safe_dump(stack, sys.stdout)' \
    | $compose --project-directory docker -f - "$@"
}

run_tests() {
  if "$DOCKER_CLI" info >/dev/null 2>&1; then
    base="${BASE_IMAGE:-python:3.11-slim-bookworm}"
  else
    # No engine: start a private one (root only) and build on a debootstrap base.
    sh docker/local-engine.sh start
    sh docker/local-engine.sh base
    eval "$(sh docker/local-engine.sh env)"
    DOCKER_CLI=/usr/bin/docker
    base="${BASE_IMAGE:-neuroscan/debian-base:bookworm}"
  fi
  wheels
  NEUROSCAN_DOCKER_TESTS=1 NEUROSCAN_BASE_IMAGE="$base" NEUROSCAN_TAG="$TAG" DOCKER_CLI="$DOCKER_CLI" \
    nice -n 10 "$PY" -m pytest -v -s -p no:cacheprovider tests/test_ops_docker.py
}

case "${1:-}" in
  wheels) wheels ;;
  build) build ;;
  test) run_tests ;;
  prometheus) prometheus ;;
  host-compose) shift; host_compose "$@" ;;
  *) echo "usage: $0 wheels|build|test|prometheus|host-compose ARGS" >&2; exit 2 ;;
esac

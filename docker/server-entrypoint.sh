#!/bin/sh
# Start TorchServe in the foreground for a container, and stop it gracefully on SIGTERM.
#
# Why a script and not `CMD torchserve`: the packaged config.properties binds 127.0.0.1 (right on
# a laptop, unreachable from outside a container's network namespace), so the effective config
# is derived from it here with the bind address and ports from the environment; and the
# `torchserve` launcher does not forward SIGTERM to the Java frontend, so without the trap a
# `docker stop` or a pod deletion would kill in-flight requests instead of draining them.
#
# Environment: TS_BIND_ADDRESS (inference + metrics), TS_MANAGEMENT_BIND_ADDRESS (defaults to
# TS_BIND_ADDRESS), TS_INFERENCE_PORT, TS_MANAGEMENT_PORT, TS_METRICS_PORT, TS_GRPC_INFERENCE_PORT,
# TS_GRPC_MANAGEMENT_PORT (gRPC cannot be switched off in TorchServe 0.12 and nothing here uses
# it, so it stays on the container's loopback), MODEL_STORE, and
# TS_BASE_CONFIG (default: the config.properties baked into the image; Kubernetes mounts its
# ConfigMap there instead), TS_LOG_CONFIG (log4j2 file; default: JSON lines on stdout).
set -eu

base="${TS_BASE_CONFIG:-/opt/neuroscan/config.properties}"
conf="${TMPDIR:-/tmp}/neuroscan-config.properties"
bind="${TS_BIND_ADDRESS:-0.0.0.0}"
mbind="${TS_MANAGEMENT_BIND_ADDRESS:-$bind}"
store="${MODEL_STORE:-/srv/neuroscan/model-store}"

sed -E '/^[[:space:]]*(inference_address|management_address|metrics_address|grpc_[a-z_]+|model_store)[[:space:]]*=/d' \
    "$base" > "$conf"
{
  echo "inference_address=http://${bind}:${TS_INFERENCE_PORT:-8080}"
  echo "management_address=http://${mbind}:${TS_MANAGEMENT_PORT:-8081}"
  echo "metrics_address=http://${bind}:${TS_METRICS_PORT:-8082}"
  echo "grpc_inference_address=127.0.0.1"
  echo "grpc_inference_port=${TS_GRPC_INFERENCE_PORT:-7070}"
  echo "grpc_management_address=127.0.0.1"
  echo "grpc_management_port=${TS_GRPC_MANAGEMENT_PORT:-7071}"
  echo "model_store=${store}"
} >> "$conf"

# The image's archives are the authority for the models they name: refresh them in the
# (possibly persistent) store on every start; other archives registered at run time stay.
mkdir -p "$store"
for mar in /opt/neuroscan/model-store/*.mar; do
  if [ -e "$mar" ]; then cp -f "$mar" "$store/"; fi
done

# JSON lines on stdout (config/log4j2-json.xml) unless TS_LOG_CONFIG names another file.
log_config="${TS_LOG_CONFIG:-/opt/neuroscan/log4j2-json.xml}"

torchserve --start --foreground --ncs --ts-config "$conf" --model-store "$store" \
  --log-config "$log_config" "$@" &
pid=$!
# shellcheck disable=SC2317  # invoked by the trap below
stop() {
  torchserve --stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
}
trap stop TERM INT
# `wait` returns early when a trapped signal arrives: then wait again for the drain to finish.
status=0
wait "$pid" || status=$?
if kill -0 "$pid" 2>/dev/null; then
  status=0
  wait "$pid" || status=$?
fi
exit "$status"

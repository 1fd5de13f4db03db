#!/usr/bin/env bash
# A real Docker engine and registry for the course's tests, on a machine with no internet but
# Debian's packages (CI). Needs root.
#
#   scripts/docker_engine.sh start   install docker.io + docker-registry, start dockerd and a
#                                    registry on 127.0.0.1:5000, build the course's test image and
#                                    push it there (then remove it locally, so that tests pull it)
#   scripts/docker_engine.sh stop    stop both, by the PIDs written at start
#   scripts/docker_engine.sh env     print the variables the tests need (eval "$(... env)")
#
# The test image stands in for nvcr.io/nvidia/tritonserver:24.10-py3, which cannot be pulled
# here: the same Triton 2.51.0 (the binary inside the nvidia-pytriton wheel), laid out as in the
# NGC image (/opt/tritonserver/bin, /opt/tritonserver/backends/python), with Python, numpy and
# onnxruntime for the course's ONNX runner.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${TRITON_COURSE_DOCKER_STATE:-/tmp/triton-course-docker}
SOCKET=$STATE/docker.sock
REGISTRY=127.0.0.1:5000
IMAGE=$REGISTRY/triton-course/tritonserver:24.10-ci
VENV=${VENV:-.venv}

log() { echo "docker_engine: $*" >&2; }

wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

install_packages() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v docker-registry >/dev/null || need+=(docker-registry)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
}

start_daemons() {
  mkdir -p "$STATE/registry"
  if ! [ -S "$SOCKET" ] || ! DOCKER_HOST=unix://$SOCKET docker version >/dev/null 2>&1; then
    dockerd --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
      --host "unix://$SOCKET" >"$STATE/dockerd.log" 2>&1 &
    wait_for 60 env DOCKER_HOST="unix://$SOCKET" docker version || { tail -20 "$STATE/dockerd.log"; exit 1; }
  fi
  if ! wait_for 1 curl -sf "http://$REGISTRY/v2/"; then
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $STATE/registry
http:
  addr: $REGISTRY
EOF
    docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
    echo $! >"$STATE/registry.pid"
    wait_for 30 curl -sf "http://$REGISTRY/v2/" || { tail -20 "$STATE/registry.log"; exit 1; }
  fi
  log "dockerd pid $(cat "$STATE/dockerd.pid"), registry pid $(cat "$STATE/registry.pid")"
}

build_image() {
  export DOCKER_HOST=unix://$SOCKET
  if curl -sf "http://$REGISTRY/v2/triton-course/tritonserver/manifests/24.10-ci" \
       -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' >/dev/null; then
    log "$IMAGE is already in the registry"
    return
  fi
  if ! docker image inspect local/debian:bookworm-min >/dev/null 2>&1; then
    log "debootstrap: a minimal Debian 12 root file system"
    rm -rf "$STATE/rootfs"
    debootstrap --variant=minbase bookworm "$STATE/rootfs" http://deb.debian.org/debian >"$STATE/debootstrap.log" 2>&1
    tar -C "$STATE/rootfs" -c . | docker import - local/debian:bookworm-min >/dev/null
    rm -rf "$STATE/rootfs"
  fi
  local ctx=$STATE/context
  rm -rf "$ctx"; mkdir -p "$ctx/wheels" "$ctx/tritonserver"
  # Triton from the nvidia-pytriton wheel installed in the course's environment.
  local site
  site=$("$VENV/bin/python" -c 'import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parents[1])')
  cp -r "$site/pytriton/tritonserver/bin" "$ctx/tritonserver/bin"
  cp -r "$site/nvidia_pytriton.libs" "$ctx/tritonserver/lib"
  mkdir -p "$ctx/tritonserver/backends/python"
  cp "$site/pytriton/tritonserver/backends/python/libtriton_python.so" \
     "$site/pytriton/tritonserver/backends/python/triton_python_backend_utils.py" \
     "$site/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" \
     "$ctx/tritonserver/backends/python/"
  # Wheels for the image's Python 3.11, fetched here: pip inside a build cannot verify TLS.
  "$VENV/bin/python" -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$ctx/wheels" numpy==1.26.4 onnxruntime==1.23.2 pillow==12.3.0
  cp scripts/ci_image.Dockerfile "$ctx/Dockerfile"
  log "building $IMAGE"
  docker build --network host -q -t "$IMAGE" "$ctx" >/dev/null
  docker push -q "$IMAGE" >/dev/null
  docker rmi "$IMAGE" >/dev/null   # the tests pull it back, with progress events
  rm -rf "$ctx"
  log "$IMAGE pushed to the local registry"
}

stop_all() {
  for name in registry dockerd; do
    if [ -f "$STATE/$name.pid" ]; then
      pid=$(cat "$STATE/$name.pid")
      kill "$pid" 2>/dev/null && wait_for 30 sh -c "! kill -0 $pid" || true
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$STATE/$name.pid"
      log "stopped $name (pid $pid)"
    fi
  done
}

case "${1:-}" in
  start) install_packages; start_daemons; build_image ;;
  stop) stop_all ;;
  env) echo "export DOCKER_HOST=unix://$SOCKET TRITON_IMAGE=$IMAGE" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac

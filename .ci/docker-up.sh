#!/usr/bin/env bash
# Start a Docker engine in swarm mode and make the local base image (MACHINE.md): no registry is
# reachable here, so the Debian rootfs is bootstrapped once and cached as a tarball.
set -euo pipefail
CACHE="${GEFAPI_CACHE:-/var/cache/gefapi}"
BASE_IMAGE="${BASE_IMAGE:-local/debian-python:bookworm}"
mkdir -p "$CACHE"

# docker-compose (v1, Debian's package) runs the admin compose file in tests/e2e/test_deploy.py;
# docker-registry (Distribution 2.8) serves the registry push test on 127.0.0.1.
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v docker-compose >/dev/null || ! command -v docker-registry >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap docker-compose \
    docker-registry >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi

if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != "active" ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  tarball="$CACHE/debian-python-bookworm.tar"
  if [ ! -s "$tarball" ]; then
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1
    tar -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
  fi
  docker import "$tarball" "$BASE_IMAGE" >/dev/null
fi
echo "docker: $(docker version --format '{{.Server.Version}}'), swarm active, base image $BASE_IMAGE"

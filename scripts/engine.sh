#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's engine when none is
# installed, start dockerd when none runs, and wait until `docker info` answers.
# Idempotent; does nothing when an engine already answers (a desktop, a CI service, DOCKER_HOST).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "DOCKER_HOST=$DOCKER_HOST is set but no engine answers there; start it or unset DOCKER_HOST." >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "No Docker engine here. Install one (https://docs.docker.com/engine/install/) and start it." >&2
    exit 1
  fi
  echo "==> installing Debian's Docker engine (docker.io)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  echo "A Docker engine is installed but not running; start it (e.g. sudo systemctl start docker)." >&2
  exit 1
fi
# A machine restarted without a clean engine stop leaves a pid file that blocks dockerd.
for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    rm -f "$pidfile"
  fi
done
echo "==> starting dockerd (log: /tmp/dockerd.log)"
# setsid: the engine must outlive the shell that started it.
setsid dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not answer within 30 s; see /tmp/dockerd.log:" >&2
tail -n 20 /tmp/dockerd.log >&2
exit 1

#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's engine when none is
# installed, start dockerd when none runs, and wait until `docker info` answers.
# Idempotent; does nothing when an engine already answers (a desktop, a CI service, DOCKER_HOST).
# An engine started here keeps its pid file and log in the project: .build/engine/dockerd.pid,
# .build/logs/dockerd.log. `scripts/engine.sh stop` stops exactly that engine (by its pid).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ENGINE_DIR="$MLC_ROOT/.build/engine"
PIDFILE="$ENGINE_DIR/dockerd.pid"

engine_answers() { docker info >/dev/null 2>&1; }

if [ "${1:-}" = stop ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    pid=$(cat "$PIDFILE")
    echo "==> stopping dockerd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 300); do  # its containers stop first: up to 30 s
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    echo "dockerd (pid $pid) did not stop within 30 s" >&2
    exit 1
  else
    echo "no engine started by this project runs"
  fi
  exit 0
fi

if ! command -v docker >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
  apt_install docker.io
fi
if engine_answers; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "DOCKER_HOST=$DOCKER_HOST is set but no engine answers there; start it or unset DOCKER_HOST." >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  apt_install docker.io
fi
if [ "$(id -u)" != 0 ]; then
  echo "A Docker engine is installed but not running; start it (e.g. sudo systemctl start docker)." >&2
  exit 1
fi
# A machine restarted without a clean engine stop leaves pid files that block dockerd.
mkdir -p "$ENGINE_DIR"
for pidfile in "$PIDFILE" /var/run/docker.pid /run/docker/containerd/containerd.pid; do
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    rm -f "$pidfile"
  fi
done
# MLC_DOCKER_DATA_ROOT: where the engine keeps images, volumes and networks (CI gives it an
# empty folder, so that nothing from an earlier run can make a test pass); else dockerd's own.
data_root=()
if [ -n "${MLC_DOCKER_DATA_ROOT:-}" ]; then
  mkdir -p "$MLC_DOCKER_DATA_ROOT"
  data_root=(--data-root "$MLC_DOCKER_DATA_ROOT")
fi
echo "==> starting dockerd${MLC_DOCKER_DATA_ROOT:+ on the data root $MLC_DOCKER_DATA_ROOT} (log: .build/logs/dockerd.log, pid file: .build/engine/dockerd.pid)"
started=$(date +%s)
# setsid: the engine must outlive the shell that started it.
setsid dockerd --pidfile "$PIDFILE" "${data_root[@]}" >>"$LOGS/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if engine_answers; then
    echo "    done in $(($(date +%s) - started)) s"
    exit 0
  fi
  sleep 0.5
done
echo "FAILED: dockerd did not answer within 30 s. Last lines of $LOGS/dockerd.log:" >&2
tail -n 30 "$LOGS/dockerd.log" >&2
exit 1

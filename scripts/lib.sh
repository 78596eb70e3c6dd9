# Shared by the setup scripts (sourced, not run). Nothing here depends on the caller's shell:
# the project's virtual environment is put first on PATH, and every long step logs to
# .build/logs/ and says when it starts, how long it took, and on failure where to look.
# shellcheck shell=bash

MLC_ROOT=${MLC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VENV=${MLC_VENV:-$MLC_ROOT/.venv}
LOGS=${MLC_LOGS:-$MLC_ROOT/.build/logs}
mkdir -p "$LOGS"
# Tools the venv provides (jupyter, jlpm, jupyter-builder…) win over whatever the caller has.
export PATH="$VENV/bin:$PATH"

# step NAME LOG COMMAND...: run COMMAND with its output in $LOGS/LOG.log. One line when it
# starts, its duration when it ends; on failure its name, the last 30 lines of the log and
# the log's path, and the script exits with the command's status.
step() {
  local name=$1 log="$LOGS/$2.log" started status=0
  shift 2
  started=$(date +%s)
  echo "==> $name (log: ${log#"$MLC_ROOT"/})"
  "$@" >"$log" 2>&1 </dev/null || status=$?
  if [ "$status" -ne 0 ]; then
    echo "FAILED: $name (exit status $status). Last lines of $log:" >&2
    tail -n 30 "$log" >&2
    echo "FAILED: $name; full log: $log" >&2
    exit "$status"
  fi
  echo "    done in $(($(date +%s) - started)) s"
}

# apt_install PACKAGE...: Debian packages, as root, in a logged step (no service is started).
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing: $*. Install them with your package manager (this script installs them only as root on Debian/Ubuntu)." >&2
    exit 1
  fi
  step "installing $*" "apt-$1" _apt_install "$@"
}

_apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d (exit 101) keeps packages from starting their services: we start what we need.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  local status=0
  { apt-get update && apt-get install -y "$@"; } || status=$?
  [ "$created" = 1 ] && rm -f "$policy"
  return "$status"
}

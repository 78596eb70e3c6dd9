#!/usr/bin/env bash
# Browser test of the JupyterLab extension: starts a local registry (with one image to pull),
# a JupyterLab with container kernelspecs, then Playwright in Debian's Chromium.
# Screenshots land in ui-tests/screenshots/, the logs of every step in ui-tests/.jupyter-ui/logs/.
# Usage: bash ui-tests/run.sh (after scripts/dev setup). Every tool of the project comes from
# the venv by absolute path ($MLC_VENV, default .venv), whatever the caller's PATH.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
ROOT=$(cd .. && pwd)
VENV=${MLC_VENV:-$ROOT/.venv}
PORT=${MLC_UI_PORT:-8899}
REGISTRY_PORT=${MLC_UI_REGISTRY_PORT:-5123}
WORK="$HERE/.jupyter-ui"
export MLC_UI_TOKEN=ui-test MLC_UI_URL="http://127.0.0.1:$PORT" MLC_UI_SCREENSHOTS="$HERE/screenshots"
export MLC_UI_PULL_IMAGE="127.0.0.1:$REGISTRY_PORT/ui/python:pull"

rm -rf "$WORK" && mkdir -p "$WORK/data/kernels" "$WORK/config" "$WORK/runtime" "$WORK/notebooks" "$WORK/registry" "$WORK/logs" screenshots
# step/apt_install: one line per step, its duration, and on failure the tail and path of its log.
MLC_LOGS="$WORK/logs" source "$ROOT/scripts/lib.sh"

command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v docker-registry >/dev/null 2>&1 || apt_install docker-registry
[ -d node_modules/@playwright/test ] || step "installing Playwright" npm npm install --no-audit --no-fund

export JUPYTER_DATA_DIR="$WORK/data" JUPYTER_CONFIG_DIR="$WORK/config" JUPYTER_RUNTIME_DIR="$WORK/runtime"
# This checkout's code, whichever checkout the venv was installed from (a git worktree shares
# the main one's venv): its Python package first on the path, and its built lab extension on
# JUPYTER_PATH, which comes before the venv's own share/jupyter (the data dir does not).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ ! -f "$ROOT/jupyter_mlcontainer/labextension/package.json" ]; then
  echo "No built lab extension in $ROOT/jupyter_mlcontainer/labextension: run jlpm build:prod in labextension/" >&2
  exit 1
fi
mkdir -p "$WORK/path/labextensions"
ln -s "$ROOT/jupyter_mlcontainer/labextension" "$WORK/path/labextensions/jupyter-mlcontainer"
export JUPYTER_PATH="$WORK/path${JUPYTER_PATH:+:$JUPYTER_PATH}"
served=$("$VENV/bin/python" -c "import jupyter_mlcontainer, pathlib; print(pathlib.Path(jupyter_mlcontainer.__file__).parent.parent)")
[ "$served" = "$ROOT" ] || { echo "The venv's Python imports jupyter_mlcontainer from $served, not $ROOT" >&2; exit 1; }
"$VENV/bin/jupyter-labextension" list >"$WORK/logs/labextensions.log" 2>&1
grep -q "$WORK/path/labextensions" "$WORK/logs/labextensions.log" || {
  echo "JupyterLab would not serve this checkout's lab extension; see $WORK/logs/labextensions.log" >&2; exit 1; }
# The wheelhouse "Add packages…" installs from (MLContainerExtension.extend_wheelhouse).
export MLC_UI_WHEELHOUSE="$WORK/wheelhouse"
"$VENV/bin/python" -c "import sys; from pathlib import Path; from tests.wheels import make_wheel
make_wheel(Path(sys.argv[1]), 'mlc-ui-demo', '1.0')" "$MLC_UI_WHEELHOUSE"

# Everything started here is stopped by its PID; the pulled test image goes with it. A process
# that does not stop within STOP_TIMEOUT seconds of SIGTERM is killed, and the run fails: a
# server that hangs at shutdown is a bug to see, not to wait for.
STOP_TIMEOUT=${MLC_UI_STOP_TIMEOUT:-30}
pids=()
cleanup() {
  local status=$? pid waited
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((STOP_TIMEOUT * 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "FAILED: process $pid ($(ps -o args= -p "$pid" | cut -c1-60)) did not stop within ${STOP_TIMEOUT} s of SIGTERM; killed it. Logs: $WORK/lab.log, $WORK/logs/" >&2
      kill -9 "$pid" 2>/dev/null || true
      status=1
    fi
    wait "$pid" 2>/dev/null || true
  done
  docker rmi "$MLC_UI_PULL_IMAGE" >>"$WORK/logs/cleanup.log" 2>&1 || true
  # The images "Add packages…" made: the versions of ui-env after its first.
  local derived
  derived=$("$VENV/bin/python" -c "import json, sys
spec = json.load(open(sys.argv[1]))
for v in spec['metadata']['jupyter_mlcontainer'].get('history', []):
    if v.get('parent') is not None: print(v['image_id'])" "$JUPYTER_DATA_DIR/kernels/ui-env/kernel.json" 2>/dev/null || true)
  [ -z "$derived" ] || docker rmi -f $derived >>"$WORK/logs/cleanup.log" 2>&1 || true
  local left tries=0
  while :; do  # removals the engine has under way may take a moment
    left=$(docker ps -aq --filter "label=org.jupyter-mlcontainer.server-pid=${lab_pid:-none}")
    [ -z "$left" ] || [ "$tries" -ge 20 ] && break
    sleep 0.5
    tries=$((tries + 1))
  done
  if [ -n "$left" ]; then
    echo "FAILED: the JupyterLab of this run left containers behind: $left" >&2
    docker rm -f $left >>"$WORK/logs/cleanup.log" 2>&1 || true
    status=1
  fi
  exit "$status"
}
trap cleanup EXIT

cat > "$WORK/registry/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$REGISTRY_PORT}
YAML
docker-registry serve "$WORK/registry/config.yml" >"$WORK/logs/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null && break; sleep 0.2; done
if ! curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null; then
  echo "The local registry did not start on port $REGISTRY_PORT; last lines of $WORK/logs/registry.log:" >&2
  tail -n 30 "$WORK/logs/registry.log" >&2
  exit 1
fi

push_pull_image() {  # a copy of the local image that only the registry has: the test pulls it
  docker tag mlcontainer/python:3.11 "$MLC_UI_PULL_IMAGE"
  docker push "$MLC_UI_PULL_IMAGE"
  docker rmi -f "$MLC_UI_PULL_IMAGE"
}
step "pushing $MLC_UI_PULL_IMAGE to the local registry" push push_pull_image

kernelspec() {  # kernelspec NAME DISPLAY CONFIG_JSON: a hand-written container kernelspec
  mkdir -p "$JUPYTER_DATA_DIR/kernels/$1"
  cat > "$JUPYTER_DATA_DIR/kernels/$1/kernel.json" <<JSON
{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "$2",
 "language": "python", "metadata": {"kernel_provisioner": {"provisioner_name": "mlcontainer",
 "config": $3}}}
JSON
}
# The kernel the test starts is made the way users make them (pinned, probed, with logos).
step "adding the ui-python kernelspec" add "$VENV/bin/jupyter-mlcontainer" add mlcontainer/python:3.11 \
  --name ui-python --display-name "Container Python (UI test)" --gpus none
# The default kernel as `scripts/dev lab` makes it (which keeps its own in .build/lab), and
# the welcome notebook it serves: the test opens welcome.ipynb as a new user does.
step "adding the default kernelspec" add-default "$VENV/bin/jupyter-mlcontainer" add \
  mlcontainer/python:3.11 --name mlc-python-3.11
cp "$ROOT/examples/welcome.ipynb" "$WORK/notebooks/"
# The kernel whose environment the environments spec extends (its own: the others stay as added).
step "adding the ui-env kernelspec" add-env "$VENV/bin/jupyter-mlcontainer" add mlcontainer/python:3.11 \
  --name ui-env --display-name "Container Python (environments)" --gpus none
kernelspec ui-pull "Pulled on demand (container)" "{\"image\": \"$MLC_UI_PULL_IMAGE\", \"gpus\": \"none\"}"
# This engine has no NVIDIA runtime: starting it fails with the GPU error and its advice.
kernelspec ui-gpu "GPU kernel (UI test)" '{"image": "mlcontainer/python:3.11", "gpus": "all"}'

"$VENV/bin/jupyter-lab" --no-browser --port "$PORT" --ip 127.0.0.1 --ServerApp.token=ui-test \
  --ServerApp.root_dir="$WORK/notebooks" --allow-root --MLContainerPolicy.allow_root=True \
  --MLContainerExtension.extend_wheelhouse="$MLC_UI_WHEELHOUSE" \
  --LabApp.news_url=None \
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate >"$WORK/lab.log" 2>&1 &
lab_pid=$!
pids+=($lab_pid)
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/api/status?token=ui-test" >/dev/null && break; sleep 0.5; done
if ! curl -sf "http://127.0.0.1:$PORT/api/status?token=ui-test" >/dev/null; then
  echo "JupyterLab did not start; last lines of $WORK/lab.log:" >&2
  tail -n 30 "$WORK/lab.log" >&2
  exit 1
fi

status=0
npx playwright test "$@" || status=$?
if [ $status -ne 0 ]; then
  echo "---- JupyterLab log (tail; full log: $WORK/lab.log) ----"; tail -n 60 "$WORK/lab.log"
fi
exit $status

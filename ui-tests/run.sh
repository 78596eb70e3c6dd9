#!/usr/bin/env bash
# Browser test of the JupyterLab extension: starts a local registry (with one image to pull),
# a JupyterLab with container kernelspecs, then Playwright in Debian's Chromium.
# Screenshots land in ui-tests/screenshots/. Usage: bash ui-tests/run.sh (after scripts/dev setup)
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

if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian's chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
[ -d node_modules/@playwright/test ] || npm install --no-audit --no-fund --loglevel=error >/dev/null

rm -rf "$WORK" && mkdir -p "$WORK/data/kernels" "$WORK/config" "$WORK/runtime" "$WORK/notebooks" "$WORK/registry" screenshots
export JUPYTER_DATA_DIR="$WORK/data" JUPYTER_CONFIG_DIR="$WORK/config" JUPYTER_RUNTIME_DIR="$WORK/runtime"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cat > "$WORK/registry/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$REGISTRY_PORT}
YAML
docker-registry serve "$WORK/registry/config.yml" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null && break; sleep 0.2; done
docker tag mlcontainer/python:3.11 "$MLC_UI_PULL_IMAGE"
docker push -q "$MLC_UI_PULL_IMAGE" >/dev/null
docker rmi -f "$MLC_UI_PULL_IMAGE" >/dev/null

kernelspec() {  # kernelspec NAME DISPLAY IMAGE
  mkdir -p "$JUPYTER_DATA_DIR/kernels/$1"
  cat > "$JUPYTER_DATA_DIR/kernels/$1/kernel.json" <<JSON
{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "$2",
 "language": "python", "metadata": {"kernel_provisioner": {"provisioner_name": "mlcontainer",
 "config": {"image": "$3", "gpus": "none"}}}}
JSON
}
# The kernel the test starts is made the way users make them (pinned, probed, with logos).
"$VENV/bin/jupyter" mlcontainer add mlcontainer/python:3.11 --name ui-python \
  --display-name "Container Python (UI test)" --gpus none >/dev/null 2>&1
kernelspec ui-pull "Pulled on demand (container)" "$MLC_UI_PULL_IMAGE"

"$VENV/bin/jupyter" lab --no-browser --port "$PORT" --ip 127.0.0.1 --ServerApp.token=ui-test \
  --ServerApp.root_dir="$WORK/notebooks" --allow-root --LabApp.news_url=None \
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate >"$WORK/lab.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/api/status?token=ui-test" >/dev/null && break; sleep 0.5; done

status=0
npx playwright test || status=$?
if [ $status -ne 0 ]; then
  echo "---- JupyterLab log (tail) ----"; tail -n 60 "$WORK/lab.log"
fi
exit $status

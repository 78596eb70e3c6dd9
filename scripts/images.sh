#!/usr/bin/env bash
# Build the kernel images this repository ships, each only when its tag is missing:
#   mlcontainer-base:bookworm       Debian 12 + Python 3.11, no ipykernel (built with debootstrap;
#                                   stands in for python:3.11-slim where no registry is reachable)
#   mlcontainer/python:3.11         the default kernel image (ipykernel)   images/python
#   mlcontainer/pytorch-cpu:2.13.0  PyTorch CPU kernel image                images/pytorch-cpu
#     (each folder holds a pinned requirements.txt; images/Dockerfile is shared; built offline
#      from a wheelhouse, with images/ipykernel.lock as constraints)
#   mlcontainer/pytorch-gpu:2.6.0-cuda12.4      images/pytorch-gpu/Dockerfile (needs a registry)
#   mlcontainer/tensorflow-gpu:2.18.0           images/tensorflow-gpu/Dockerfile (needs a registry)
#     (bases pinned by digest, ipykernel from images/ipykernel.lock with hashes)
# Usage: scripts/images.sh [python] [pytorch-cpu] [pytorch-gpu] [tensorflow-gpu]
#        (no argument: python and pytorch-cpu, the images the tests use)
# BASE=python:3.11-slim-bookworm scripts/images.sh   builds the CPU ones on a registry image.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_TAG=mlcontainer-base:bookworm
PY_VERSION=3.11
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(python pytorch-cpu)

have() { docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
  have "$BASE_TAG" && return 0
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "==> installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  local rootfs
  rootfs=$(mktemp -d /tmp/mlc-rootfs.XXXXXX)
  echo "==> debootstrap bookworm into $rootfs (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >/tmp/mlc-debootstrap.log 2>&1 \
    || { tail -n 20 /tmp/mlc-debootstrap.log >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
  rm -rf "$rootfs"
}

build_image() {  # build_image DIR TAG DESCRIPTION
  local dir=$1 tag=$2 description=$3 base=${BASE:-}
  have "$tag" && { echo "==> $tag present"; return 0; }
  if [ -z "$base" ]; then build_base; base=$BASE_TAG; fi
  local ctx
  ctx=$(mktemp -d /tmp/mlc-build.XXXXXX)
  cp images/Dockerfile "images/$dir/requirements.txt" "$ctx/"
  sed 's/ --hash=.*//' images/ipykernel.lock > "$ctx/constraints.txt"
  echo "==> downloading wheels for $tag"
  python3 -m pip download -q --dest "$ctx/wheels" --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform linux_x86_64 \
    -r "$ctx/requirements.txt" -c "$ctx/constraints.txt"
  echo "==> building $tag"
  docker build -q --build-arg "BASE=$base" -t "$tag" \
    --label "org.opencontainers.image.title=$tag" \
    --label "org.opencontainers.image.description=$description" \
    "$ctx" >/dev/null
  rm -rf "$ctx"
}

build_gpu_image() {  # build_gpu_image DIR TAG: on a registry base pinned in the Dockerfile
  local dir=$1 tag=$2
  have "$tag" && { echo "==> $tag present"; return 0; }
  echo "==> building $tag (pulls its base from the registry)"
  docker build -q -f "images/$dir/Dockerfile" -t "$tag" images >/dev/null
}

for name in "${want[@]}"; do
  case "$name" in
    base) build_base ;;
    python) build_image python mlcontainer/python:3.11 "Python 3.11 with ipykernel" ;;
    pytorch-cpu) build_image pytorch-cpu mlcontainer/pytorch-cpu:2.13.0 "PyTorch 2.13 (CPU) with ipykernel" ;;
    pytorch-gpu) build_gpu_image pytorch-gpu mlcontainer/pytorch-gpu:2.6.0-cuda12.4 ;;
    tensorflow-gpu) build_gpu_image tensorflow-gpu mlcontainer/tensorflow-gpu:2.18.0 ;;
    *) echo "unknown image '$name' (python, pytorch-cpu, pytorch-gpu, tensorflow-gpu, base)" >&2; exit 2 ;;
  esac
done

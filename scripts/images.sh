#!/usr/bin/env bash
# Build the kernel images this repository ships, each when its tag is missing or its inputs
# (Dockerfile, requirements, lock file, base image) changed since it was built:
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
# Logs: .build/logs/image-*.log
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$MLC_ROOT"

BASE_TAG=mlcontainer-base:bookworm
PY_VERSION=3.11
INPUTS_LABEL=org.jupyter-mlcontainer.inputs
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(python pytorch-cpu)

# Temporary folders of this run, removed however it ends.
tmpdirs=()
cleanup() { [ ${#tmpdirs[@]} -eq 0 ] || rm -rf "${tmpdirs[@]}"; }
trap cleanup EXIT

have() { docker image inspect "$1" >/dev/null 2>&1; }

# The hash of an image's inputs, recorded as a label: a changed input means a rebuild.
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }
built_from() {
  docker image inspect -f "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$1" 2>/dev/null || true
}

debootstrap_base() {  # debootstrap_base ROOTFS
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$1" http://deb.debian.org/debian
  rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*
  tar -C "$1" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["python3"]' - "$BASE_TAG"
}

build_base() {
  have "$BASE_TAG" && return 0
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local rootfs
  rootfs=$(mktemp -d /tmp/mlc-rootfs.XXXXXX)
  tmpdirs+=("$rootfs")
  step "building $BASE_TAG with debootstrap (about a minute)" image-base debootstrap_base "$rootfs"
}

download_wheels() {  # download_wheels CONTEXT
  python3 -m pip download --dest "$1/wheels" --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform linux_x86_64 \
    -r "$1/requirements.txt" -c "$1/constraints.txt"
}

build_image() {  # build_image DIR TAG DESCRIPTION
  local dir=$1 tag=$2 description=$3 base=${BASE:-}
  if [ -z "$base" ]; then build_base; base=$BASE_TAG; fi
  local base_id hash
  base_id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null || echo "$base")
  hash=$(inputs_hash images/Dockerfile "images/$dir/requirements.txt" images/ipykernel.lock \
    <(echo "$base_id"))
  if [ "$(built_from "$tag")" = "$hash" ]; then
    echo "==> $tag is up to date"
    return 0
  fi
  local old_id ctx log=image-${dir}
  old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  [ -n "$old_id" ] && echo "==> $tag: its inputs changed since it was built; rebuilding"
  ctx=$(mktemp -d /tmp/mlc-build.XXXXXX)
  tmpdirs+=("$ctx")
  cp images/Dockerfile "images/$dir/requirements.txt" "$ctx/"
  sed 's/ --hash=.*//' images/ipykernel.lock >"$ctx/constraints.txt"
  step "downloading wheels for $tag" "$log-wheels" download_wheels "$ctx"
  step "building $tag" "$log" docker build --build-arg "BASE=$base" -t "$tag" \
    --label "org.opencontainers.image.title=$tag" \
    --label "org.opencontainers.image.description=$description" \
    --label "$INPUTS_LABEL=$hash" \
    "$ctx"
  drop_if_untagged "$old_id"
}

drop_if_untagged() {  # the image a rebuild replaced, unless something still uses it
  [ -n "$1" ] || return 0
  if [ -z "$(docker image inspect -f '{{join .RepoTags ""}}' "$1" 2>/dev/null || echo keep)" ]; then
    docker rmi "$1" >>"$LOGS/images-removed.log" 2>&1 || echo "    (kept the old image ${1:7:12}: still in use)"
  fi
}

build_gpu_image() {  # build_gpu_image DIR TAG: on a registry base pinned in the Dockerfile
  local dir=$1 tag=$2 hash
  hash=$(inputs_hash "images/$dir/Dockerfile" images/ipykernel.lock)
  if [ "$(built_from "$tag")" = "$hash" ]; then
    echo "==> $tag is up to date"
    return 0
  fi
  step "building $tag (pulls its base from the registry)" "image-$dir" \
    docker build -f "images/$dir/Dockerfile" --label "$INPUTS_LABEL=$hash" -t "$tag" images
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

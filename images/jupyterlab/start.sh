#!/bin/sh
# JupyterLab in its container (compose.yaml): make the kernel that MLC_KERNEL_IMAGE names (a
# pinned kernelspec, probed on the host's engine), then serve the notebooks mounted at
# /home/jovyan/work. Kernels are sibling containers on the kernels' network, reached at their
# own addresses, their traffic CurveZMQ-encrypted (other kernels share that network); their
# folders are this container's mounts, translated to the host's paths.
set -eu
if [ -n "${MLC_KERNEL_IMAGE:-}" ]; then
  jupyter mlcontainer add "$MLC_KERNEL_IMAGE" --name "${MLC_KERNEL_NAME:-python-container}" \
    --gpus "${MLC_KERNEL_GPUS:-auto}" --sys-prefix --replace
fi
# Set a token of your choice with MLC_TOKEN; otherwise Jupyter makes one (see its log).
[ -n "${MLC_TOKEN:-}" ] && set -- --IdentityProvider.token="$MLC_TOKEN" "$@"
exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root \
  --ServerApp.root_dir=/home/jovyan/work \
  --MLContainerProvisioner.bridge_network="${MLC_KERNEL_NETWORK:-mlc-compose-kernels}" \
  --MLContainerProvisioner.bridge_access=address \
  --KernelManager.transport_encryption=auto \
  "$@"

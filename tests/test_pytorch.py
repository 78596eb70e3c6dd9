"""A real PyTorch (CPU) container kernel: tensors and a DataLoader with worker processes."""

from __future__ import annotations

import pytest

from .conftest import TORCH_IMAGE, execute, running_kernel

pytestmark = pytest.mark.engine

CODE = """
import torch
from torch.utils.data import DataLoader, TensorDataset

a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
print(torch.__version__.split('+')[0], float((a @ a.T).trace()))

data = TensorDataset(torch.randn(4096, 64), torch.randint(0, 2, (4096,)))
loader = DataLoader(data, batch_size=256, num_workers=2, shuffle=True)
seen = sum(len(x) for x, _ in loader)
import os
st = os.statvfs('/dev/shm')
print(seen, st.f_blocks * st.f_frsize // 2**20)
"""


async def test_pytorch_kernel_with_dataloader_workers(kernelspec, notebook_dir):
    name = kernelspec("torch", image=TORCH_IMAGE)
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, reply = await execute(kc, CODE, timeout=180)
        assert reply["status"] == "ok", out
        first, second = out.strip().splitlines()[-2:]
        version, trace = first.split()
        assert version == "2.13.0"
        assert float(trace) == 506.0
        seen, shm_mb = map(int, second.split())
        assert seen == 4096
        assert shm_mb == 2048  # the shm_size default, not Docker's 64 MB

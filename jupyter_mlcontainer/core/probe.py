"""What is inside an image: Python, ipykernel, ML frameworks, CUDA, OS.

The agent's probe (agent/probe.py) runs once inside a throw-away container of the image (no
network, no mounts, the image's own Python) and prints one JSON line; :class:`ImageProbe`
reads it. The
result is recorded in kernel.json, names the kernel in the dropdown and tells the provisioner
whether the image brings its own ipykernel.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..agent.protocol import PROBE_MARKER


@dataclass(frozen=True)
class ImageProbe:
    """The probe's findings (None: not present)."""

    python: str
    python_version: str
    implementation: str = "cpython"
    machine: str = "x86_64"
    libc: str | None = None
    ipykernel: str | None = None
    numpy: str | None = None
    torch: str | None = None
    torch_cuda: str | None = None
    tensorflow: str | None = None
    jax: str | None = None
    cuda: str | None = None
    cudnn: str | None = None
    os: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_output(cls, output: str) -> ImageProbe:
        """Parse the probe's output (container log: banners and warnings may surround it)."""
        for line in output.splitlines():
            if line.startswith(PROBE_MARKER):
                return cls.from_dict(json.loads(line[len(PROBE_MARKER) :]))
        msg = f"The image probe printed no result; its output was:\n{output.strip()[-2000:]}"
        raise ValueError(msg)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageProbe:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return {k: v for k, v in data.items() if v is not None}

    @property
    def python_minor(self) -> str:
        """``3.11`` of ``3.11.2``."""
        return ".".join(self.python_version.split(".")[:2])

    @property
    def cuda_version(self) -> str | None:
        return self.torch_cuda or self.cuda

    def framework(self) -> str:
        """The headline framework and its short version: ``PyTorch 2.13``."""
        if self.torch:
            return f"PyTorch {_short(self.torch)}"
        if self.tensorflow:
            return f"TensorFlow {_short(self.tensorflow)}"
        if self.jax:
            return f"JAX {_short(self.jax)}"
        return "Python"

    def display_name(self, gpus_requested: bool = False) -> str:
        """A dropdown name: ``PyTorch 2.13 · CUDA 12.4 · Python 3.11``.

        ``gpus_requested``: the kernel asks for GPUs explicitly, so it is never called "CPU".
        """
        cuda = self.cuda_version
        device = f"CUDA {_short(cuda)}" if cuda else ("GPU" if gpus_requested else "CPU")
        python = f"Python {self.python_minor}"
        framework = self.framework()
        if framework == "Python":
            return f"{python} · {device}"
        return f"{framework} · {device} · {python}"

    def logo_kind(self) -> str:
        if self.torch:
            return "pytorch"
        if self.tensorflow:
            return "tensorflow"
        return "python"


def _short(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])

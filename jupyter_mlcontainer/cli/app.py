"""``jupyter mlcontainer``: the command and its subcommands."""

from __future__ import annotations

import logging

from jupyter_core.application import JupyterApp

from .._version import __version__
from .commands import AddApp, ExportApp, ListApp, PruneApp, PullApp
from .doctor import DoctorApp


class MLContainerApp(JupyterApp):
    name = "jupyter-mlcontainer"
    version = __version__
    description = """Run Jupyter kernels inside pinned ML containers.

    Turn an image into a pinned, shareable kernelspec with `add`; see them with `list`;
    fetch their images with `pull`; share one with `export`; check the setup with `doctor`;
    remove caches no kernel needs with `prune`; execute a notebook headless with `run`."""
    examples = """
    jupyter mlcontainer add pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime --gpus all
    jupyter mlcontainer list
    jupyter mlcontainer export mlc-pytorch-2.5.1-cuda12.4-cudnn9-runtime ./team-kernel
    jupyter mlcontainer doctor
    """
    subcommands = {
        "add": (AddApp, AddApp.description.splitlines()[0]),
        "list": (ListApp, ListApp.description.splitlines()[0]),
        "pull": (PullApp, PullApp.description.splitlines()[0]),
        "export": (ExportApp, ExportApp.description.splitlines()[0]),
        "prune": (PruneApp, PruneApp.description.splitlines()[0]),
        "doctor": (DoctorApp, DoctorApp.description.splitlines()[0]),
        "run": (
            "jupyter_mlcontainer.cli.run.RunApp",
            "Execute a notebook headless in a container kernel, with a record of the environment.",
        ),
    }

    def start(self) -> None:
        if self.subapp is None:
            print(f"{self.description}\n\nSubcommands: {', '.join(self.subcommands)}")
            print("Run `jupyter mlcontainer SUBCOMMAND --help` for the options of each.")
            self.exit(1)
        else:
            self.subapp.start()


def main() -> None:
    logging.getLogger("docker").setLevel(logging.WARNING)
    MLContainerApp.launch_instance()


if __name__ == "__main__":
    main()

"""``jupyter mlcontainer``: the command and its subcommands."""

from __future__ import annotations

import logging

from jupyter_core.application import JupyterApp

from .._version import __version__
from .base import summary
from .commands import AddApp, ExportApp, ListApp, PruneApp, PullApp
from .doctor import DoctorApp
from .gateway import GatewayApp, GatewayTokenApp


class MLContainerApp(JupyterApp):
    name = "jupyter-mlcontainer"
    version = __version__
    description = """Run Jupyter kernels inside pinned ML containers.

    Turn an image into a pinned, shareable kernelspec with `add`; see them with `list`;
    fetch their images with `pull`; share one with `export`; add packages to one as a new
    pinned version with `extend` (`versions`, `rollback`, `diff`); check the setup with `doctor`;
    remove caches no kernel needs with `prune`; execute a notebook headless with `run`; serve
    container kernels to a team from one GPU host with `gateway`."""
    examples = """
    jupyter mlcontainer add pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime --gpus all
    jupyter mlcontainer list
    jupyter mlcontainer export mlc-pytorch-2.5.1-cuda12.4-cudnn9-runtime ./team-kernel
    jupyter mlcontainer doctor
    """
    subcommands = {
        "add": (AddApp, summary(AddApp.description)),
        "list": (ListApp, summary(ListApp.description)),
        "pull": (PullApp, summary(PullApp.description)),
        "export": (ExportApp, summary(ExportApp.description)),
        "prune": (PruneApp, summary(PruneApp.description)),
        "doctor": (DoctorApp, summary(DoctorApp.description)),
        "gateway": (GatewayApp, summary(GatewayApp.description)),
        "gateway-token": (GatewayTokenApp, summary(GatewayTokenApp.description)),
        # Imported when used (nbclient and friends); tests/test_cli.py checks the summary.
        "extend": (
            "jupyter_mlcontainer.cli.environments.ExtendApp",
            "Add packages to KERNEL's environment as a new pinned version.",
        ),
        "versions": (
            "jupyter_mlcontainer.cli.environments.VersionsApp",
            "List KERNEL's versions: when, by whom, what each added; * is current.",
        ),
        "rollback": (
            "jupyter_mlcontainer.cli.environments.RollbackApp",
            "Make an earlier version of KERNEL current again (default: the previous).",
        ),
        "diff": (
            "jupyter_mlcontainer.cli.environments.DiffApp",
            "How two environments differ: KERNEL [V1] [V2], or NB1.ipynb NB2.ipynb.",
        ),
        "run": (
            "jupyter_mlcontainer.cli.run.RunApp",
            "Execute NOTEBOOK headless in a container kernel; record its environment.",
        ),
    }

    def start(self) -> None:
        if self.subapp is None:
            print(f"{summary(self.description)}\n\nSubcommands:")
            width = max(len(name) for name in self.subcommands)
            for name, (_, text) in self.subcommands.items():
                print(f"  {name:<{width}}  {text}")
            print("\nRun `jupyter mlcontainer SUBCOMMAND --help` for the options of each.")
            self.exit(1)
        else:
            self.subapp.start()


def main() -> None:
    logging.getLogger("docker").setLevel(logging.WARNING)
    MLContainerApp.launch_instance()


if __name__ == "__main__":
    main()

"""``jupyter mlcontainer run``: execute a notebook headless in a container kernel.

The output notebook carries a record of the environment that produced it (image reference,
id and digests, what the image probe found, GPUs requested and granted, start time and
duration) under ``metadata.jupyter_mlcontainer.run``. The output is written even when a cell
fails or the kernel dies, and the exit status says whether the run succeeded.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import secrets
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from traitlets import Bool, Int, TraitError, Unicode

from ..core import backend as backends
from ..core import environments as envs
from ..core import kernelspec as ks
from ..core.backend import ContainerState
from ..core.exceptions import ConfigurationError, MLContainerError, shows_debug
from ..core.reference import check_reference
from ..kernel.provisioner import MLContainerProvisioner
from ..kernel.settings import ContainerKernelSettings
from .base import Command

RECORD_KEY = ks.METADATA_KEY
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
_TRANSIENT_KERNEL = "mlc-run"


def parse_value(text: str) -> Any:
    """``-p`` values: Python literals (numbers, lists, True, None, quoted strings), else text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def inject_parameters(nb: Any, parameters: dict[str, Any]) -> None:
    """Add a cell assigning ``parameters`` after the cell tagged ``parameters`` (papermill's
    convention), or first when there is none; a previous injected cell is replaced."""
    if not parameters:
        return
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    position = 0
    for index, existing in enumerate(nb.cells):
        if PARAMETERS_TAG in existing.get("metadata", {}).get("tags", []):
            position = index + 1
            break
    nb.cells.insert(position, cell)


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunApp(Command):
    name = "jupyter-mlcontainer-run"
    description = """Execute NOTEBOOK headless in a container kernel; record its environment.

    Writes the output notebook (NOTEBOOK.run.ipynb, or --output) whatever happens, with the
    image, its id and digests, what the image holds and the GPUs the kernel got under
    metadata.jupyter_mlcontainer.run. Exit status 0 only when every cell ran. Jupyter
    configuration reaches the kernel as in a server, from config files or the command line:
    --MLContainerPolicy.allow_root=True, --MLContainerProvisioner.uid=1000 (a default that
    the kernelspec's own settings override)."""
    examples = """
    jupyter mlcontainer run train.ipynb --kernel mlc-pytorch-2.6-cuda12.4 -o out/train.ipynb
    jupyter mlcontainer run report.ipynb --image python:3.11-slim -p epochs 3 -p lr 0.01
    """

    kernel = Unicode(
        None,
        allow_none=True,
        help="Container kernelspec to run with (default: the one the notebook names).",
    ).tag(config=True)
    image = Unicode(None, allow_none=True, help="Image to run with (no kernelspec needed).").tag(
        config=True
    )
    gpus = Unicode("auto", help="GPUs with --image: auto, all, none, a count, ids.").tag(
        config=True
    )
    output = Unicode(
        None, allow_none=True, help="Output notebook (default: NOTEBOOK.run.ipynb)."
    ).tag(config=True)
    as_recorded = Bool(
        False,
        help="Run in exactly the image the notebook recorded (its digest or image id), even "
        "after its kernelspec moved on to another version.",
    ).tag(config=True)
    timeout = Int(-1, help="Seconds a cell may run (-1: no limit).").tag(config=True)
    startup_timeout = Int(60, help="Seconds for the kernel to answer once its container runs.").tag(
        config=True
    )

    aliases = {
        "kernel": "RunApp.kernel",
        "image": "RunApp.image",
        "gpus": "RunApp.gpus",
        "output": "RunApp.output",
        "o": "RunApp.output",
        "timeout": "RunApp.timeout",
        "startup-timeout": "RunApp.startup_timeout",
    }
    flags = {
        "as-recorded": (
            {"RunApp": {"as_recorded": True}},
            "Run in exactly the image the notebook recorded, even after its kernel moved on.",
        ),
    }

    parameters: dict[str, Any]

    def parse_command_line(self, argv: list[str] | None = None) -> None:
        """Take ``-p NAME VALUE`` pairs out before traitlets sees the arguments."""
        argv = list(sys.argv[1:] if argv is None else argv)
        self.parameters = {}
        rest = []
        i = 0
        while i < len(argv):
            if argv[i] in ("-p", "--parameter"):
                if i + 2 >= len(argv):
                    self.fail(f"{argv[i]} needs a NAME and a VALUE")
                name, value = argv[i + 1], argv[i + 2]
                if not name.isidentifier():
                    self.fail(f"parameter name {name!r} is not a Python identifier")
                self.parameters[name] = parse_value(value)
                i += 3
            else:
                rest.append(argv[i])
                i += 1
        super().parse_command_line(rest)

    def emit_alias_help(self) -> Generator[str, None, None]:
        """``-p`` is parsed by hand (it takes two values), so its help is written by hand."""
        yield "-p NAME VALUE, --parameter NAME VALUE"
        yield "    Set a notebook parameter (repeatable): VALUE is a Python literal (3, 0.1,"
        yield "    [1, 2], True, 'text') or else plain text. The assignments go into a cell after"
        yield "    the cell tagged 'parameters' (papermill's convention), or first."
        yield from super().emit_alias_help()

    def start(self) -> None:
        if len(self.extra_args) != 1:
            self.fail("give exactly one NOTEBOOK")
        if self.kernel and self.image:
            self.fail("give either --kernel NAME or --image IMAGE, not both")
        path = Path(self.extra_args[0])
        if not path.is_file():
            self.fail(f"no notebook at {path}")
        nb = nbformat.read(str(path), as_version=4)
        self.recorded_image = ""
        if self.as_recorded:
            if self.image:
                self.fail("give either --as-recorded or --image IMAGE, not both")
            try:
                kernel, self.recorded_image = recorded_environment(nb.metadata, path)
            except ConfigurationError as e:
                self.fail(str(e))
            self.kernel = self.kernel or kernel
        if not self.kernel and not self.image:
            # The kernel the notebook was saved with, as nbconvert and papermill do.
            self.kernel = nb.metadata.get("kernelspec", {}).get("name")
            if not self.kernel:
                self.fail("the notebook names no kernel: give --kernel NAME or --image IMAGE")
        if self.recorded_image:
            self.run(self._obtain_recorded())
        inject_parameters(nb, self.parameters)
        output = Path(self.output) if self.output else path.with_suffix(".run.ipynb")
        try:
            record = self.run(self.run_and_write(nb, path, output, str(path.resolve().parent)))
        except (KeyboardInterrupt, asyncio.CancelledError):  # before the kernel started
            record = {"status": "interrupted"}
        if record["status"] == "interrupted":
            # run_and_write wrote what ran before it was interrupted.
            print(f"interrupted; output (with what ran): {output}", file=sys.stderr)
            self.exit(130)
        if record.get("drift"):
            drift = envs.PackageDiff.from_json(record["drift"])
            print(f"warning: {envs.describe_drift(drift, str(self.kernel))}", file=sys.stderr)
        if record["status"] == "ok":
            print(
                f"{path} ran in {record['duration_s']:.1f} s in {record['image']}; output: {output}"
            )
            return
        print(f"error: {path}: {failure(record)}", file=sys.stderr)
        print(f"output (with what ran): {output}", file=sys.stderr)
        self.exit(1)

    async def run_and_write(
        self, nb: Any, path: Path, output: Path, workdir: str
    ) -> dict[str, Any]:
        """Execute, then write the output notebook whatever happened (atomically)."""
        record: dict[str, Any] = {"started": _utc_now(), "notebook": str(path)}
        if self.recorded_image:
            record["as_recorded"] = True
        try:
            await self.execute(nb, workdir, record)
        except asyncio.CancelledError:  # Ctrl-C (see execute)
            record["status"], record["reason"] = "interrupted", "interrupted (Ctrl-C)"
            raise  # asyncio.run turns it into KeyboardInterrupt: start() exits 130
        finally:
            nb.metadata[RECORD_KEY] = {**nb.metadata.get(RECORD_KEY, {}), "run": record}
            _write_atomically(nb, output)
        return record

    def _kernel_manager(self, tmp: str) -> tuple[AsyncKernelManager, dict[str, Any]]:
        if self.image:
            # The kernel's own validators: what `run` accepts, the kernel starts with.
            try:
                check_reference(self.image)
                ContainerKernelSettings(image=self.image, gpus=self.gpus)
            except (ValueError, TraitError) as e:
                self.fail(str(e))
            config = {"image": self.image, "gpus": self.gpus}
            spec: dict[str, Any] = {
                "argv": list(ks.KERNEL_ARGV),
                "display_name": self.image,
                "language": "python",
                "metadata": {
                    "kernel_provisioner": {
                        "provisioner_name": ks.PROVISIONER_NAME,
                        "config": config,
                    }
                },
            }
            folder = Path(tmp) / _TRANSIENT_KERNEL
            folder.mkdir()
            (folder / "kernel.json").write_text(json.dumps(spec))
            manager = KernelSpecManager(parent=self, kernel_dirs=[tmp])
            return self._manager(manager, _TRANSIENT_KERNEL), spec
        manager = KernelSpecManager(parent=self)
        name = str(self.kernel)
        try:
            spec_obj = manager.get_kernel_spec(name)
        except Exception:  # NoSuchKernel and friends
            self.fail(f"no kernelspec named {self.kernel!r} (see `jupyter mlcontainer list`)")
        spec = spec_obj.to_dict()
        if ks.provisioner_of(spec) != ks.PROVISIONER_NAME:
            self.fail(f"kernelspec {self.kernel!r} is not a container kernel")
        if self.recorded_image:
            # The kernelspec's settings, with the image the notebook recorded.
            spec["metadata"]["kernel_provisioner"]["config"]["image"] = self.recorded_image
            folder = Path(tmp) / name
            folder.mkdir()
            (folder / "kernel.json").write_text(json.dumps(spec))
            recorded_specs = KernelSpecManager(parent=self, kernel_dirs=[tmp])
            return self._manager(recorded_specs, name), spec
        return self._manager(manager, name), spec

    def _manager(self, specs: KernelSpecManager, name: str) -> AsyncKernelManager:
        """A kernel manager under this app, so that the configuration given to ``run`` (its
        command line, config files) reaches the kernel's provisioner and the admin policy,
        as a server's does: ``--MLContainerPolicy.allow_root=True``."""
        return AsyncKernelManager(parent=self, kernel_spec_manager=specs, kernel_name=name)

    async def execute(self, nb: Any, workdir: str, record: dict[str, Any]) -> None:
        """Run ``nb`` in place, filling ``record`` (status, reason, environment); the kernel
        and its container are shut down however the run ends."""
        container: list[ContainerState] = []  # the kernel's, once it runs
        if self.parameters:
            record["parameters"] = self.parameters
        with tempfile.TemporaryDirectory() as tmp, _reported_once(self.log):
            km, spec = self._kernel_manager(tmp)
            config = ks.provisioner_config(spec)
            record["kernel"] = self.kernel or None
            record["image"] = config.get("image")
            record["gpus_requested"] = config.get("gpus", "auto")

            main = asyncio.current_task()
            interrupted = asyncio.Event()

            def on_ctrl_c() -> None:
                interrupted.set()
                if main is not None:
                    main.cancel()

            async def on_start(**_: Any) -> None:
                # Ctrl-C stops the run here, and the kernel with it (in the `finally` below);
                # nbclient's own handler would stop the kernel and report it dead.
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, on_ctrl_c)
                provisioner = km.provisioner
                if isinstance(provisioner, MLContainerProvisioner) and provisioner.container_id:
                    state = await provisioner.container_backend.inspect(provisioner.container_id)
                    container.extend([state] if state else [])
                granted = getattr(provisioner, "granted_gpus", None)
                record["gpus_granted"] = granted.describe() if granted is not None else None

            async def on_cell_start(cell_index: int, **_: Any) -> None:
                record["cell"] = cell_index + 1  # as a reader counts the output's cells

            client = NotebookClient(
                nb,
                parent=self,
                km=km,
                kernel_name=km.kernel_name,
                timeout=None if self.timeout < 0 else self.timeout,
                startup_timeout=self.startup_timeout,
                resources={"metadata": {"path": workdir}},
                on_notebook_start=on_start,
                on_cell_start=on_cell_start,
            )
            started = time.monotonic()
            status, reason = "ok", None
            try:
                await client.async_execute(cwd=workdir)
            except CellTimeoutError:
                status, reason = "timeout", f"timed out after {self.timeout} s (--timeout)"
            except CellExecutionError as e:
                status = "error"
                reason = f"{e.ename}: {e.evalue}" if e.ename else _last_line(str(e))
            except DeadKernelError:
                exit_ = getattr(km.provisioner, "last_exit", None)
                status, reason = "kernel died", exit_.message() if exit_ else "the kernel died"
            except MLContainerError as e:
                status, reason = "kernel did not start", str(e)
            except asyncio.CancelledError:
                if not interrupted.is_set():
                    raise
            finally:
                if interrupted.is_set():  # nbclient reports Ctrl-C as a dead kernel
                    status, reason = "interrupted", "interrupted (Ctrl-C)"
                record["duration_s"] = round(time.monotonic() - started, 3)
                await _record_drift(km.provisioner, record)
                await _close(client, km, now=status != "ok")
        record["status"] = status
        if reason:
            record["reason"] = reason
        # The kernel's own backend (its docker_host), not this shell's default one.
        backend = (
            km.provisioner.container_backend
            if isinstance(km.provisioner, MLContainerProvisioner)
            else backends.connect(str(config.get("docker_host") or "") or None)
        )
        record.update(await self._image_record(backend, spec, container[0] if container else None))

    async def _obtain_recorded(self) -> None:
        """The recorded image on the kernel's engine (pulled by digest if need be), or a
        clear refusal before anything runs or is written."""
        try:
            spec = KernelSpecManager(parent=self).get_kernel_spec(str(self.kernel)).to_dict()
        except Exception:  # NoSuchKernel and friends
            self.fail(f"no kernelspec named {self.kernel!r} (see `jupyter mlcontainer list`)")
        config = ks.provisioner_config(spec)
        backend = backends.connect(str(config.get("docker_host") or "") or None)
        try:
            await backend.obtain_image(self.recorded_image, "missing", self.log)
        except MLContainerError as e:
            self.fail(
                f"the image this notebook recorded, {self.recorded_image}, can no longer be "
                f"had: {e}\nRun it with its kernel's current version instead (without "
                "--as-recorded), or load that image onto the engine."
            )

    async def _image_record(
        self, backend: backends.Backend, spec: dict[str, Any], container: ContainerState | None
    ) -> dict[str, Any]:
        """Image id, digests and probe of the image the kernel really ran in."""
        out: dict[str, Any] = {}
        if container is None or not container.image_id:
            return out
        image_id = container.image_id
        out["container_device_requests"] = list(container.device_requests)
        if not image_id:
            return out
        out["image_id"] = image_id
        try:
            inspect = await backend.image(image_id)
            if inspect is not None:
                # What the kernel details (REST, sidebar) and saved notebooks say, too.
                reference = str(ks.provisioner_config(spec).get("image") or "")
                details = ks.image_details(reference, dict(inspect))
                out.update(digest=details["digest"], repo_digests=details["repo_digests"])
                version = envs.version_by_image(spec, reference, image_id)
                if version is not None and ks.recorded(spec):
                    out["version"] = version.number
            else:
                out["repo_digests"] = []
            probe = ks.recorded(spec).get("probe")
            if not probe:
                probe = (await backend.probe_image(image_id)).to_dict()
            out["probe"] = probe
        except MLContainerError as e:
            out["probe_error"] = str(e)
        return out


class _StartFailureLog(logging.Filter):
    """Drops jupyter_client's own log of a kernel start failure (it logs the exception, then
    raises it): ``run`` reports ours in its error line, which would otherwise say it twice.
    With --debug the record and its traceback stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, MLContainerError):
            return True
        return shows_debug(logging.getLogger(record.name))


@contextlib.contextmanager
def _reported_once(log: Any) -> Generator[None, None, None]:
    """While a run goes on, our errors that ``run`` reports itself are not logged as well."""
    logger = getattr(log, "logger", log)
    said = _StartFailureLog()
    logger.addFilter(said)
    try:
        yield
    finally:
        logger.removeFilter(said)


async def _close(client: NotebookClient, km: AsyncKernelManager, now: bool) -> None:
    """Stop the kernel client, then the kernel, then the client's ZMQ context.

    nbclient leaves both to us when it is given a kernel manager. A client garbage-collected
    with its channels running warns "Could not destroy zmq context" and leaves its context
    (made by the client itself: ``km.client()`` shares none) to the interpreter's exit.
    """
    kc, client.kc = client.kc, None
    if kc is not None:
        kc.stop_channels()
    # nbclient shuts down only the kernels it created; this one is ours.
    if km.has_kernel:
        await km.shutdown_kernel(now=now)
    if kc is not None and not kc.context.closed:
        kc.context.destroy(linger=0)


def recorded_environment(metadata: Any, path: Path) -> tuple[str, str]:
    """The kernel and the image (digest, else image id) a notebook recorded: a server's save
    (``environment``) or an earlier ``run``. ConfigurationError: it recorded none."""
    record = dict(metadata.get(RECORD_KEY) or {})
    for entry in (record.get("environment"), record.get("run")):
        if not entry:
            continue
        image = entry.get("digest") or entry.get("image_id")
        if image:
            return str(entry.get("kernel_name") or entry.get("kernel") or ""), str(image)
    msg = (
        f"{path} records no image to run as recorded: it was never saved from a container "
        "kernel or run with `jupyter mlcontainer run`. Run it without --as-recorded."
    )
    raise ConfigurationError(msg)


async def _record_drift(provisioner: Any, record: dict[str, Any]) -> None:
    """What the notebook installed into its kernel's container (``%pip install``), in the
    run record: the image alone would not reproduce the run."""
    if not isinstance(provisioner, MLContainerProvisioner) or not provisioner.container_id:
        return
    try:
        drift = await provisioner.refresh_drift()
    except MLContainerError:
        return
    if drift:
        record["drift"] = drift.to_json()


def failure(record: dict[str, Any]) -> str:
    """One line (and the death's details) for a run that failed: what failed, and where."""
    status, reason, cell = record["status"], record.get("reason"), record.get("cell")
    where = f"cell {cell}" if cell else "the notebook"
    if status == "error":
        return f"{where} raised {reason}"
    if status == "timeout":
        return f"{where} {reason}"
    if status == "kernel died":
        return f"the kernel died while running {where}: {reason}"
    return f"{status}: {reason}"


def _write_atomically(nb: Any, output: Path) -> None:
    """Write ``nb`` to ``output`` so that a reader never sees half a notebook.

    The file gets the mode that writing it in place would give it: the mode of the file it
    replaces, else what a new file gets under the umask (0644 under 022, 0600 under 077).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep: int | None = stat.S_IMODE(output.stat().st_mode)
    except FileNotFoundError:
        keep = None
    # Not mkstemp, whose files are 0600 whatever the umask: created as any new file is.
    tmp = output.parent / f".{output.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        if keep is not None:
            os.chmod(tmp, keep)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _last_line(text: str) -> str:
    """The last line of a traceback (the exception), without terminal colours."""
    lines = [line for line in _ANSI.sub("", text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else text

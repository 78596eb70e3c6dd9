"""How long changing a kernel's environment takes (issue 20), from command to kernelspec.

Each round adds one small pure-Python package (a wheel made for the round, so that nothing is
reused from an earlier one) from a wheelhouse to a kernel of the default image, as a user
types it, and times the whole command:

- ``extend``: ``jupyter mlcontainer extend K --pip pkg==V --wheelhouse W`` (resolve with
  hashes, build, pin);
- ``rollback``: ``jupyter mlcontainer rollback K``;
- ``extend again``: the identical extend after the rollback (the image made before is found
  and re-pinned: no build);
- ``has it``: the same extend once more (the current version has the package: nothing to do);
- baseline, ``docker build``: what a user would do by hand for the same package (a Dockerfile
  FROM the same image, COPY the wheel, pip install it; no cache), without re-pinning or
  sharing the kernelspec.

Prints medians in seconds, the ratio against ``docker build`` in the same run, and the targets
(issue 20): extend ≤ 10 s, an identical extend again ≤ 1 s, a rollback ≤ 1 s. Leaves nothing
behind (its kernelspec folder, derived and baseline images).

    python benchmarks/environments.py                 # 5 rounds
    python benchmarks/environments.py --rounds 1      # the CI smoke run
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.wheels import make_wheel  # noqa: E402 (the tests' tiny wheels; no build tool)

IMAGE = os.environ.get("MLC_BENCH_IMAGE", "mlcontainer/python:3.11")
TARGETS = {"extend": 10.0, "extend again": 1.0, "rollback": 1.0}
KEY_LABEL = "org.jupyter-mlcontainer.extend-key"


def timed(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"`jupyter mlcontainer {' '.join(args)}` failed:\n{done.stderr[-3000:]}")
    return took


def docker_build(api: docker.APIClient, wheel: Path, tag: str) -> float:
    dockerfile = (
        f"FROM {IMAGE}\nUSER root\nCOPY {wheel.name} /tmp/\n"
        f"RUN python3 -m pip install --no-index --no-deps /tmp/{wheel.name} && rm /tmp/*.whl\n"
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), (wheel.name, wheel.read_bytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    started = time.monotonic()
    for line in api.build(
        fileobj=io.BytesIO(context.getvalue()), custom_context=True, tag=tag, nocache=True,
        rm=True, forcerm=True, decode=True,
    ):  # fmt: skip
        if "error" in line:
            sys.exit(f"docker build failed: {line['error']}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    api = docker.APIClient(version="auto")
    before = {image["Id"] for image in api.images(filters={"label": KEY_LABEL})}
    samples: dict[str, list[float]] = {k: [] for k in (*TARGETS, "has it", "docker build")}
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "JUPYTER_DATA_DIR": str(Path(tmp, "data")),
            "XDG_CACHE_HOME": str(Path(tmp, "cache")),
        }
        wheels = Path(tmp, "wheels")
        try:
            timed(env, "add", IMAGE, "--name", "mlc-bench-env", "--gpus", "none")
            for round_ in range(args.rounds):
                version = f"1.{round_}.{int(time.time())}"
                wheel = make_wheel(wheels, "mlc-bench-pkg", version)
                extend = ("extend", "mlc-bench-env", "--pip", f"mlc-bench-pkg=={version}",
                          "--wheelhouse", str(wheels))  # fmt: skip
                samples["extend"].append(timed(env, *extend))
                samples["rollback"].append(timed(env, "rollback", "mlc-bench-env"))
                samples["extend again"].append(timed(env, *extend))
                samples["has it"].append(timed(env, *extend))
                timed(env, "rollback", "mlc-bench-env", "1")
                tag = f"mlc-bench/docker-build:{round_}"
                samples["docker build"].append(docker_build(api, wheel, tag))
                api.remove_image(tag, force=True)
        finally:
            for image in api.images(filters={"label": KEY_LABEL}):
                if image["Id"] not in before:
                    api.remove_image(image["Id"], force=True)
    base = statistics.median(samples["docker build"])
    print(f"{'figure':<14} {'median s':>9} {'× docker build':>15} {'target s':>9}  met")
    for name, values in samples.items():
        median = statistics.median(values)
        target = TARGETS.get(name)
        met = "" if target is None else ("yes" if median <= target else "NO")
        shown = f"{target:g}" if target is not None else "-"
        print(f"{name:<14} {median:>9.2f} {median / base:>15.2f} {shown:>9}  {met}")
    print(f"({args.rounds} round(s); image {IMAGE})")


if __name__ == "__main__":
    main()

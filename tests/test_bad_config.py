"""Kernelspecs that cannot work are refused with what to fix, before any engine is asked.

No Docker engine is needed: each kernelspec points at an address where none listens, so an
error that reached the engine would say so instead.
"""

from __future__ import annotations

import pytest
from traitlets import TraitError

from jupyter_mlcontainer.core.exceptions import ConfigurationError, EngineUnavailableError

from .conftest import start_fails

NO_ENGINE = "unix:///tmp/no-docker-here.sock"


@pytest.fixture(autouse=True)
def _engine_allowed(policy):
    policy(allowed_engines=[NO_ENGINE])


async def test_missing_engine(kernelspec_file, notebook_dir):
    name = kernelspec_file(docker_host=NO_ENGINE)
    _, message = await start_fails(name, notebook_dir, EngineUnavailableError)
    assert f"Cannot reach the Docker engine at {NO_ENGINE}" in message
    assert "Start the engine" in message


async def test_invalid_settings_are_refused(kernelspec_file, notebook_dir):
    name = kernelspec_file(gpus="lots", docker_host=NO_ENGINE)
    _, message = await start_fails(name, notebook_dir, TraitError)
    assert "Invalid gpus setting 'lots'" in message
    name = kernelspec_file(mem_limit="huge", docker_host=NO_ENGINE)
    _, message = await start_fails(name, notebook_dir, TraitError)
    assert "Invalid mem_limit 'huge'" in message


async def test_a_malformed_image_reference_is_refused_before_the_engine(
    kernelspec_file, notebook_dir
):
    name = kernelspec_file(image="UPPER/Case::bad", docker_host=NO_ENGINE)
    _, message = await start_fails(name, notebook_dir, ConfigurationError)
    assert "'UPPER/Case::bad' is not a valid image reference" in message
    assert "Fix 'image' in the kernelspec" in message

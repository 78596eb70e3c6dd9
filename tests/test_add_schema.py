"""What ``add`` offers is declared once, as traits (kernel/settings.py's tagged ``add``, and
kernel/install.py's AddRequest): the CLI's options, the REST request, kernel.json's config,
the JSON schema and the lab extension's types all come from them; gpus is parsed once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jupyter_mlcontainer.core import gpus as gpu
from jupyter_mlcontainer.core.kernelspec import LABEL_GPUS, KernelspecConfig
from jupyter_mlcontainer.kernel import schema
from jupyter_mlcontainer.kernel.install import (
    AddRequest,
    add_fields,
    kernel_settings,
    recorded_settings,
)
from jupyter_mlcontainer.kernel.settings import ContainerKernelSettings, requested_gpus

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("path", sorted(schema.generated(), key=str))
def test_the_checked_in_schema_and_types_are_what_the_traits_give(path):
    written = (ROOT / path).read_text() if (ROOT / path).is_file() else None
    assert written == schema.generated()[path], (
        f"{path} is out of date with the traits: run `python -m jupyter_mlcontainer.kernel.schema`"
    )


def test_the_fields_are_the_tagged_traits():
    fields = {f.name: f for f in add_fields()}
    assert next(iter(fields)) == "image" and fields["image"].argument
    settings = [name for name, f in fields.items() if f.setting]
    assert settings == [
        "image", "gpus", "shm_size", "mem_limit", "docker_host", "backend", "placement"
    ]  # fmt: skip
    rest = [name for name, f in fields.items() if f.rest]
    assert sorted(rest) == sorted(
        ["image", "name", "display_name", "gpus", "shm_size", "mem_limit", "replace"]
    )
    for f in fields.values():  # one declaration each: the trait is the setting's own
        owner = ContainerKernelSettings if f.setting else AddRequest
        assert owner.class_traits()[f.name] is f.trait
        assert f.help


def test_the_schema_says_types_defaults_and_help():
    properties = schema.json_schema()["properties"]
    assert properties["gpus"]["type"] == ["string", "integer"]
    assert properties["gpus"]["default"] == "auto"
    assert LABEL_GPUS in properties["gpus"]["description"]
    assert properties["replace"] == {
        "type": "boolean",
        "default": False,
        "description": AddRequest.class_traits()["replace"].help,
    }
    assert properties["mem_limit"]["description"].startswith("Memory limit of the container")
    assert "docker_host" not in properties  # the CLI's only
    assert schema.json_schema()["required"] == ["image"]


def test_the_cli_options_are_derived_and_keep_their_names():
    from jupyter_mlcontainer.cli.commands import AddApp

    assert AddApp.aliases == {
        "name": "AddApp.kernel_name",
        "display-name": "AddApp.display_name",
        "prefix": "AddApp.prefix",
        "gpus": "AddApp.gpus",
        "shm-size": "AddApp.shm_size",
        "mem-limit": "AddApp.mem_limit",
        "docker-host": "AddApp.docker_host",
        "backend": "AddApp.kernel_backend",  # the command has a backend() of its own
        "placement": "AddApp.placement",
    }
    from jupyter_core.application import JupyterApp

    assert set(AddApp.flags) - set(JupyterApp.flags) == {"user", "sys-prefix", "replace"}
    traits = AddApp.class_traits(config=True)
    for name in ("gpus", "shm_size", "mem_limit", "docker_host", "kernel_name", "display_name"):
        assert traits[name].default_value is None  # not given
    assert traits["user"].default_value is True and traits["replace"].default_value is False
    settings = ContainerKernelSettings.class_traits()
    assert traits["mem_limit"].help.startswith(" ".join(settings["mem_limit"].help.split()[:5]))
    assert "Not given: the image's org.jupyter-mlcontainer.gpus label" in traits["gpus"].help


def test_the_cli_reads_its_options_into_a_request():
    from jupyter_mlcontainer.cli.commands import AddApp, _option_name

    app = AddApp()
    try:
        app.parse_command_line(
            ["img:1", "--gpus", "0,1", "--mem-limit", "4g", "--name", "n", "--replace"]
        )
        assert (app.extra_args, app.gpus, app.mem_limit, app.kernel_name, app.replace) == (
            ["img:1"],
            "0,1",
            "4g",
            "n",
            True,
        )
        assert app.shm_size is None and app.user is True
    finally:
        AddApp.clear_instance()
    app = AddApp()
    try:
        app.parse_command_line(
            ["img:1", "--backend", "swarm", "--placement", "node.labels.gpu==true",
             "--placement", "node.role!=manager"]
        )  # fmt: skip
        given = {f.name: getattr(app, _option_name(f)) for f in add_fields() if not f.argument}
        request = AddRequest.from_fields({"image": "img:1", **given})
        assert request.settings["backend"] == "swarm"
        assert request.settings["placement"] == ["node.labels.gpu==true", "node.role!=manager"]
    finally:
        AddApp.clear_instance()


def test_the_rest_request_is_checked_by_the_fields():
    request = AddRequest.from_json(
        {"image": "img:1", "name": "", "gpus": 2, "mem_limit": "4g", "replace": 1}
    )
    assert (request.image, request.name, request.replace, request.user) == (
        "img:1",
        None,
        True,
        True,
    )
    assert request.settings == {"gpus": "2", "mem_limit": "4g"}  # a count is taken as text
    assert AddRequest.from_json({"image": "img:1", "shm_size": None}).settings == {}
    for body, words in (
        (
            {"image": "img:1", "colour": "red", "docker_host": "x"},
            "unknown fields: colour, docker_host",
        ),
        ({"image": "img:1", "mem_limit": 5}, "mem_limit must be text, not 5"),
        ({"image": ["img:1"]}, "image must be text"),
        ({"image": "img:1", "gpus": True}, "gpus must be text or a whole number"),
        ({"image": "img:1", "name": 3}, "name must be text"),
    ):
        with pytest.raises(ValueError, match=words):
            AddRequest.from_json(body)


def test_kernel_json_records_the_settings_given_and_the_labelled_ones():
    def recorded(labels, **settings):
        return recorded_settings(AddRequest("img:1", settings), labels)

    assert recorded({}) == {"gpus": "auto"}
    assert recorded({LABEL_GPUS: "none"}) == {"gpus": "none"}
    assert recorded({LABEL_GPUS: "none"}, gpus="all", shm_size="", mem_limit="4g") == {
        "gpus": "all",
        "mem_limit": "4g",
    }
    config = KernelspecConfig({"gpus": "1", "shm_size": "8g", "docker_host": None})
    assert config.config("img@sha256:x") == {"image": "img@sha256:x", "gpus": "1", "shm_size": "8g"}
    swarm = KernelspecConfig({"backend": "swarm", "placement": ["node.labels.gpu==true"]})
    assert swarm.config("i") == {  # a HOME volume is per node: none, unless asked for
        "image": "i", "backend": "swarm", "placement": ["node.labels.gpu==true"],
        "persistent_home": False,
    }  # fmt: skip
    with pytest.raises(ValueError, match="Invalid mem_limit"):
        kernel_settings({"mem_limit": "lots"})


def test_gpus_are_parsed_once(monkeypatch):
    calls = []
    real = gpu.parse_gpus
    monkeypatch.setattr(gpu, "parse_gpus", lambda value: calls.append(value) or real(value))
    settings = ContainerKernelSettings(gpus="0,1")
    assert settings.gpu_request == gpu.GPURequest("ids", ids=("0", "1"))
    assert settings.gpu_request.explicit
    assert calls == ["0,1"]  # by the trait's validator, when it was set
    settings.gpus = 2
    assert settings.gpu_request.count == 2 and calls == ["0,1", 2]
    default = ContainerKernelSettings()
    assert default.gpu_request.mode == "auto" and default.gpu_request.mode == "auto"
    assert calls == ["0,1", 2, "auto"]

    from jupyter_mlcontainer.kernel.policy import MLContainerPolicy, PolicyError

    with pytest.raises(PolicyError, match="max_gpus"):
        MLContainerPolicy(max_gpus=1)._check_resources(settings)
    assert len(calls) == 3  # the policy read the parsed request


def test_a_kernelspecs_gpus_read_as_its_kernel_reads_them():
    assert requested_gpus({}) == gpu.GPURequest("auto")
    assert requested_gpus({"gpus": None}) == gpu.GPURequest("none")
    assert requested_gpus({"gpus": "all"}).explicit


@pytest.mark.parametrize(
    "module", ["kernel/settings.py", "kernel/policy.py", "core/sizes.py", "core/runtime.py"]
)
def test_settings_need_neither_the_docker_sdk_nor_the_docker_layer(module):
    tree = ast.parse((ROOT / "jupyter_mlcontainer" / module).read_text())
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    imported += [
        ("." * node.level) + (node.module or "")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    ]
    assert [m for m in imported if m.split(".")[0] == "docker" or m.startswith("..docker")] == []

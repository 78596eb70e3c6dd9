"""Create a pinned container kernelspec from an image: shared by `jupyter mlcontainer add`
and the server extension's kernelspecs endpoint."""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from traitlets import (
    Bool,
    CaselessStrEnum,
    Enum,
    Float,
    HasTraits,
    Int,
    TraitError,
    TraitType,
    Unicode,
)

from ..core import environments as envs
from ..core import kernelspec as ks
from ..core.backend import Backend
from ..core.gpus import GPURequest, GPUSupport
from ..core.labels import process_owner
from ..core.logos import write_logos
from ..core.probe import ImageProbe
from ..core.reference import check_reference
from .settings import ContainerKernelSettings as KernelTraits

#: Quiet: the callers say themselves where the kernelspec went.
_quiet = logging.getLogger("jupyter_mlcontainer.kernel.install")
_quiet.setLevel(logging.WARNING)


class AddRequest(HasTraits):
    """What to create: an image, the kernel settings given for it, and the kernelspec's name and
    place (the traits below; None: derive it from the image, its labels or its probe).

    What ``add`` asks for is declared once, as traits: these, and the kernel settings tagged
    ``add`` (kernel/settings.py). :func:`add_fields` lists them; the CLI's options, the REST
    API's request (:meth:`from_json`), its JSON schema and the lab extension's types derive
    from them (kernel/schema.py)."""

    name = Unicode(
        None, allow_none=True, help="Kernelspec name (default: from the image name)."
    ).tag(add=True)
    display_name = Unicode(
        None, allow_none=True, help="Name in the kernel dropdown (default: from the probe)."
    ).tag(add=True)
    replace = Bool(
        False,
        help="Replace a kernelspec of the same name (only one that jupyter-mlcontainer made).",
    ).tag(add=True)
    user = Bool(True, help="Install for the current user (the default).").tag(add=True, rest=False)
    prefix = Unicode(None, allow_none=True, help="Install into this prefix.").tag(
        add=True, rest=False
    )

    def __init__(
        self, image: str, settings: Mapping[str, Any] | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.image = image
        #: The kernel settings given, by name (fields of :func:`add_fields` with ``setting``);
        #: one not given (None or "") is absent.
        self.settings = {
            name: value for name, value in (settings or {}).items() if value not in (None, "")
        }

    @property
    def docker_host(self) -> str | None:
        """The engine the kernel runs on (an address or docker context; None: the default)."""
        return self.settings.get("docker_host")

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> AddRequest:
        """A request from values by field name (:func:`add_fields`; None: not given)."""
        fields = _known(values, add_fields())
        given = {name: value for name, value in values.items() if value is not None}
        try:
            return cls(
                str(given.pop("image", "")),
                {name: value for name, value in given.items() if fields[name].setting},
                **{name: value for name, value in given.items() if not fields[name].setting},
            )
        except TraitError as e:
            raise ValueError(str(e)) from None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> AddRequest:
        """The REST API's request: a JSON object with the fields the API offers. Raises
        ValueError, which says what is wrong, for an unknown field or a value of the wrong
        type (its other checks are :func:`validate`'s, as for the CLI)."""
        fields = _known(body, [field for field in add_fields() if field.rest])
        return cls.from_fields({name: fields[name].from_json(v) for name, v in body.items()})


def _known(values: Mapping[str, Any], offered: list[AddField]) -> dict[str, AddField]:
    """The fields offered, by name; ValueError naming any of ``values`` not among them."""
    fields = {field.name: field for field in offered}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        msg = f"unknown fields: {', '.join(unknown)}"
        raise ValueError(msg)
    return fields


def cli_option(name: str) -> str:
    """The CLI's option for a field: ``--mem-limit`` for ``mem_limit``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class AddField:
    """One thing ``add`` asks for, as its one declaration, a trait, says."""

    #: The REST field and JSON name; the CLI's option is :attr:`option`.
    name: str
    trait: TraitType[Any, Any]
    #: A kernel setting (recorded in kernel.json), else one of :class:`AddRequest`'s own.
    setting: bool

    @property
    def argument(self) -> bool:
        """The command's argument (``add IMAGE``), and required in the REST API."""
        return self.trait.metadata.get("add") == "argument"

    @property
    def rest(self) -> bool:
        """Offered by the REST API (and the lab extension's dialog), not only the CLI."""
        return bool(self.trait.metadata.get("rest", True))

    @property
    def option(self) -> str:
        """The CLI's option: ``--mem-limit`` for ``mem_limit``."""
        return cli_option(self.name)

    @property
    def help(self) -> str:
        """The trait's help as plain text: each paragraph on one line, code in single
        backticks (``auto`` → `auto`)."""
        paragraphs = inspect.cleandoc(self.trait.help).split("\n\n")
        return "\n\n".join(" ".join(p.split()).replace("``", "`") for p in paragraphs)

    @property
    def fallback(self) -> str | None:
        """What a kernel setting is when ``add`` is not given it (None for the request's own
        options, whose help says)."""
        if not self.setting or self.argument:
            return None
        default = self.trait.default_value_repr()
        if self.image_label:
            return f"the image's {self.image_label} label, else {default}"
        return f"the kernelspec leaves it out, and its default applies ({default})"

    @property
    def image_label(self) -> str | None:
        """The image label ``add`` takes this setting from when none is given."""
        return self.trait.metadata.get("image_label")

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the field's value in a request (without its description)."""
        trait = self.trait
        if "json_schema" in trait.metadata:
            return dict(trait.metadata["json_schema"])
        if isinstance(trait, (CaselessStrEnum, Enum)):
            return {"type": "string", "enum": [str(value) for value in trait.values or ()]}
        for kind, name in _JSON_TYPES:
            if isinstance(trait, kind):
                return {"type": name}
        msg = f"no JSON type for the trait {self.name} ({type(trait).__name__}): tag json_schema"
        raise TypeError(msg)

    def from_json(self, value: Any) -> Any:
        """The value a JSON request gives, checked against :meth:`json_schema`'s type: None for
        null or "" (not given); a number where text is accepted as its text (``"gpus": 2``);
        anything for a flag, as true or false. Raises ValueError."""
        if value is None or value == "":
            return None
        types = self.json_schema().get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        if "boolean" in types:
            return bool(value)
        if isinstance(value, str) and "string" in types:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and "integer" in types:
            return str(value) if "string" in types else value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "number" in types:
            return value
        expected = " or ".join(_JSON_WORDS.get(kind, kind) for kind in types)
        msg = f"{self.name} must be {expected}, not {value!r}"
        raise ValueError(msg)


_JSON_TYPES: tuple[tuple[type[TraitType[Any, Any]], str], ...] = (
    (Bool, "boolean"),
    (Unicode, "string"),
    (Int, "integer"),
    (Float, "number"),
)
_JSON_WORDS = {"string": "text", "integer": "a whole number", "number": "a number"}


def add_fields() -> list[AddField]:
    """Everything ``add`` asks for: the image, the kernelspec's own options, the kernel's
    settings, each in the order of its declaration."""

    def tagged(cls: type[HasTraits]) -> list[tuple[str, TraitType[Any, Any]]]:
        return [
            (name, trait)
            for name, trait in vars(cls).items()
            if isinstance(trait, TraitType) and trait.metadata.get("add")
        ]

    settings = [AddField(name, trait, True) for name, trait in tagged(KernelTraits)]
    options = [AddField(name, trait, False) for name, trait in tagged(AddRequest)]
    arguments = [field for field in settings if field.argument]
    return arguments + options + [field for field in settings if not field.argument]


@dataclass(frozen=True)
class AddResult:
    name: str
    destination: str
    spec: dict[str, Any]
    pinned: str
    shareable: bool
    probe: ImageProbe
    #: Things the user should know (e.g. GPUs requested from an engine without GPU support).
    warnings: tuple[str, ...] = ()


def validate(request: AddRequest) -> str:
    """Check the request before any work; return the kernelspec name. Raises ValueError."""
    check_reference(request.image)
    name = request.name or ks.kernel_name_for(request.image)
    if not ks.is_valid_name(name):
        msg = (
            f"invalid kernel name {name!r}: use lowercase letters, digits, '.', '_' and '-', "
            f"not starting with '.' (at most {ks.MAX_NAME} characters)"
        )
        raise ValueError(msg)
    kernel_settings(request.settings)  # what `add` accepts, a kernel can start with
    existing = {spec.name: spec for spec in ks.installed_specs()}
    if name in existing and not request.replace:
        msg = f"a kernelspec named {name!r} exists ({existing[name].path}); use --replace or --name"
        raise FileExistsError(msg)
    if name in existing and not ks.made_by_us(existing[name].spec):
        msg = (
            f"the kernelspec {name!r} ({existing[name].path}) was not made by jupyter-mlcontainer, "
            "so it is never replaced: choose another --name"
        )
        raise FileExistsError(msg)
    return name


def kernel_settings(given: Mapping[str, Any]) -> KernelTraits:
    """The kernel's settings with those given: checked by the traits' own validators, as a
    kernel's start checks them. Raises ValueError."""
    try:
        return KernelTraits(**given)
    except TraitError as e:
        raise ValueError(str(e)) from None


def recorded_settings(request: AddRequest, image_labels: Mapping[str, str]) -> dict[str, Any]:
    """The settings kernel.json gets, in their order of declaration: those given, and each
    one with an image label (``gpus``) always, from the label when not given, else its
    default."""
    recorded = {}
    for field in add_fields():
        if not field.setting or field.argument:
            continue
        value = request.settings.get(field.name)
        if value is None and field.image_label:
            value = image_labels.get(field.image_label) or field.trait.default_value
        if value not in (None, ""):
            recorded[field.name] = value
    return recorded


def cli_words(name: str, value: str) -> str:
    """How a user of the CLI sets a setting: ``--gpus auto``."""
    return f"{cli_option(name)} {value}"


def api_words(name: str, value: str) -> str:
    """How a client of the REST API sets a field: ```gpus` set to `auto```."""
    return f"`{name}` set to `{value}`"


async def add_container_kernelspec(
    backend: Backend,
    request: AddRequest,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    on_event: Callable[[dict[str, Any]], None] | None = None,
    setting_words: Callable[[str, str], str] = cli_words,
) -> AddResult:
    """Pull if needed, pin, probe, write kernel.json and logos, install the kernelspec.

    ``setting_words(name, value)`` says how the caller's user sets a setting, for warnings
    (:func:`cli_words`, :func:`api_words`)."""
    name = validate(request)
    inspect = await backend.obtain_image(request.image, "missing", log, on_event=on_event)
    pinned, shareable = ks.pinned_reference(request.image, inspect)
    probe = await backend.probe_image(pinned)
    image_labels = (inspect.get("Config") or {}).get("Labels") or {}
    recorded = recorded_settings(request, image_labels)
    gpus = kernel_settings(recorded).gpu_request
    warnings = []
    if gpus.explicit:
        warning = gpus_warning(
            gpus, await backend.gpu_support(), lambda value: setting_words("gpus", value)
        )
        if warning:
            warnings.append(warning)
    display_name = request.display_name or ks.unique_display_name(
        image_labels.get(ks.LABEL_DISPLAY_NAME) or probe.display_name(gpus.explicit),
        request.image,
        [spec for spec in ks.installed_specs() if spec.name != name],
    )
    spec = ks.kernel_json(
        image=request.image,
        pinned=pinned,
        image_id=str(inspect["Id"]),
        probe=probe,
        display_name=display_name,
        settings=ks.KernelspecConfig(recorded),
    )
    # Version 1 of the kernel's environment (``extend`` adds the next ones).
    spec = envs.with_first_version(
        spec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), process_owner()
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        write_logos(folder, probe.logo_kind(), accent_of=request.image)
        destination = KernelSpecManager(log=_quiet).install_kernel_spec(
            str(folder),
            name,
            user=request.prefix is None and request.user,
            prefix=request.prefix,
        )  # always replaces: validate() already refused an existing name without `replace`
    return AddResult(name, str(destination), spec, pinned, shareable, probe, tuple(warnings))


def gpus_warning(
    asked: GPURequest, support: GPUSupport, setting: Callable[[str], str]
) -> str | None:
    """What to tell whoever makes a kernel that asks for GPUs an engine cannot give (it
    would not start there), with the fix in their own terms: ``setting("auto")`` is how
    they set ``gpus`` to ``auto`` (``--gpus auto`` for the CLI, a field for the REST API)."""
    if not asked.explicit or support.available:
        return None
    return (
        f"this kernel asks for {asked.describe()}, but the engine has {support.describe()}: "
        "it will not start here. Install the NVIDIA Container Toolkit on the engine's host, "
        f"or use {setting('auto')} (GPUs when there are any) or {setting('none')}."
    )

"""Pipeline files: their keys, declared once as pydantic models, and loading them.

The models say each key's type and default, resolve paths and fill in the built-in pictures.
What a value must be beyond its type is left to the code that owns the rule, called once the
types are right: :class:`daskstyle.settings.Settings` (every run setting), the image writers
(:func:`daskstyle.images.check_output`) and the networks (layer names). Every error is one
:class:`InputError` line that names the file and the key.
"""

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
)
from pydantic.fields import FieldInfo

from .. import files, images, run, start
from ..errors import InputError, SettingError
from ..networks import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, get_network
from ..settings import Settings, blend_weights

EXAMPLE = "example"  # content/style: the built-in pictures
RANDOM = "random"  # weights: seeded random weights of the network
Mode = Literal["strong", "weak"]
MODES = typing.get_args(Mode)


def _relative_to_file(value, info: ValidationInfo):
    """A path key's text as a path (``~`` expanded), relative to the TOML file's directory;
    any other value as it is, for the type check to refuse."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return path if path.is_absolute() else info.context["base"] / path


def _built_in_picture(value, info: ValidationInfo):
    if value != EXAMPLE:
        return value
    return {"content": run.EXAMPLE_CONTENT, "style": run.EXAMPLE_STYLE}[info.field_name]


def _start_relative_to_file(value, info: ValidationInfo):
    """``init``: a start's name as it is, a picture's path relative to the TOML file."""
    if value in start.INITS:
        return value
    path = _relative_to_file(value, info)
    return str(path) if isinstance(path, Path) else path


def _one_or_more(value):
    """A style key: one picture, or a list of them (blended by ``style_blend``)."""
    return value if isinstance(value, list) else [value]


def _scheduler_file(spec: str, info: ValidationInfo) -> str:
    return str(_relative_to_file(spec, info)) if spec.endswith(".json") else spec


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix in (".csv", ".png") else path


def _ascending(values: list[int]) -> list[int]:
    return sorted(set(values))


# Each type's description is what an error says the key must be.
Count = Annotated[int, Field(ge=1, description="a positive whole number")]
Counts = Annotated[
    list[Count],
    Field(min_length=1, description="a non-empty list of positive whole numbers"),
    AfterValidator(_ascending),
]
Whole = Annotated[int, Field(description="a whole number")]
Switch = Annotated[bool, Field(description="true or false")]
Text = Annotated[str, Field(min_length=1, description="a string")]
Texts = Annotated[list[Text], Field(min_length=1, description="a non-empty list of strings")]
Modes = Annotated[
    list[Mode], Field(min_length=1, description='a non-empty list of "strong" and "weak"')
]
Memory = Annotated[Text | Count, Field(description='a size such as "8GB", or bytes')]
Place = Annotated[Path, BeforeValidator(_relative_to_file), Field(description="a path")]
Picture = Annotated[
    Place, BeforeValidator(_built_in_picture), Field(description='a picture file, or "example"')
]
Pictures = Annotated[
    list[Picture],
    BeforeValidator(_one_or_more),
    Field(min_length=1, description='a picture file, "example", or a list of them'),
]
Weights = Annotated[
    Literal["random"] | Place | None,
    Field(union_mode="left_to_right", description='a weights file, or "random"'),
]
ClusterSpec = Annotated[
    str,
    Field(
        pattern=r"^(local|slurm|threads|sync|(tcp|tls)://.+|.+\.json)$",  # open_client's specs
        description="local, slurm, threads, sync, tcp://HOST:PORT, tls://HOST:PORT "
        "or a scheduler file .json",
    ),
    AfterValidator(_scheduler_file),
]


class _Table(BaseModel):
    """A TOML table: its keys typed as declared (no conversions), no others."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Cluster(_Table):
    """``[cluster]`` of a production: the arguments of :func:`daskstyle.cluster.open_client`."""

    spec: ClusterSpec = "local"
    workers: Count | None = None
    threads_per_worker: Count | None = None
    memory_limit: Memory | None = None
    jobs: Count | None = None
    config: Place | None = None
    tls: Switch = False
    dashboard: Switch = True


class _ProductionKeys(_Table):
    kind: Literal["production"]
    content: Picture
    style: Pictures
    output: Place
    workdir: Place | None = None
    resume: Switch = False
    weights: Weights = None
    init: Annotated[
        str,
        BeforeValidator(_start_relative_to_file),
        Field(description="content, noise, gray or a picture file"),
    ] = "content"
    cluster: Annotated[Cluster, Field(description="a table")] = Cluster()

    @property
    def settings(self) -> Settings:
        """The run settings the file's keys give (a :class:`SettingError` names a bad one)."""
        return Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)})


_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
_LIST_WORDS = {float: "a list of numbers", str: "a list of strings"}


def _settings_keys() -> dict:
    """A key per field of :class:`Settings`, typed as the field is (Settings keeps the rules):
    a tuple field is a TOML list."""
    hints = typing.get_type_hints(Settings)
    keys = {}
    for field in dataclasses.fields(Settings):
        if field.name in _ProductionKeys.model_fields:  # declared there, with its own rule
            continue
        hint = hints[field.name]
        members = (hint, *typing.get_args(hint))
        tuples = [t for t in members if typing.get_origin(t) is tuple]
        if tuples:
            item = typing.get_args(tuples[0])[0]
            hint = list[item] | None if type(None) in members else list[item]
            words = _LIST_WORDS[item]
        else:
            words = _TYPE_WORDS[next(t for t in members if t in _TYPE_WORDS)]
        keys[field.name] = (Annotated[hint, Field(description=words)], field.default)
    return keys


Production = create_model(
    "Production",
    __base__=_ProductionKeys,
    __doc__="A production's file: one painting; its run settings are :attr:`settings`.",
    **_settings_keys(),
)


class Scaling(_Table):
    """A scaling study's file."""

    kind: Literal["scaling"]
    output: Annotated[Place, AfterValidator(_stem)]
    canvas: Count
    workers: Counts
    tiles: Counts
    modes: Modes = list(MODES)
    iterations: Count = 3
    warmup: Count = 1
    threads_per_worker: Count = 1
    memory_limit: Memory | None = None
    network: Text = "vgg19"
    weights: Weights = RANDOM
    seed: Whole = 0
    content_layer: Text = DEFAULT_CONTENT_LAYER
    style_layers: Texts = list(DEFAULT_STYLE_LAYERS)
    style_side: Count = 256
    dtype: Text = "float32"
    precision: Text = "exact"
    workdir: Place | None = None

    def settings(self, tile: int) -> Settings:
        """The run settings of the study's configurations with ``tile`` px tiles."""
        return Settings(tile=tile, network=self.network, dtype=self.dtype, precision=self.precision)


PIPELINES = {"production": Production, "scaling": Scaling}


def load(path) -> Production | Scaling:
    """The checked contents of the pipeline file ``path``: defaults filled in, paths resolved."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read pipeline file {path}: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid TOML: {err}") from None
    kind = raw.get("kind")
    model = PIPELINES.get(kind) if isinstance(kind, str) else None
    if model is None:
        what = "has no 'kind'" if kind is None else f"has kind = {kind!r}"
        raise InputError(f'{path} {what}: say kind = "production" or kind = "scaling"')
    try:
        config = model.model_validate(raw, context={"base": path.resolve().parent})
    except ValidationError as err:
        raise InputError(f"{path}: {_first_complaint(err, model, raw)}") from None
    try:
        (_check_production if model is Production else _check_scaling)(config)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    return config


def _first_complaint(error: ValidationError, model: type[BaseModel], raw: dict) -> str:
    """The first of ``error``'s complaints as "KEY must be WHAT, not VALUE" (or an unknown or a
    missing key); an unknown key first, since a misspelt key is also a missing one."""
    complaints = error.errors()
    first = next((c for c in complaints if c["type"] == "extra_forbidden"), complaints[0])
    names, fields, field, value = [], model.model_fields, None, raw
    for part in first["loc"]:  # the keys, down to a list index, a union member or an unknown key
        if part not in fields:
            break
        names.append(part)
        field, value = fields[part], value.get(part)
        table = field.annotation
        fields = table.model_fields if isinstance(table, type) and issubclass(table, _Table) else {}
    if first["type"] == "extra_forbidden":
        return f"unknown key '{'.'.join(first['loc'])}' (known keys: {', '.join(fields)})"
    if first["type"] == "missing":
        return f"missing key '{'.'.join(names)}' ({_what(field)})"
    return f"{'.'.join(names)} must be {_what(field)}, not {value!r}"


def _what(field: FieldInfo) -> str:
    """What a key must be: the description of its type, or of the type it makes optional."""
    if field.description:
        return field.description
    for member in typing.get_args(field.annotation):  # `Count | None`: what a Count must be
        for rule in getattr(member, "__metadata__", ()):
            if getattr(rule, "description", None):
                return rule.description


def _check_production(config: Production) -> None:
    """The rules a production's values keep beyond their types."""
    settings = config.settings  # a SettingError names its key
    blend_weights("style_blend", settings.style_blend, len(config.style))
    start.check_init(settings.init)
    if config.weights == RANDOM and settings.network is None:
        raise InputError('weights = "random" needs a network (say network = "vgg19")')
    for key, value in (("content", config.content), *(("style", s) for s in config.style),
                       ("weights", config.weights), ("cluster.config", config.cluster.config)):  # fmt: skip
        _require_file(key, value)
    output = config.output
    try:  # as daskstyle.run checks it, in the directory that exists of those it will make
        writes = images.check_output(
            files.nearest_existing(output.parent) / output.name, bit_depth=settings.bit_depth
        )
    except InputError as err:
        raise InputError(f"output: {err}") from None
    if settings.pyramid and writes != "TIFF":
        raise InputError("pyramid = true needs a .tif output")


def _check_scaling(config: Scaling) -> None:
    """The rules a scaling study's values keep beyond their types."""
    for tile in config.tiles:
        try:
            config.settings(tile)
        except SettingError as err:
            raise InputError(err.spelled("tiles") if err.name == "tile" else str(err)) from None
    _require_file("weights", config.weights)
    network = get_network(config.network)
    for key, layers in (("content_layer", [config.content_layer]),
                        ("style_layers", config.style_layers)):  # fmt: skip
        for layer in layers:
            try:
                network.index(layer)
            except InputError as err:
                raise InputError(f"{key}: {err}") from None


def _require_file(key: str, value) -> None:
    if isinstance(value, Path) and not value.is_file():
        raise InputError(f"{key} names {value}, which is not a file")

"""The keys of pipeline files, declared once as pydantic models.

The models say each key's type and default, resolve paths against the TOML file's directory
and fill in the built-in pictures; what a value must be beyond its type is checked by
:mod:`.config` once the types are right. Each type's description is what an error says the
key must be.
"""

import dataclasses
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
)

from daskstyle.controls import start
from daskstyle.engine.graph import GRAM_SCOPES
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
from daskstyle.optimise.held import MINUTES
from daskstyle.run import painting
from daskstyle.settings import Settings

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
    return {"content": painting.EXAMPLE_CONTENT, "style": painting.EXAMPLE_STYLE}[info.field_name]


def _start_relative_to_file(value, info: ValidationInfo):
    """``init``: a start's name as it is, a picture's path relative to the TOML file."""
    if value in start.INITS:
        return value
    path = _relative_to_file(value, info)
    return str(path) if isinstance(path, Path) else path


def _labels_relative_to_file(value, info: ValidationInfo):
    """``regions``, ``style_regions``: label pictures' paths as text, relative to the TOML
    file ("" in ``style_regions``: a whole style)."""
    if isinstance(value, list):
        return [_labels_relative_to_file(item, info) if item else item for item in value]
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
Minutes = Annotated[str, Field(pattern=f"^{MINUTES}$", description='minutes such as "15min"')]
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
Start = Annotated[
    str,
    BeforeValidator(_start_relative_to_file),
    Field(description="content, noise, gray or a picture file"),
]
Labels = Annotated[
    str | None, BeforeValidator(_labels_relative_to_file), Field(description="a label picture")
]
StyleLabels = Annotated[
    list[str] | None,
    BeforeValidator(_labels_relative_to_file),
    Field(description='a list of label pictures ("" for a whole style)'),
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


class Table(BaseModel):
    """A TOML table: its keys typed as declared (no conversions), no others."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Cluster(Table):
    """``[cluster]`` of a production: the arguments of
    :func:`daskstyle.compute.cluster.open_client`."""

    spec: ClusterSpec = "local"
    workers: Count | None = None
    threads_per_worker: Count | None = None
    memory_limit: Memory | None = None
    jobs: Count | None = None
    config: Place | None = None
    tls: Switch = True  # off: any user who reaches the scheduler can run code on it
    dashboard: Switch = False  # it has no password


class _PaintingKeys(Table):
    """What a production and a comparison share: pictures, weights, cluster, run settings."""

    content: Picture
    style: Pictures
    resume: Switch = False
    weights: Weights = None
    init: Start = "content"
    regions: Labels = None
    style_regions: StyleLabels = None
    cluster: Annotated[Cluster, Field(description="a table")] = Cluster()

    @property
    def settings(self) -> Settings:
        """The run settings the file's keys give (a :class:`SettingError` names a bad one)."""
        return Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)})


class _ProductionKeys(_PaintingKeys):
    kind: Literal["production"]
    output: Place
    workdir: Place | None = None
    checkpoint_every: Count | Minutes = 1  # as `daskstyle run --checkpoint-every`: N or "Mmin"


_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
_LIST_WORDS = {float: "a list of numbers", str: "a list of strings"}


def _settings_keys(base: type[BaseModel], optional: bool = False) -> dict:
    """A key per field of :class:`Settings` not declared in ``base``, typed as the field is
    (Settings keeps the rules): a tuple field is a TOML list. ``optional``: every key defaults
    to None (the value of the table above it)."""
    hints = typing.get_type_hints(Settings)
    keys = {}
    for field in dataclasses.fields(Settings):
        if field.name in base.model_fields:  # declared there, with its own rule
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
        default = None if optional else field.default
        keys[field.name] = (Annotated[hint | None if optional else hint, Field(description=words)],
                            default)  # fmt: skip
    return keys


Production = create_model(
    "Production",
    __base__=_ProductionKeys,
    __doc__="A production's file: one painting; its run settings are :attr:`settings`.",
    **_settings_keys(_ProductionKeys),
)


class Experiment(Table):
    """``experiment`` of a comparison's variant: the ablation switches of docs/design.md."""

    halo: Annotated[int, Field(ge=0, description="a whole number of px, 0 or more")] | None = None
    gram_scope: Annotated[
        Literal[GRAM_SCOPES], Field(description=" or ".join(GRAM_SCOPES))
    ] | None = None  # fmt: skip


class _VariantKeys(Table):
    name: Text
    style: Pictures | None = None
    init: Start | None = None
    experiment: Annotated[Experiment, Field(description="a table")] = Experiment()


Variant = create_model(
    "Variant",
    __base__=_VariantKeys,
    __doc__="A ``[[variant]]`` of a comparison: its name and what it changes.",
    **_settings_keys(_VariantKeys, optional=True),
)
Crop = Annotated[
    list[Annotated[int, Field(ge=0)]],
    Field(min_length=3, max_length=3, description="[x, y, side] in px, side above 0"),
]


class _ComparisonKeys(_PaintingKeys):
    kind: Literal["comparison"]
    output: Annotated[Place, AfterValidator(_stem)]
    seam_tile: Count | None = None
    crop: Crop | None = None
    column: Count = 512
    float64_losses: Switch = False
    variant: Annotated[list[Variant], Field(min_length=1, description="a list of tables")]

    def settings_of(self, variant) -> Settings:
        """The run settings of ``variant``: the file's, with the variant's keys instead."""
        changed = {f.name: getattr(variant, f.name) for f in dataclasses.fields(Settings)}
        return dataclasses.replace(
            self.settings, **{k: v for k, v in changed.items() if v is not None}
        )

    def styles_of(self, variant) -> list[Path]:
        return variant.style or self.style


Comparison = create_model(
    "Comparison",
    __base__=_ComparisonKeys,
    __doc__="A comparison's file: several paintings side by side, one per ``[[variant]]``.",
    **_settings_keys(_ComparisonKeys),
)


class Scaling(Table):
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


PIPELINES = {"production": Production, "scaling": Scaling, "comparison": Comparison}


def painting_path(stem: Path, variant_name: str) -> Path:
    """Where a comparison with output ``stem`` writes the painting of a variant: PNG, named
    after the variant's name in lower-case letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", variant_name.lower()).strip("-")
    return stem.with_name(f"{stem.name}-{slug or 'variant'}.png")

"""Loading pipeline files: their keys typed by the models of :mod:`.keys`, then checked.

What a value must be beyond its type is left to the code that owns the rule, called once the
types are right: :class:`daskstyle.settings.Settings` (every run setting), the image writers
(:func:`daskstyle.io.images.check_output`) and the networks (layer names). Every error is one
:class:`InputError` line that names the file and the key.
"""

import tomllib
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from daskstyle.compute.cluster import check_sizes
from daskstyle.controls import start
from daskstyle.core.errors import InputError, SettingError
from daskstyle.core.geometry import TILE_MULTIPLE
from daskstyle.io import files, images
from daskstyle.networks.catalog import get_network
from daskstyle.settings import Settings, blend_weights

from .keys import PIPELINES, RANDOM, Cluster, Comparison, Production, Scaling, Table, painting_path


def load(path) -> Production | Scaling | Comparison:
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
        kinds = ", ".join(f'kind = "{name}"' for name in PIPELINES)
        raise InputError(f"{path} {what}: say {kinds}")
    try:
        config = model.model_validate(raw, context={"base": path.resolve().parent})
    except ValidationError as err:
        raise InputError(f"{path}: {_first_complaint(err, model, raw)}") from None
    try:
        _CHECKS[model](config)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    return config


def _first_complaint(error: ValidationError, model: type[BaseModel], raw: dict) -> str:
    """The first of ``error``'s complaints as "KEY must be WHAT, not VALUE" (or an unknown or a
    missing key); an unknown key first, since a misspelt key is also a missing one."""
    complaints = error.errors()
    first = next((c for c in complaints if c["type"] == "extra_forbidden"), complaints[0])
    names, fields, field, value, items = [], model.model_fields, None, raw, None
    for part in first["loc"]:  # the keys, down to a union member or an unknown key
        if isinstance(part, int) and items is not None:  # the item of a list of tables
            names[-1] += f" {part + 1}"
            fields, field, value, items = items.model_fields, None, value[part], None
            continue
        if part not in fields:
            break
        names.append(part)
        field, value = fields[part], value.get(part)
        kind = field.annotation
        fields = kind.model_fields if _is_table(kind) else {}
        items = typing.get_args(kind)[0] if typing.get_origin(kind) is list else None
        items = items if _is_table(items) else None
    if first["type"] == "extra_forbidden":
        return f"unknown key '{'.'.join([*names, first['loc'][-1]])}' (known keys: {', '.join(fields)})"
    if first["type"] == "missing":
        return f"missing key '{'.'.join(names)}' ({_what(field)})"
    return f"{'.'.join(names)} must be {_what(field)}, not {value!r}"


def _is_table(kind) -> bool:
    return isinstance(kind, type) and issubclass(kind, Table)


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
    _check_cluster(config.cluster)
    _check_painting(config, config.settings, config.style, config.output)


def _check_cluster(cluster: Cluster) -> None:
    """A ``[cluster]`` table's sizes, as :func:`daskstyle.compute.cluster.check_sizes` rules."""
    _check_sizes("cluster.", workers=cluster.workers, jobs=cluster.jobs,
                 threads_per_worker=cluster.threads_per_worker, memory_limit=cluster.memory_limit)  # fmt: skip


def _check_sizes(prefix: str, **sizes) -> None:
    """:func:`daskstyle.compute.cluster.check_sizes`, its error naming the key with ``prefix``."""
    try:
        check_sizes(**sizes)
    except SettingError as err:
        raise InputError(err.spelled(prefix + err.name)) from None


def _check_painting(config, settings: Settings, styles: list[Path], output: Path) -> None:
    """The rules of one painting of a production or comparison ``config``: its ``settings``
    (a :class:`SettingError` names its key), ``styles`` and ``output``."""
    blend_weights("style_blend", settings.style_blend, len(styles))
    start.check_init(settings.init)
    if config.weights == RANDOM and settings.network is None:
        raise InputError('weights = "random" needs a network (say network = "vgg19")')
    for key, value in (("content", config.content), *(("style", s) for s in styles),
                       ("weights", config.weights), ("cluster.config", config.cluster.config)):  # fmt: skip
        _require_file(key, value)
    try:  # as daskstyle.run.painting checks it, in the directory that exists of those it will make
        writes = images.check_output(
            files.nearest_existing(output.parent) / output.name, bit_depth=settings.bit_depth
        )
    except InputError as err:
        raise InputError(f"output: {err}") from None
    if settings.pyramid and writes not in ("TIFF", "OME-Zarr"):  # an OME-Zarr always has them
        raise InputError("pyramid = true needs a .tif or .ome.zarr output")


def _check_comparison(config: Comparison) -> None:
    """The rules a comparison's values keep: those of a production for each variant, variant
    names that give different file names, a crop inside the picture, a picture with room for
    the seam score's grids."""
    _check_cluster(config.cluster)
    paintings = {}
    for variant in config.variant:
        path = painting_path(config.output, variant.name)
        if path in paintings:
            raise InputError(f'variants "{paintings[path]}" and "{variant.name}" would both '
                             f"write {path.name}: give them names that differ in letters or digits")  # fmt: skip
        paintings[path] = variant.name
        try:
            _check_painting(config, config.settings_of(variant), config.styles_of(variant), path)
        except InputError as err:
            raise InputError(f'variant "{variant.name}": {err}') from None
    height, width = images.read_image(config.content).shape[:2]
    if config.seam_tile is not None and min(height, width) <= config.seam_tile:
        raise InputError(f"seam_tile = {config.seam_tile} must be smaller than each side of "
                         f"the {width}x{height} content, so that its grid has borders")  # fmt: skip
    if config.crop is not None:
        x, y, side = config.crop
        if side == 0 or x + side > width or y + side > height or side > config.column:
            raise InputError(f"crop [{x}, {y}, {side}] must lie inside the {width}x{height} "
                             f"content and be at most column = {config.column} px wide")  # fmt: skip


def _check_scaling(config: Scaling) -> None:
    """The rules a scaling study's values keep beyond their types."""
    _check_sizes("", threads_per_worker=config.threads_per_worker,
                 memory_limit=config.memory_limit)  # fmt: skip
    for tile in config.tiles:
        if tile % TILE_MULTIPLE:  # sizes to measure: a multiple, not auto
            raise InputError(f"tiles must be multiples of {TILE_MULTIPLE} px, not {tile}")
        try:
            config.settings(tile)
        except SettingError as err:
            raise InputError(str(err)) from None
    _require_file("weights", config.weights)
    network = get_network(config.network)
    for key, layers in (("content_layer", [config.content_layer]),
                        ("style_layers", config.style_layers)):  # fmt: skip
        for layer in layers:
            try:
                network.index(layer)
            except InputError as err:
                raise InputError(f"{key}: {err}") from None


_CHECKS = {Production: _check_production, Scaling: _check_scaling, Comparison: _check_comparison}


def _require_file(key: str, value) -> None:
    if isinstance(value, Path) and not value.is_file():
        raise InputError(f"{key} names {value}, which is not a file")

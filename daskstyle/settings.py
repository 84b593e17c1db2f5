"""What a run paints with, and the rules every setting must keep.

:class:`Settings` checks itself when it is made, so the command line, the TOML pipelines and
the Python API (which all build one) refuse the same bad values with the same one line: a
number that is not finite (``nan``, ``inf``), out of range (``r0 = 0``, ``max_iters = -1``,
a negative weight) or of the wrong kind, and names that are not known.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from daskstyle.controls.colors import COLORS
from daskstyle.core.errors import SettingError
from daskstyle.core.geometry import TILE_MULTIPLE
from daskstyle.io.writers import DEFAULT_DPI
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, POOLINGS

DTYPES = ("float32", "float64")

#: The largest pixel change there is on the 0-255 scale: the most ``tpc`` and ``stop`` can mean.
PIXEL_RANGE = 255.0
#: The largest loss weight (a style weight times a layer's weight counts as one): with
#: pictures on 0-255 a loss term's gradient reaches about 1e3 per unit of weight, and Adam
#: squares it, so 1e15 keeps the square below float32's 3.4e38 with a margin of 1e2.
MAX_LOSS_WEIGHT = 1e15
#: A style at a level holds at most this many times the level's pixels (``style_scale`` 8 on
#: a style as large as the level): its Gram pass reads every one of them.
MAX_STYLE_AREA = 64


@dataclass(frozen=True)
class Settings:
    """What a run paints with; defaults are the paper's (tpc, stop, 100 steps, r0 = 512).

    ``r0``: long side of the first level (each next level doubles it); ``tile``: core tile
    side in px, or ``auto``, the default (the largest that fits the memory of the device
    running it, cut evenly per level: :func:`daskstyle.run.painting.plan` says which device);
    ``max_iters``: Adam steps per level at most; ``tpc`` (the paper's "target pixel change"):
    the largest pixel change of a level's first step on 0-255, which sets the learning rate;
    ``stop``: a level ends when a step's mean pixel change falls below it; ``precision``:
    the network's arithmetic, ``auto`` (the default: bf16 where the tiles run on a machine
    that has it natively, else exact), ``exact``, ``tf32`` or ``bf16``; ``gram``:
    ``exact`` (a Gram pass, then a gradient pass) or ``lagged`` (one pass, the Gram errors of
    the previous step's canvas); ``regions``: a label image whose label k takes the k-th
    style, ``region_feather`` its borders' softness (px on the finished picture),
    ``region_guides`` how its guides reach the layers, ``style_regions`` per style a label
    image of the part region k takes from style k ("" for the whole style; docs/controls.md).
    """

    r0: int = 512
    tile: int | str = "auto"
    max_iters: int = 100
    tpc: float = 12.8
    stop: float = 0.1
    content_weight: float = 1.0
    style_weight: float = 10.0
    network: str | None = None
    pyramid: bool = False
    dtype: str = "float32"
    precision: str = "auto"
    gram: str = "exact"
    style_blend: tuple[float, ...] | None = None
    style_scale: float = 1.0
    colors: str = "style"
    init: str = "content"
    seed: int = 0
    tv_weight: float = 0.0
    content_layer: str = DEFAULT_CONTENT_LAYER
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    pooling: str = "max"
    bit_depth: int = 8
    regions: str | None = None
    region_feather: float = 0.0
    region_guides: str = "resize"
    style_regions: tuple[str, ...] | None = None
    dpi: int = DEFAULT_DPI

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):  # from TOML or JSON: kept as a tuple
                object.__setattr__(self, field.name, value := tuple(value))
            _RULES[field.name](field.name, value)
        layer_weights = self.style_layer_weights or (1.0,)
        if self.style_weight * max(layer_weights) > MAX_LOSS_WEIGHT:
            raise SettingError("style_layer_weights", f"times the style weight ({self.style_weight:g}) "
                               f"must be at most {MAX_LOSS_WEIGHT:g}{_OVERFLOW}", layer_weights)  # fmt: skip
        _check_regions(self)


def _is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value, *, positive: bool = False) -> float:
    """``value`` as a float, or a :class:`SettingError`: it must be a finite number, at least
    0 (above 0 when ``positive``). The rule of every real-valued setting and loss weight."""
    if not _is_real(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        rule = "a finite number above 0" if positive else "a finite number, 0 or more"
        raise SettingError(name, f"must be {rule}", value)
    return float(value)


_OVERFLOW = ": a larger one overflows float32 (3.4e38) where Adam squares the gradient"


def check_weight(name: str, value) -> float:
    """A loss weight as a float, or a :class:`SettingError`: :func:`check_number`, and at
    most :data:`MAX_LOSS_WEIGHT`."""
    value = check_number(name, value)
    if value > MAX_LOSS_WEIGHT:
        raise SettingError(name, f"must be at most {MAX_LOSS_WEIGHT:g}{_OVERFLOW}", value)
    return value


def _pixel_change(name: str, value, *, positive: bool = False) -> None:
    """``tpc`` and ``stop``: a change of pixels on 0-255, so at most 255."""
    if check_number(name, value, positive=positive) > PIXEL_RANGE:
        raise SettingError(
            name, f"must be at most {PIXEL_RANGE:g}: pixels change by at most that on 0-255", value
        )


def check_style_scale(style_scale: float, style: tuple[int, int], level: tuple[int, int],
                      name: str = "style") -> None:  # fmt: skip
    """Raise a :class:`SettingError` when ``style_scale`` makes the style of (H, W) ``style``
    cover, at the level of (H, W) ``level``, over :data:`MAX_STYLE_AREA` times the level's
    pixels (at the size :func:`daskstyle.core.geometry.style_shape` gives it: scaled like the
    content, never above its own size, then by ``style_scale``). ``name``: the style, as the
    error calls it."""
    like_content = min(1.0, max(level) / max(style))
    most = math.sqrt(MAX_STYLE_AREA * level[0] * level[1] / (style[0] * style[1])) / like_content
    if style_scale > most:
        raise SettingError(
            "style_scale",
            f"makes the {name} ({style[1]}x{style[0]} px) cover over {MAX_STYLE_AREA} times the "
            f"pixels of the {level[1]}x{level[0]} px level (its Gram pass reads them all): give "
            f"at most {math.floor(most * 100) / 100:g}",
            style_scale,
        )


def blend_weights(name: str, blend, count: int) -> tuple[float, ...]:
    """The weights of ``count`` blended styles, normalised to sum 1 (None: equal), or a
    :class:`SettingError`: one finite weight of 0 or more per style, not all 0."""
    if blend is None:
        return (1.0 / count,) * count
    values = tuple(blend) if isinstance(blend, (list, tuple)) else (blend,)
    if len(values) != count:
        raise SettingError(name, f"must give one weight per style ({count})", blend)
    for value in values:
        if not _is_real(value) or not math.isfinite(value) or value < 0:
            raise SettingError(name, "must be finite numbers, 0 or more", blend)
    total = math.fsum(values)
    if total == 0:
        raise SettingError(name, "must not all be 0", blend)
    return tuple(float(value) / total for value in values)


def _tile(name, value):
    if value == "auto":
        return
    if not _is_whole(value) or value < TILE_MULTIPLE or value % TILE_MULTIPLE:
        raise SettingError(
            name, f"must be auto or a positive multiple of {TILE_MULTIPLE} px", value
        )


def _positive_whole(name, value):
    if not _is_whole(value) or value < 1:
        raise SettingError(name, "must be a whole number, 1 or more", value)


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise SettingError(name, f"must be one of {', '.join(choices)}", value)


def _network(name, value):
    from daskstyle.networks.catalog import NETWORKS

    if value is not None:
        _choice(name, value, tuple(NETWORKS))


def _precision(name, value):
    from daskstyle.engine.featurenet import PRECISIONS

    _choice(name, value, ("auto", *PRECISIONS))


def _gram(name, value):
    from daskstyle.optimise.level import GRAM_SCHEDULES

    _choice(name, value, GRAM_SCHEDULES)


def _pyramid(name, value):
    if not isinstance(value, bool):
        raise SettingError(name, "must be true or false", value)


def _weights(name, value):
    """Optional per-item weights: finite, 0 or more, not all 0 (their count is checked where
    the items are known)."""
    if value is not None:
        blend_weights(name, value, len(value) if isinstance(value, tuple) else 1)


def _layer(name, value):
    if not isinstance(value, str) or not value:
        raise SettingError(name, "must be a layer name such as relu4_2", value)


def _layers(name, value):
    if not isinstance(value, tuple) or not value or not all(isinstance(v, str) for v in value):
        raise SettingError(name, "must be layer names such as relu1_1,relu2_1", value)


def _init(name, value):
    if not isinstance(value, str) or not value:
        raise SettingError(name, "must be content, noise, gray or a picture's path", value)


def _seed(name, value):
    if not _is_whole(value) or value < 0:
        raise SettingError(name, "must be a whole number, 0 or more", value)


def _bit_depth(name, value):
    if value not in (8, 16) or isinstance(value, bool):
        raise SettingError(name, "must be 8 or 16", value)


def _dpi(name, value):
    """The print resolution of the output: a whole number a JPEG's header can hold too."""
    if not _is_whole(value) or not 1 <= value <= 65535:
        raise SettingError(name, "must be a whole number of dots per inch from 1 to 65535", value)


def _regions(name, value):
    if value is not None and (not isinstance(value, str) or not value):
        raise SettingError(name, "must be a label picture's path", value)


def _style_regions(name, value):
    if value is not None and not all(isinstance(v, str) for v in value):
        raise SettingError(name, 'must be label pictures\' paths ("" for a whole style)', value)


def _region_guides(name, value):
    from daskstyle.engine.guides import GUIDE_PROPAGATIONS

    _choice(name, value, GUIDE_PROPAGATIONS)


def _check_regions(settings: Settings) -> None:
    """What regions need of the other settings: exact Grams, no blend, labels of their own."""
    if settings.regions is None:
        if settings.style_regions is not None:
            raise SettingError("style_regions", "need regions (a label picture)",
                               settings.style_regions)  # fmt: skip
        return
    if settings.gram != "exact":
        raise SettingError("gram", "must be exact with regions", settings.gram)
    if settings.style_blend is not None:
        raise SettingError("style_blend", "does not mix with regions: each takes its own style",
                           settings.style_blend)  # fmt: skip


_RULES = {
    "r0": _positive_whole,
    "tile": _tile,
    "max_iters": _positive_whole,
    "tpc": lambda name, value: _pixel_change(name, value, positive=True),
    "stop": _pixel_change,
    "content_weight": check_weight,
    "style_weight": check_weight,
    "network": _network,
    "pyramid": _pyramid,
    "dtype": lambda name, value: _choice(name, value, DTYPES),
    "precision": _precision,
    "gram": _gram,
    "style_blend": _weights,
    "style_scale": lambda name, value: check_number(name, value, positive=True),
    "colors": lambda name, value: _choice(name, value, COLORS),
    "init": _init,
    "seed": _seed,
    "tv_weight": check_weight,
    "content_layer": _layer,
    "style_layers": _layers,
    "style_layer_weights": _weights,
    "pooling": lambda name, value: _choice(name, value, POOLINGS),
    "bit_depth": _bit_depth,
    "regions": _regions,
    "region_feather": check_number,
    "region_guides": _region_guides,
    "style_regions": _style_regions,
    "dpi": _dpi,
}

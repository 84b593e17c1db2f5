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

from .errors import SettingError
from .geometry import TILE_MULTIPLE

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Settings:
    """What a run paints with; defaults are the paper's (tpc, stop, 100 steps, r0 = 512).

    ``r0``: long side of the first level (each next level doubles it); ``tile``: core tile
    side in px; ``max_iters``: Adam steps per level at most; ``tpc`` (the paper's "target
    pixel change"): the largest pixel change of a level's first step on 0-255, which sets
    the learning rate; ``stop``: a level ends when a step's mean pixel change falls below it.
    """

    r0: int = 512
    tile: int = 512
    max_iters: int = 100
    tpc: float = 12.8
    stop: float = 0.1
    content_weight: float = 1.0
    style_weight: float = 10.0
    network: str | None = None
    pyramid: bool = False
    dtype: str = "float32"
    precision: str = "exact"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _RULES[field.name](field.name, getattr(self, field.name))


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


def _tile(name, value):
    if not _is_whole(value) or value < TILE_MULTIPLE or value % TILE_MULTIPLE:
        raise SettingError(name, f"must be a positive multiple of {TILE_MULTIPLE} px", value)


def _positive_whole(name, value):
    if not _is_whole(value) or value < 1:
        raise SettingError(name, "must be a whole number, 1 or more", value)


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise SettingError(name, f"must be one of {', '.join(choices)}", value)


def _network(name, value):
    from .networks import NETWORKS

    if value is not None:
        _choice(name, value, tuple(NETWORKS))


def _precision(name, value):
    from .kernels import PRECISIONS

    _choice(name, value, PRECISIONS)


def _pyramid(name, value):
    if not isinstance(value, bool):
        raise SettingError(name, "must be true or false", value)


_RULES = {
    "r0": _positive_whole,
    "tile": _tile,
    "max_iters": _positive_whole,
    "tpc": lambda name, value: check_number(name, value, positive=True),
    "stop": check_number,
    "content_weight": check_number,
    "style_weight": check_number,
    "network": _network,
    "pyramid": _pyramid,
    "dtype": lambda name, value: _choice(name, value, DTYPES),
    "precision": _precision,
}

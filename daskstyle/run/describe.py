"""What a run's plan says of its artistic controls and its Gram schedule, a line each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from daskstyle.settings import Settings


def control_lines(settings: Settings, record: dict, blend) -> Iterator[str]:
    """A line for each artistic control that is not at its default, and for lagged Grams."""
    if isinstance(record["style"], list):
        weights = ", ".join(f"{Path(p).name} x{w:.3g}" for p, w in zip(record["style"], blend))
        yield f"styles blended: {weights}"
    if settings.colors == "content":
        yield "colours: the content's (luminance-only transfer, the content's chroma)"
    elif settings.colors == "match":
        yield "colours: the styles recoloured to the content's mean and covariance first"
    if settings.style_scale != 1:
        yield f"strokes x{settings.style_scale:g}: the style {settings.style_scale:g} times its default size"
    if settings.init != "content":
        seed = f" (seed {settings.seed})" if settings.init == "noise" else ""
        yield f"start: {settings.init}{seed}"
    if settings.tv_weight:
        yield f"smoothness: total variation weight {settings.tv_weight:g}"
    if settings.pooling != "max":
        yield "pooling: average"
    if settings.bit_depth != 8:
        yield f"output: {settings.bit_depth} bits per sample"
    if settings.gram == "lagged":
        yield "Grams lagged: one pass per step, holding the previous step's Gram errors"

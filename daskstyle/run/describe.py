"""What a run's plan says of itself, a line each: network and halo, its artistic controls
and Gram schedule, its levels, disk and memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from daskstyle.compute.executor import tiles_in_memory
from daskstyle.core.text import counted, readable
from daskstyle.io.writers import DEFAULT_DPI
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
from daskstyle.run import footprint
from daskstyle.settings import Settings


def plan_lines(plan) -> Iterator[str]:
    """A :class:`daskstyle.run.painting.RunPlan` as lines to print: network and halo, each
    level's pixels, tiles and disk space, the run directory's peak, and the tiles this
    machine's memory holds."""
    halo, settings, network = plan.graph.halo, plan.settings, plan.graph.network
    if plan.arithmetic is not None:
        yield plan.arithmetic
    yield from filter(None, (plan.download,))
    yield (f"network {network.name}, {settings.dtype}: halo {halo.total} px "
           f"({halo.forward} forward + {halo.backward} backward), tile origins on "
           f"{halo.align} px")  # fmt: skip
    default_halo = network.halo((DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS))
    if halo.total != default_halo.total:
        yield (f"layers {', '.join(plan.graph.spec.layers)}: halo {halo.total} px instead "
               f"of the default layers' {default_halo.total} px, so each tile reads "
               f"{'less' if halo.total < default_halo.total else 'more'}")  # fmt: skip
    yield from control_lines(settings, plan.record, plan.blend)
    if plan.regions is not None:
        yield region_line(settings, plan.record, plan.regions.shares)
    yield from filter(None, (plan.tile_reason, plan.memory_line))
    for level, size in enumerate(plan.sizes):
        (h, w), tile = size.shape, min(size.tile, max(size.shape))
        yield (f"level {level + 1}/{len(plan.sizes)}: {w}x{h} px, "
               f"{counted(size.tiles, 'tile')} of {tile} px, "
               f"{readable(size.running_bytes)} on disk while it runs")  # fmt: skip
    most = readable(footprint.disk_needed(plan.sizes))
    yield f"run directory {plan.workdir}: at most {most} at once"
    slots = tiles_in_memory(plan.tile, settings.dtype)
    yield f"memory of this machine holds {counted(slots, 'tile')} of {plan.tile} px at once"


def region_line(settings: Settings, record: dict, shares) -> str:
    """The regions: the label picture, each label's style and share of the pixels, the
    borders and how the guides reach the layers."""
    styles = record["style"] if isinstance(record["style"], list) else [record["style"]]
    parts = settings.style_regions or ("",) * len(styles)
    each = ", ".join(
        f"{k} {Path(style).name}{f' (part {Path(part).name})' if part else ''} {share:.0%}"
        for k, (style, part, share) in enumerate(zip(styles, parts, shares))
    )
    feather = (f"borders feathered {settings.region_feather:g} px" if settings.region_feather
               else "hard borders")  # fmt: skip
    return (
        f"regions {Path(settings.regions).name}: label {each} of the pixels; {feather}, "
        f"guides by {settings.region_guides}"
    )


def control_lines(settings: Settings, record: dict, blend) -> Iterator[str]:
    """A line for each artistic control that is not at its default, and for lagged Grams."""
    if isinstance(record["style"], list) and settings.regions is None:
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
    output = [f"{settings.bit_depth} bits per sample"] * (settings.bit_depth != 8)
    output += [f"{settings.dpi} dpi"] * (settings.dpi != DEFAULT_DPI)
    if output:
        yield "output: " + ", ".join(output)
    if settings.gram == "lagged":
        yield "Grams lagged: one pass per step, holding the previous step's Gram errors"

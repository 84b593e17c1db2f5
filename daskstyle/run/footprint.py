"""What a run occupies on disk, and whether its disks have room, known before it starts.

A level's state is uncompressed zarr (:class:`daskstyle.optimise.state.LevelState`, edge chunks
stored whole) plus its content target and overview (:mod:`daskstyle.optimise.overview`); a
finished level keeps only its final canvas and overview. So the bytes are exact, and a run
that would fill its disk stops in one line before any work.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daskstyle.api import level_plan
from daskstyle.core import geometry
from daskstyle.core.errors import InputError
from daskstyle.core.text import readable
from daskstyle.io import files
from daskstyle.optimise import overview
from daskstyle.optimise.state import CRC_BYTES, LevelState
from daskstyle.run import rundir


@dataclass(frozen=True)
class LevelSize:
    """A level of a run: its pixels, tiles and bytes on disk (uncompressed zarr), and its
    tiles' core side in px (the level's long side, or more, when it is one tile)."""

    shape: tuple[int, int]
    tiles: int
    running_bytes: int  # Adam state and content target while the level runs
    kept_bytes: int  # its final canvas: all that stays once the level is finished
    tile: int = 512


def level_sizes(
    content_shape: tuple[int, int], graph, *, r0: int, tile: int, dtype, balanced: bool = False
) -> list[LevelSize]:
    """The levels of a run (first level ``r0``, tiles of ``tile`` px, state in ``dtype``) on a
    content of ``content_shape`` with ``graph``, a :class:`daskstyle.engine.graph.StyleGraph`.
    ``balanced``: ``tile`` is the largest tile, each level's as even as
    :func:`daskstyle.core.geometry.balanced_tile` cuts it (``--tile auto``)."""
    sizes = []
    multiple = max(geometry.TILE_MULTIPLE, graph.halo.align)
    for shape in geometry.level_shapes(content_shape, r0):
        side = geometry.balanced_tile(shape, tile, multiple) if balanced else tile
        plan = level_plan(shape, side, graph.halo.align)
        kept = LevelState.nbytes(plan, dtype, released=True) + overview.nbytes(shape)
        sizes.append(LevelSize(shape, len(plan), running_bytes(plan, dtype, graph), kept, side))
    return sizes


def running_bytes(plan: geometry.TilePlan, dtype, graph) -> int:
    """Bytes on disk of a level of ``plan`` while it runs: its state, content target (or the
    content image, where the tiles remake the target from it) and overview."""
    itemsize = np.dtype(dtype).itemsize
    if graph.remakes_content_target:  # the content image stays instead, chunked like the canvas
        target = len(plan) * (plan.tile**2 * 3 * itemsize + CRC_BYTES)
    else:
        scale = graph.network.scale(graph.content_layer)
        channels = graph.network.channels(graph.content_layer)
        side = geometry.target_chunk(next(iter(plan)).cells(scale)[0], channels, itemsize)
        chunks = math.prod(-(-geometry.feature_size(n, scale) // side) for n in plan.shape)
        target = chunks * (side * side * channels * itemsize + CRC_BYTES)
    return LevelState.nbytes(plan, dtype) + target + overview.nbytes(plan.shape)


def held_target_bytes(plan: geometry.TilePlan, dtype, graph) -> int:
    """Bytes of the content target's windows that the tiles of ``plan`` read (each padded by
    the halo, so neighbours' overlap counts twice), held in memory with the state: the
    target's channels, or the content image's three where the tiles remake the target."""
    channels = 3 if graph.remakes_content_target else graph.network.channels(graph.content_layer)
    cells = sum((r.stop - r.start) * (c.stop - c.start) for r, c in graph.content_windows(plan))
    return cells * channels * np.dtype(dtype).itemsize


def disk_needed(sizes: list[LevelSize]) -> int:
    """The most bytes a run directory holds at once: the level that runs, with the final
    canvases of the levels before it."""
    return max(sum(s.kept_bytes for s in sizes[:i]) + s.running_bytes for i, s in enumerate(sizes))


def check_disk(workdir: Path, output: Path, sizes: list[LevelSize], pyramid: bool) -> None:
    """Raise an :class:`InputError` before any work when the run directory's or the output's
    disk is too small. What an earlier run wrote into the run directory counts as free: a
    resumed run reuses it, a new run deletes it."""
    h, w = sizes[-1].shape
    # uint8 RGB; a pyramid adds < 1/3, and its writer keeps < 1/3 more while it writes
    image = h * w * 3 * (5 if pyramid else 3) // 3
    state = disk_needed(sizes)
    workdir_disk, output_disk = (
        files.nearest_existing(workdir),
        files.nearest_existing(output.parent),
    )
    if workdir_disk.stat().st_dev == output_disk.stat().st_dev:
        state = max(state, sum(s.kept_bytes for s in sizes) + image)  # output written last
        needs = [(workdir, state)]
    else:
        needs = [(workdir, state), (output.parent, image)]
    for path, needed in needs:
        reusable = rundir.owned_bytes(workdir) if path == workdir else 0
        require_free(path, needed, reusable, " (--workdir)" if path == workdir else "")


def require_free(path: Path, needed: int, reusable: int = 0, option: str = "") -> None:
    """Raise an :class:`InputError` unless the disk of ``path`` has ``needed`` bytes free
    (counting ``reusable`` bytes that will be deleted or reused as free); ``option`` is the
    setting that chooses ``path``, for the message."""
    free = shutil.disk_usage(files.nearest_existing(path)).free + reusable
    if needed > free:
        raise InputError(
            f"the run needs {readable(needed)} on the disk of {path} and "
            f"{readable(free)} is free: free space, or choose a larger disk{option}"
        )

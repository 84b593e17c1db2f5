"""A level's overview: its canvas halved again and again, kept beside its state at checkpoints.

A viewer (``daskstyle view``) shows a level at any zoom. At full resolution a tile reads the
canvas's own chunks; zoomed out, one tile stands for up to the whole canvas, which it must
not read. So when the level's state on disk moves to another step (a checkpoint), the run
keeps in the level's folder ``overview/``: a zarr group of arrays ``1``, ``2``, ...,
array k the canvas in means of 2^k x 2^k pixels (sizes rounded up, as Deep Zoom's levels are;
an odd row or column is its own pair), down to the first that fits :data:`SMALLEST` px. Each
array holds 8-bit samples, rounded as the previews are, with the crc32c of each chunk, and the
group's attributes name the canvas it shows (``step``, ``current``) and the run's id. Writing
it reads the canvas once more, so it is skipped at checkpoints that would make it take more
than :data:`MOST_SHARE` of the run's time; the level's last canvas always has its overview.

The overview reads the canvas in windows of its halving (each task its own), and a level's
preview is shrunk from it (:func:`shrunk`): neither holds more than a few chunks at once,
whatever the canvas's size.

It is written whole under a temporary name and swapped in, so a reader sees an old overview or
the new one; the folder is the level's (its ``zarr.json`` carries the run's id), and
:meth:`daskstyle.optimise.state.LevelState.release` keeps it with the final canvas.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from daskstyle.core.errors import DamagedStateError
from daskstyle.core.geometry import scaled_shape
from daskstyle.io import resize
from daskstyle.optimise.state import (
    CRC_BYTES,
    OVERVIEW,
    LevelState,
    check_whole,
    open_array,
    read_zarr,
    store_with_checksums,
)

#: The overview stops halving at the first level whose long side is at most this (px).
SMALLEST = 256

#: The most of a run's time that writing overviews may take: one is written again only once
#: the time since the last is this many times as long as that one took.
MOST_SHARE = 0.1

#: The chunks of the overview's arrays (px): a viewer's 256-px tile reads one, at most four.
CHUNK = 512


def overview_shapes(shape: tuple[int, int], smallest: int = SMALLEST) -> list[tuple[int, int]]:
    """(H, W) of each level of the overview of a canvas of ``shape``: halved, rounding up,
    until the long side is at most ``smallest`` (none when the canvas is that small)."""
    shapes = []
    while max(shape) > smallest:
        shape = (-(-shape[0] // 2), -(-shape[1] // 2))
        shapes.append(shape)
    return shapes


def shown(path: Path) -> dict | None:
    """The attributes of the overview at ``path`` (``step``, ``current``, ``levels``), or None
    where there is none whole."""
    try:
        return json.loads((Path(path) / "zarr.json").read_text(encoding="utf-8"))["attributes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def nbytes(shape: tuple[int, int], smallest: int = SMALLEST) -> int:
    """Bytes on disk of the overview of a canvas of ``shape`` (edge chunks stored whole, each
    with its checksum)."""
    chunks = [-(-h // CHUNK) * -(-w // CHUNK) for h, w in overview_shapes(shape, smallest)]
    return sum(chunks) * (CHUNK * CHUNK * 3 + CRC_BYTES)


def keep_up(state: LevelState, smallest: int = SMALLEST, most_share: float = MOST_SHARE) -> bool:
    """Write the overview of ``state``'s current canvas unless the one there shows it (none
    for a canvas of at most ``smallest`` px, which a viewer halves itself), or was written so
    lately that writing it again would take more than ``most_share`` of the run's time since
    (the level's last is always written). Whether it wrote one."""
    if not overview_shapes(state.canvas_store().shape[:2], smallest):
        return False
    attrs = state.attrs
    kept = shown(state.path / OVERVIEW) or {}
    if _shows_current(kept, attrs):
        return False
    since = time.time() - kept.get("written_at", -math.inf)
    if not state.done and since * most_share < kept.get("seconds", 0):
        return False
    window = (2 * CHUNK, 2 * CHUNK, 3)  # halved without a rechunk
    canvas = read_zarr(state.canvas_store(), attrs["run_id"], attrs["step"], chunks=window)
    try:
        write(canvas, state.path / OVERVIEW,
              {"step": attrs["step"], "current": attrs["current"], "run_id": attrs["run_id"]},
              smallest)  # fmt: skip
    except ValueError:  # a chunk failing its crc32c in a task: name it
        state.check()
        raise
    return True


def at_least(state: LevelState, side: int) -> da.Array | None:
    """The smallest level of ``state``'s overview whose long side is at least ``side`` px, as
    float32 samples on 0-255, for pictures of the canvas shrunk (a level's preview): where the
    overview shows the current canvas whole and has such a level; else None."""
    path = state.path / OVERVIEW
    kept = shown(path) or {}
    if not _shows_current(kept, state.attrs):
        return None
    shapes = overview_shapes(state.canvas_store().shape[:2])
    fitting = [number for number, shape in enumerate(shapes, start=1) if max(shape) >= side]
    if not fitting or fitting[-1] > kept.get("levels", 0):
        return None
    try:
        level = open_array(path / str(fitting[-1]))
        check_whole(level)
    except DamagedStateError:  # not whole: the canvas will do
        return None
    return da.from_zarr(level).astype(np.float32)


def shrunk(state: LevelState, picture: Callable[[da.Array], da.Array], side: int) -> da.Array:
    """``state``'s canvas as ``picture`` shows it, shrunk to ``side`` px at most (a level's
    preview): from the overview where it has a level that large (:func:`at_least`, a few
    megapixels, where shrinking the canvas itself holds rows of its chunks), else from the
    canvas."""
    shape = state.canvas_store().shape[:2]
    scale = min(1.0, side / max(shape))
    if scale == 1.0:
        return picture(state.canvas())
    smaller = at_least(state, side)
    source = picture(state.canvas() if smaller is None else smaller)
    return resize.resize(source, scaled_shape(shape, scale))


def _shows_current(kept: dict, attrs: dict) -> bool:
    """Whether an overview's attributes ``kept`` name the canvas a level's ``attrs`` call
    current (its step and buffer)."""
    return (kept.get("step"), kept.get("current")) == (attrs["step"], attrs["current"])


def write(canvas: da.Array, path: Path, attributes: dict, smallest: int = SMALLEST) -> None:
    """The overview of ``canvas`` ((H, W, 3) on 0-255) at ``path``, with ``attributes``:
    written under a temporary name beside it and swapped in whole."""
    path = Path(path).absolute()
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    group = zarr.open_group(tmp, mode="w")
    level, sources, targets = canvas.astype(np.float64), [], []  # exact means of float32
    for number, shape in enumerate(overview_shapes(canvas.shape[:2], smallest), start=1):
        level = halve(level)
        targets.append(zarr.create_array(
            str(tmp / str(number)), shape=(*shape, 3), chunks=(CHUNK, CHUNK, 3), dtype=np.uint8,
            compressors=[Crc32cCodec()], fill_value=0,
        ))  # fmt: skip
        sources.append(da.clip(da.rint(level), 0, 255))
    start = time.monotonic()
    if sources:
        store_with_checksums(sources, targets)
    seconds, written_at = time.monotonic() - start, time.time()
    group.attrs.put({**attributes, "levels": len(sources), "seconds": seconds,
                     "written_at": written_at})  # fmt: skip
    old = path.with_name(f"{path.name}.{uuid.uuid4().hex}.old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def halve(image: da.Array) -> da.Array:
    """``image`` (H, W, C) in means of 2 x 2 pixels, (ceil(H/2), ceil(W/2), C): an odd last
    row or column is averaged with itself."""
    h, w = image.shape[:2]
    padded = da.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    padded = padded.rechunk((2 * CHUNK, 2 * CHUNK, -1))
    return da.coarsen(np.mean, padded, {0: 2, 1: 2})

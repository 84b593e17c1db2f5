"""Where tile tasks read their windows of an image, and the tree sum of their results.

Each tile task reads its own padded tile (clipped at the image border, so edge tiles get no
outer halo): straight from the zarr store of an on-disk image, or stitched from the
neighbouring chunks of a Dask array. Dask only; no torch here.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from functools import reduce

import dask
import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed

from daskstyle.core import geometry


def tree_sum(items: list[Delayed], split_every: int) -> Delayed:
    """Sum delayed values pairwise-by-``split_every`` into one (a tree reduction)."""
    if split_every < 2:
        raise ValueError("split_every must be at least 2")
    while len(items) > 1:
        items = [
            dask.delayed(_sum)(*items[i : i + split_every])
            for i in range(0, len(items), split_every)
        ]
    return items[0]


def _sum(*values):
    return reduce(operator.add, values)


@dataclass(frozen=True)
class ChunkWindow:
    """A window of a chunked image as a task argument: the chunks it touches (Delayed in the
    graph, arrays in the task) and the part of each inside the window."""

    chunks: list[list]
    row_cuts: list[slice]
    col_cuts: list[slice]

    def read(self) -> np.ndarray:
        rows = [
            np.concatenate([chunk[r, c] for chunk, c in zip(row, self.col_cuts)], axis=1)
            for row, r in zip(self.chunks, self.row_cuts)
        ]
        return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0)


def take_chunks(windows: list) -> tuple[list, list]:
    """``windows`` as a task gets them: each :class:`ChunkWindow` without its chunks (None in
    their place), and those chunks, flat, to be the task's own arguments (Dask finalises the
    collections nested in an argument at every call, a few milliseconds each; a top-level one
    is only referred to). :func:`put_chunks` puts them back."""
    bare, chunks = [], []
    for window in windows:
        if isinstance(window, ChunkWindow):
            chunks += [chunk for row in window.chunks for chunk in row]
            window = dataclasses.replace(window, chunks=[[None] * len(r) for r in window.chunks])
        bare.append(window)
    return bare, chunks


def put_chunks(windows: list, chunks) -> list:
    """The ``windows`` that :func:`take_chunks` gave, with their ``chunks`` back in place."""
    given = iter(chunks)
    return [
        dataclasses.replace(w, chunks=[[next(given) for _ in row] for row in w.chunks])
        if isinstance(w, ChunkWindow) else w
        for w in windows
    ]  # fmt: skip


@dataclass(frozen=True)
class StoreWindow:
    """A window that the task using it reads straight from a zarr array."""

    array: zarr.Array
    rows: slice
    cols: slice

    def read(self) -> np.ndarray:
        return self.array[self.rows, self.cols]


@dataclass(frozen=True)
class Blocks:
    """A chunked (H, W, C) Dask array as a grid of delayed chunks (its graph optimised once,
    unless its tasks ask for resources: optimising here would drop what they ask for): a task
    gets the chunks its window touches, each chunk computed once for all tasks."""

    grid: tuple[tuple[Delayed, ...], ...]
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def of(cls, image: da.Array) -> Blocks:
        image = image.rechunk({2: -1})
        layers = image.__dask_graph__().layers.values()
        grid = image.to_delayed(optimize_graph=not any(layer.annotations for layer in layers))
        return cls(tuple(tuple(row[:, 0]) for row in grid), *image.chunks[:2])

    @property
    def shape(self) -> tuple[int, int]:
        return sum(self.rows), sum(self.cols)

    def window(self, rows: slice, cols: slice) -> ChunkWindow:
        row_chunks, row_cuts = geometry.block_cuts(self.rows, rows.start, rows.stop)
        col_chunks, col_cuts = geometry.block_cuts(self.cols, cols.start, cols.stop)
        chunks = [[self.grid[i][j] for j in col_chunks] for i in row_chunks]
        return ChunkWindow(chunks, row_cuts, col_cuts)


@dataclass(frozen=True)
class Store:
    """A zarr array that tasks read their windows from themselves: no chunk tasks and no
    transfers between workers, which all see the store (the run directory)."""

    array: zarr.Array

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape[:2])

    def window(self, rows: slice, cols: slice) -> StoreWindow:
        return StoreWindow(self.array, rows, cols)


@dataclass(frozen=True)
class HeldWindows:
    """An image's windows that a level's tasks read, each read once and held in memory (on the
    workers of a cluster) for all the level's steps: a task gets its own window whole, and no
    neighbour's chunk moves for it. ``held``: each window's (row start, row stop, column start,
    column stop) and its persisted Delayed."""

    held: dict[tuple[int, int, int, int], Delayed]
    shape: tuple[int, int]

    @classmethod
    def of(cls, image, windows: list[tuple[slice, slice]]) -> HeldWindows:
        """``windows`` of ``image`` (zarr, Dask or NumPy, H x W x C), read now and persisted."""
        tiled = source(image)
        reads = {_bounds(*w): dask.delayed(_read)(tiled.window(*w)) for w in windows}
        return cls(dict(zip(reads, dask.persist(*reads.values()))), tiled.shape)

    def window(self, rows: slice, cols: slice) -> ChunkWindow:
        return ChunkWindow([[self.held[_bounds(rows, cols)]]], [slice(None)], [slice(None)])


def _bounds(rows: slice, cols: slice) -> tuple[int, int, int, int]:
    return rows.start, rows.stop, cols.start, cols.stop


def _read(window: ChunkWindow | StoreWindow) -> np.ndarray:
    return window.read()


#: Where tile tasks read an image's windows from.
Source = Blocks | Store | HeldWindows


def source(image) -> Source:
    """Where tile tasks read ``image`` (zarr, Dask or NumPy, H x W x C; or its windows, held)
    from."""
    if isinstance(image, HeldWindows):
        return image
    if isinstance(image, zarr.Array):
        return Store(image)
    return Blocks.of(da.asarray(image))


def padded_tiles(image: Source, plan: geometry.TilePlan, depth: int):
    """(tile, origin, window) for each tile of ``plan`` read with a ``depth`` halo."""
    for tile in plan:
        rows, cols = tile.padded(depth, plan.shape)
        yield tile, (rows.start, cols.start), image.window(rows, cols)


def as_tiled(image, plan: geometry.TilePlan) -> da.Array:
    """``image`` (NumPy or Dask, H x W x 3) as a Dask array chunked by ``plan``."""
    chunks = (*plan.chunks, 3)
    if isinstance(image, da.Array):
        return image.rechunk(chunks)
    return da.from_array(np.asarray(image), chunks=chunks)

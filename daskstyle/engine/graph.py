"""Dask graphs of one style-transfer evaluation: the Gram pass and the gradient pass.

Each tile task reads its own padded tile (clipped at the image border, so edge tiles get no
outer halo): straight from the zarr store of an on-disk canvas, or stitched from the
neighbouring chunks of a Dask array. One task per tile, for tiles of any size, also ones
smaller than the halo (``map_overlap`` refuses those), and no chunk computed twice.
The weights (persisted once on a cluster) and the Gram errors are single inputs that every
tile task shares; partial Grams are summed by a tree reduction.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import reduce

import dask
import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed

from daskstyle.compute.executor import persist
from daskstyle.core import geometry
from daskstyle.core.errors import InputError
from daskstyle.engine import kernels
from daskstyle.networks.catalog import Network

#: Where the Grams that a tile's gradient compares with the style are taken: ``image``, the
#: whole canvas's (exact); ``tile``, the tile core's own (an ablation, docs/design.md).
GRAM_SCOPES = ("image", "tile")


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
    """A chunked (H, W, C) Dask array as a grid of delayed chunks (its graph optimised once):
    a task gets the chunks its window touches, each chunk computed once for all tasks."""

    grid: tuple[tuple[Delayed, ...], ...]
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def of(cls, image: da.Array) -> Blocks:
        image = image.rechunk({2: -1})
        return cls(tuple(tuple(row[:, 0]) for row in image.to_delayed()), *image.chunks[:2])

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


def source(image) -> Blocks | Store:
    """Where tile tasks read ``image`` (zarr, Dask or NumPy, H x W x C) from."""
    if isinstance(image, zarr.Array):
        return Store(image)
    return Blocks.of(da.asarray(image))


def padded_tiles(image: Blocks | Store, plan: geometry.TilePlan, depth: int):
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


@dataclass(frozen=True)
class StyleGraph:
    """Builds the graphs for one network, layer choice, dtype and set of weights.

    With ``resources`` (e.g. ``{"GPU": 1}``) every network task asks the distributed
    scheduler for them; compute such graphs with ``optimization.fuse.active`` off, as
    low-level fusion drops annotations. ``gram_scope`` (:data:`GRAM_SCOPES`) is an
    experiment switch: see :meth:`loss_and_grad`.
    """

    network: Network
    content_layer: str
    content_weight: float
    style_weights: dict[str, float]
    spec: kernels.ModelSpec
    weights: Delayed  # persisted on a cluster
    halo: geometry.Halo
    split_every: int = 8
    resources: dict | None = None
    tv_weight: float = 0.0
    gram_scope: str = "image"

    def on_current_scheduler(self, resources: dict | None) -> StyleGraph:
        """This graph for the scheduler that computes now: its weights persisted there once,
        its network tasks asking for ``resources``."""
        return dataclasses.replace(self, weights=persist(self.weights), resources=resources)

    def _model_call(self, function, windows: list, *args):
        """A task running ``function(model, *(w.read() for w in windows), *args)``; it asks
        for ``resources`` (a GPU)."""
        with dask.annotate(resources=self.resources) if self.resources else nullcontext():
            return dask.delayed(_with_model)(function, self.spec, self.weights, windows, *args)

    def statistics(self, image, plan: geometry.TilePlan) -> Delayed:
        """Raw Grams of the style layers over a whole image, tile by tile (forward only)."""
        return self._statistics(source(image), plan)

    def _statistics(self, image: Blocks | Store, plan: geometry.TilePlan) -> Delayed:
        return tree_sum(self._partial_statistics(image, plan), self.split_every)

    def _partial_statistics(self, image: Blocks | Store, plan: geometry.TilePlan) -> list:
        """Raw Grams of each tile's core, in the order of ``plan``."""
        layers = tuple(self.style_weights)
        return [
            self._model_call(kernels.tile_statistics, [window], origin, _core(tile), layers)
            for tile, origin, window in padded_tiles(image, plan, self.halo.forward)
        ]

    def _tile_scopes(self, canvas: Blocks | Store, plan: geometry.TilePlan, style_grams):
        """(terms, raw Grams, Gram errors) of each tile under ``gram_scope="tile"``: the
        tile's core alone, counted as if it were a whole image."""
        scopes = []
        for tile, stats in zip(plan, self._partial_statistics(canvas, plan)):
            terms = self.terms((tile.y1 - tile.y0, tile.x1 - tile.x0))
            if not all(terms.cells.values()):
                raise InputError(f"gram_scope 'tile': a {plan.tile}-px tiling of {plan.shape} "
                                 "leaves a tile without a cell of a layer; choose another tile")  # fmt: skip
            scopes.append((terms, stats, dask.delayed(_errors)(stats, style_grams, terms)))
        return scopes

    def normalised_grams(self, image: da.Array, plan: geometry.TilePlan) -> Delayed:
        """Ĝ_l = G_l / (H_l W_l) of an image: a style's Gram matrices, as the loss compares them."""
        terms = self.terms(plan.shape)
        return dask.delayed(_normalise)(self.statistics(image, plan), terms)

    def style_target(
        self, styles: Sequence[tuple[da.Array, geometry.TilePlan]], blend: Sequence[float]
    ) -> Delayed:
        """Σ_i w_i Ĝ_l(s_i): the blended normalised Grams of several styles, each tiled by its
        own plan, with the weights ``blend`` (normalised to sum 1 by
        :func:`daskstyle.settings.blend_weights`). Always read with the layers' exact halo:
        a halo experiment changes how the canvas is painted, not the style it aims at."""
        exact = dataclasses.replace(self, halo=self.network.halo(self.spec.layers))
        grams = [exact.normalised_grams(as_tiled(image, plan), plan) for image, plan in styles]
        return dask.delayed(_blend)(grams, tuple(blend))

    def terms(self, shape: tuple[int, int]) -> kernels.LossTerms:
        layers = {self.content_layer, *self.style_weights}
        cells = {
            name: geometry.feature_size(shape[0], self.network.scale(name))
            * geometry.feature_size(shape[1], self.network.scale(name))
            for name in layers
        }
        return kernels.LossTerms(
            content_layer=self.content_layer,
            content_weight=self.content_weight,
            style_weights=dict(self.style_weights),
            cells=cells,
            channels={name: self.network.channels(name) for name in layers},
            pixels=shape[0] * shape[1],
            tv_weight=self.tv_weight,
        )

    @property
    def remakes_content_target(self) -> bool:
        """Whether the gradient pass remakes the content target from the content image in each
        tile instead of reading it: where the content layer lies before the first pooling. Its
        features there hold 64 values per pixel, 21 times the picture's 3 (a 16,384² canvas's
        target at relu1_1 is 69 GB in float32), and cost one or two convolutions to remake."""
        return self.network.scale(self.content_layer) == 1

    def content_target(self, content, plan: geometry.TilePlan):
        """What the gradient pass reads as the content target of a content image: its
        features (:meth:`content_features`), or where :attr:`remakes_content_target`, the
        content image itself."""
        if self.remakes_content_target:
            return content
        return self.content_features(content, plan)

    def content_features(self, content, plan: geometry.TilePlan) -> da.Array:
        """φ_O(o), the content target, over the whole image: (H_O, W_O, C_O), one chunk per
        tile (forward only, exact through the forward halo). Compute it once per level."""
        scale = self.network.scale(self.content_layer)
        channels = self.network.channels(self.content_layer)
        rows: list[list[da.Array]] = [[] for _ in range(plan.grid[0])]
        for tile, origin, window in padded_tiles(source(content), plan, self.halo.forward):
            cells = (*tile.cells(scale), channels)
            task = self._model_call(
                kernels.tile_content_features, [window], origin, _core(tile), self.content_layer
            )
            rows[tile.row].append(da.from_delayed(task, cells, dtype=self.spec.dtype))
        return _assemble(rows)

    def loss_and_grad(self, canvas, content_target, plan: geometry.TilePlan, style_grams):
        """Loss (a 0-d Dask array) and gradient (chunked like ``plan``) of a canvas, given
        the content target ``content_target`` (:meth:`content_target`) and the style target
        ``style_grams`` (:meth:`style_target`).

        ``canvas`` and ``content_target`` are Dask, NumPy or zarr arrays (tiles read zarr directly).
        Both results are Dask arrays so that computing them together runs every tile once.

        ``gram_scope="tile"`` (an experiment, not for paintings): each tile of a tiled plan is
        styled as if it were a whole image: its gradient pass holds E_l = Ĝ_l(s) - G_l(core)/
        cells(core) constant over its whole padded tile, and its loss terms count the cells
        (and pixels) of its core instead of the canvas's; the loss is the sum of these
        per-tile losses. A one-tile plan is the same under both scopes.
        """
        terms, canvas, content_target, style_grams = self._inputs(
            canvas, content_target, plan, style_grams
        )
        if len(plan) == 1:
            windows = [x.window(*(slice(0, n) for n in x.shape)) for x in (canvas, content_target)]
            result = self._model_call(_whole_image, windows, terms, style_grams,
                                      self.remakes_content_target)  # fmt: skip
            grad = da.from_delayed(result[1], (*plan.shape, 3), dtype=self.spec.dtype)
            return _scalar(result[0]), grad.rechunk((*plan.chunks, 3))
        if self.gram_scope == "tile":
            scopes = self._tile_scopes(canvas, plan, style_grams)
        else:
            stats = self._statistics(canvas, plan)
            scopes = [(terms, stats, dask.delayed(_errors)(stats, style_grams, terms))] * len(plan)
        results, grad = self._gradient_pass(canvas, content_target, plan, scopes)
        if self.gram_scope == "tile":
            losses = [dask.delayed(_total_loss)(r[1], r[2], stats, style_grams, t)
                      for r, (t, stats, _) in zip(results, scopes)]  # fmt: skip
            return _scalar(tree_sum(losses, self.split_every)), grad
        return _scalar(self._loss(results, stats, style_grams, terms)), grad

    def lagged_loss_and_grad(self, canvas, content_target, plan: geometry.TilePlan, style_grams,
                             previous: kernels.Statistics | None = None):  # fmt: skip
        """The one-pass step of ``--gram lagged``: the gradient pass holds constant the Gram
        errors of ``previous``, the raw Grams of an earlier canvas (None: this canvas's, from a
        Gram pass first), and sums this canvas's raw Grams from the same forward. Returns the
        loss of ``canvas`` (exact: its own Grams), the gradient (exact only where ``previous``
        is this canvas's) and the raw Grams, for the next step's ``previous``: the loss and
        the Grams as Delayed (a task that keeps the Grams can precede the loss), the gradient
        as a Dask array. For
        tiled plans (a whole-image task is one pass already) and ``gram_scope="image"``."""
        if len(plan) == 1 or self.gram_scope != "image":
            raise ValueError("lagged Grams need a tiled plan and gram_scope 'image'")
        terms, canvas, content_target, style_grams = self._inputs(
            canvas, content_target, plan, style_grams
        )
        held = self._statistics(canvas, plan) if previous is None else _single(previous)
        errors = dask.delayed(_errors)(held, style_grams, terms)
        scopes = [(terms, None, errors)] * len(plan)
        results, grad = self._gradient_pass(canvas, content_target, plan, scopes, statistics=True)
        stats = tree_sum([r[3] for r in results], self.split_every)
        return self._loss(results, stats, style_grams, terms), grad, stats

    def _inputs(self, canvas, content_target, plan: geometry.TilePlan, style_grams):
        """The loss terms of ``plan``, where tiles read the canvas and content target, and
        the style target as one graph key (not a copy in every task that uses it)."""
        return self.terms(plan.shape), source(canvas), source(content_target), _single(style_grams)

    def _gradient_pass(self, canvas: Blocks | Store, content_target: Blocks | Store,
                       plan: geometry.TilePlan, scopes, statistics: bool = False):  # fmt: skip
        """Each tile's (delayed) :func:`daskstyle.engine.kernels.tile_gradient` result under its
        scope's terms and Gram errors, and the gradient assembled from them. A remade content
        target is remade from the content over the canvas's window (the content layer's scale
        is 1: the same slices)."""
        scale = self.network.scale(self.content_layer)
        kernel = (kernels.tile_gradient_remaking_target if self.remakes_content_target
                  else kernels.tile_gradient)  # fmt: skip
        rows: list[list[da.Array]] = [[] for _ in range(plan.grid[0])]
        results = []
        tiles = padded_tiles(canvas, plan, self.halo.total)
        for (tile, origin, canvas_window), (tile_terms, _, errors) in zip(tiles, scopes):
            rows_px, cols_px = tile.padded(self.halo.total, plan.shape)
            cells = [slice(px.start // scale, px.stop // scale) for px in (rows_px, cols_px)]
            content_window = content_target.window(*cells)
            result = self._model_call(kernel, [canvas_window, content_window],
                                      origin, _core(tile), tile_terms, errors, statistics)  # fmt: skip
            shape = (tile.y1 - tile.y0, tile.x1 - tile.x0, 3)
            rows[tile.row].append(da.from_delayed(result[0], shape, dtype=self.spec.dtype))
            results.append(result)
        return results, _assemble(rows)

    def _loss(self, results, stats, style_grams, terms: kernels.LossTerms) -> Delayed:
        """The canvas's loss from its tiles' gradient results and its raw Grams ``stats``."""
        squared = tree_sum([r[1] for r in results], self.split_every)
        tv = tree_sum([r[2] for r in results], self.split_every) if terms.tv_weight else 0.0
        return dask.delayed(_total_loss)(squared, tv, stats, style_grams, terms)


def _assemble(rows: list[list[da.Array]]) -> da.Array:
    """One array from a grid of per-tile arrays."""
    return da.concatenate([da.concatenate(row, axis=1) for row in rows], axis=0)


def _single(value) -> Delayed:
    return value if isinstance(value, Delayed) else dask.delayed(value, traverse=False)


def _scalar(value: Delayed) -> da.Array:
    return da.from_delayed(value, (), dtype=np.float64)


def _whole_image(model, canvas, content_target, terms, style_grams, remake: bool):
    """The only network task of its step: it may use every thread of its Dask worker, which
    otherwise runs torch on one thread per task."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):  # not on a distributed worker
        threads = None
    with kernels.torch_threads(threads):
        return kernels.whole_loss_and_grad(model, canvas, content_target, terms, style_grams,
                                           remake)  # fmt: skip


def _with_model(function, spec, weights: Mapping, windows: list, *args):
    return function(kernels.get_model(spec, weights), *(w.read() for w in windows), *args)


def _core(tile: geometry.Tile) -> tuple[int, int, int, int]:
    return tile.y0, tile.y1, tile.x0, tile.x1


def _normalise(stats: kernels.Statistics, terms: kernels.LossTerms) -> dict[str, np.ndarray]:
    return {name: gram / terms.cells[name] for name, gram in stats.grams.items()}


def _blend(grams: list[dict[str, np.ndarray]], weights: tuple[float, ...]):
    """Σ_i w_i grams_i, summed in the given order from w_0 grams_0 (so weights (1, 0) give
    the first grams exactly)."""
    blended = {name: weights[0] * gram for name, gram in grams[0].items()}
    for weight, more in zip(weights[1:], grams[1:]):
        blended = {name: gram + weight * more[name] for name, gram in blended.items()}
    return blended


def _errors(stats, style_grams, terms) -> dict[str, np.ndarray]:
    """E_l = Ĝ_l(s) - Ĝ_l(p): the Gram errors held constant in the gradient pass."""
    return {name: style_grams[name] - grams for name, grams in _normalise(stats, terms).items()}


def _total_loss(squared_error: float, tv_squares: float, stats, style_grams,
                terms: kernels.LossTerms) -> float:  # fmt: skip
    """The loss from the tiles' summed squared content errors and pixel differences and the
    Gram pass's Grams."""
    loss = terms.content(squared_error) + terms.style(_normalise(stats, terms), style_grams)
    if terms.tv_weight:
        loss = loss + terms.tv(tv_squares)
    return float(loss)

"""Dask graphs of one style-transfer evaluation: the Gram pass and the gradient pass.

Each tile task reads its own padded tile (:mod:`daskstyle.engine.tiles`): one task per tile,
for tiles of any size, also ones smaller than the halo (``map_overlap`` refuses those), and
no chunk computed twice. Region guides, where there are any, are a second input of each
tile, read through the same window as the canvas. The weights (persisted once on a cluster)
and the Gram errors are single inputs that every tile task shares; partial Grams are summed
by a tree reduction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed

from daskstyle.compute.executor import persist
from daskstyle.core import geometry
from daskstyle.core.errors import InputError
from daskstyle.engine import featurenet, guides, kernels, remade, tiles
from daskstyle.engine.chunk_tasks import part_array
from daskstyle.engine.tiles import Source, as_tiled, padded_tiles, source, tree_sum
from daskstyle.networks.catalog import Network

#: Where the Grams that a tile's gradient compares with the style are taken: ``image``, the
#: whole canvas's (exact); ``tile``, the tile core's own (an ablation, docs/design.md).
GRAM_SCOPES = ("image", "tile")


@dataclass(frozen=True)
class Regions:
    """Region guides of one canvas size: ``guide`` (H, W, R) holds the R regions' weights of
    each pixel (NumPy, Dask or zarr); region r takes the style of the r-th style image.
    ``propagation``: how the guides reach the layers
    (:data:`daskstyle.engine.guides.GUIDE_PROPAGATIONS`)."""

    guide: object
    propagation: str = "resize"


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
    spec: featurenet.ModelSpec
    weights: Delayed  # persisted on a cluster
    halo: geometry.Halo
    split_every: int = 8
    resources: dict | None = None
    tv_weight: float = 0.0
    gram_scope: str = "image"
    regions: Regions | None = None  # a level's region guides (docs/design.md)

    def on_current_scheduler(self, resources: dict | None) -> StyleGraph:
        """This graph for the scheduler that computes now: its weights persisted there once,
        its network tasks asking for ``resources``."""
        return dataclasses.replace(self, weights=persist(self.weights), resources=resources)

    def _model_call(self, function, windows: list, *args, guide=None):
        """A task running ``function(model, *(w.read() for w in windows), *args)``, with the
        window ``guide`` read as a :class:`daskstyle.engine.guides.Guide` when there is one;
        it asks for ``resources`` (a GPU). The windows' chunks are its own arguments
        (:func:`daskstyle.engine.tiles.take_chunks`)."""
        propagation = self.regions.propagation if self.regions else "resize"
        kwargs = {} if guide is None else {"propagation": propagation}
        bare, chunks = tiles.take_chunks(windows if guide is None else [*windows, guide])
        with dask.annotate(resources=self.resources) if self.resources else nullcontext():
            return dask.delayed(_with_model)(function, self.spec, self.weights, bare, len(args),
                                             *args, *chunks, **kwargs)  # fmt: skip

    def statistics(self, image, plan: geometry.TilePlan, guide=None) -> Delayed:
        """Raw Grams of the style layers over a whole image, tile by tile (forward only);
        with ``guide`` (H, W, R), each region's guided Grams and masses."""
        return self._statistics(source(image), plan, guide)

    def _statistics(self, image: Source, plan: geometry.TilePlan, guide=None):
        return tree_sum(self._partial_statistics(image, plan, guide), self.split_every)

    def _partial_statistics(self, image: Source, plan: geometry.TilePlan,
                            guide=None) -> list:  # fmt: skip
        """Raw Grams of each tile's core, in the order of ``plan``."""
        layers = tuple(self.style_weights)
        guides_of = self._guide_windows(guide, plan, self.halo.forward)
        return [
            self._model_call(
                kernels.tile_statistics, [window], origin, _core(tile), layers, guide=guide_window
            )  # fmt: skip
            for (tile, origin, window), guide_window in zip(
                padded_tiles(image, plan, self.halo.forward), guides_of
            )
        ]

    def _guide_windows(self, guide, plan: geometry.TilePlan, depth: int):
        """Each tile's window of the (H, W, R) ``guide`` read with a ``depth`` halo, as the
        image's (None for each tile without a guide)."""
        if guide is None:
            return [None] * len(plan)
        if getattr(guide, "shape", (None,))[:2] != plan.shape:
            raise InputError(f"region guides of {tuple(guide.shape[:2])} px do not cover the "
                             f"{plan.shape} px image: give guides of the image's size")  # fmt: skip
        tiled = source(guide if not isinstance(guide, np.ndarray)
                       else da.from_array(guide, chunks=(*plan.chunks, -1)))  # fmt: skip
        return [window for *_, window in padded_tiles(tiled, plan, depth)]

    def _canvas_guide(self):
        return None if self.regions is None else self.regions.guide

    def _tile_scopes(self, canvas: Source, plan: geometry.TilePlan, style_grams):
        """(terms, raw Grams, Gram errors) of each tile under ``gram_scope="tile"``: the
        tile's core alone, counted as if it were a whole image."""
        if self.regions is not None:
            raise InputError("gram_scope 'tile' is an ablation without regions: leave out one")
        scopes = []
        for tile, stats in zip(plan, self._partial_statistics(canvas, plan)):
            terms = self.terms((tile.y1 - tile.y0, tile.x1 - tile.x0))
            if not all(terms.cells.values()):
                raise InputError(f"gram_scope 'tile': a {plan.tile}-px tiling of {plan.shape} "
                                 "leaves a tile without a cell of a layer; choose another tile")  # fmt: skip
            scopes.append((terms, stats, dask.delayed(_errors)(stats, style_grams, terms)))
        return scopes

    def normalised_grams(self, image: da.Array, plan: geometry.TilePlan, guide=None):
        """Ĝ_l = G_l / (H_l W_l) of an image: a style's Gram matrices, as the loss compares
        them (Delayed); with ``guide`` (H, W, 1), the Gram of the guided part, G / M."""
        if guide is None:
            return dask.delayed(_normalise)(self.statistics(image, plan), self.terms(plan.shape))
        return dask.delayed(_guided_normalise)(self.statistics(image, plan, guide))

    def style_target(self, styles: Sequence[tuple], blend: Sequence[float]) -> Delayed:
        """Σ_i w_i Ĝ_l(s_i): the blended normalised Grams of several styles, each tiled by its
        own plan, with the weights ``blend`` (normalised to sum 1 by
        :func:`daskstyle.settings.blend_weights`). Always read with the layers' exact halo:
        a halo experiment changes how the canvas is painted, not the style it aims at.
        ``styles``: (image, plan) or (image, plan, guide) each; under :attr:`regions`, the
        r-th style's Ĝ_l (of its part ``guide``, (Hs, Ws, 1), where given) is region r's
        target, stacked (R, C, C), and ``blend`` plays no part."""
        exact = dataclasses.replace(self, halo=self.network.halo(self.spec.layers), regions=None)
        grams = [exact.normalised_grams(as_tiled(image, plan), plan, *guide)
                 for image, plan, *guide in styles]  # fmt: skip
        if self.regions is not None:
            return dask.delayed(_stack)(grams)
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

    def content_windows(self, plan: geometry.TilePlan) -> list[tuple[slice, slice]]:
        """The windows of the content target (:meth:`content_target`) that a step reads
        (:func:`daskstyle.core.geometry.cell_windows` with the whole halo)."""
        scale = self.network.scale(self.content_layer)
        return geometry.cell_windows(plan, self.halo.total, scale)

    def content_features(self, content, plan: geometry.TilePlan) -> da.Array:
        """φ_O(o), the content target, over the whole image: (H_O, W_O, C_O), one chunk per
        tile (forward only, exact through the forward halo). Compute it once per level."""
        scale = self.network.scale(self.content_layer)
        channels = self.network.channels(self.content_layer)
        tiled = padded_tiles(source(content), plan, self.halo.forward)
        tasks = [self._model_call(kernels.tile_content_features, [window], origin, _core(tile),
                                  self.content_layer) for tile, origin, window in tiled]  # fmt: skip
        heights = tuple(tile.cells(scale)[0] for tile in plan if tile.col == 0)
        widths = tuple(tile.cells(scale)[1] for tile in plan if tile.row == 0)
        return part_array(tasks, (heights, widths, (channels,)), None, self.spec.dtype)

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
        guide = self._canvas_guide()
        if len(plan) == 1:
            (tile,), (cells,) = list(plan), self.content_windows(plan)
            windows = [canvas.window(*tile.padded(0, plan.shape)), content_target.window(*cells)]
            (guide_window,) = self._guide_windows(guide, plan, 0)
            result = self._model_call(_whole_image, windows, terms, style_grams,
                                      self.remakes_content_target, guide=guide_window)  # fmt: skip
            grad = da.from_delayed(result[1], (*plan.shape, 3), dtype=self.spec.dtype)
            return _scalar(result[0]), grad.rechunk((*plan.chunks, 3))
        if self.gram_scope == "tile":
            scopes = self._tile_scopes(canvas, plan, style_grams)
        else:
            stats = self._statistics(canvas, plan, guide)
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
        held = (self._statistics(canvas, plan, self._canvas_guide()) if previous is None
                else _single(previous))  # fmt: skip
        errors = dask.delayed(_errors)(held, style_grams, terms)
        scopes = [(terms, None, errors)] * len(plan)
        results, grad = self._gradient_pass(canvas, content_target, plan, scopes, statistics=True)
        stats = tree_sum([r[3] for r in results], self.split_every)
        return self._loss(results, stats, style_grams, terms), grad, stats

    def _inputs(self, canvas, content_target, plan: geometry.TilePlan, style_grams):
        """The loss terms of ``plan``, where tiles read the canvas and content target, and
        the style target as one graph key (not a copy in every task that uses it)."""
        return self.terms(plan.shape), source(canvas), source(content_target), _single(style_grams)

    def _gradient_pass(self, canvas: Source, content_target: Source,
                       plan: geometry.TilePlan, scopes, statistics: bool = False):  # fmt: skip
        """Each tile's (delayed) :func:`daskstyle.engine.kernels.tile_gradient` result under its
        scope's terms and Gram errors, and the gradient assembled from them. A remade content
        target is remade from the content over the canvas's window (the content layer's scale
        is 1: the same slices)."""
        kernel = (remade.tile_gradient_remaking_target if self.remakes_content_target
                  else kernels.tile_gradient)  # fmt: skip
        results = []
        tiles = padded_tiles(canvas, plan, self.halo.total)
        guide_windows = self._guide_windows(self._canvas_guide(), plan, self.halo.total)
        for (tile, origin, canvas_window), cells, (tile_terms, _, errors), guide in zip(
            tiles, self.content_windows(plan), scopes, guide_windows
        ):
            content_window = content_target.window(*cells)
            result = self._model_call(kernel, [canvas_window, content_window],
                                      origin, _core(tile), tile_terms, errors, statistics,
                                      guide=guide)  # fmt: skip
            results.append(result)
        return results, part_array(results, (*plan.chunks, (3,)), 0, self.spec.dtype)

    def _loss(self, results, stats, style_grams, terms: kernels.LossTerms) -> Delayed:
        """The canvas's loss from its tiles' gradient results and its raw Grams ``stats``."""
        squared = tree_sum([r[1] for r in results], self.split_every)
        tv = tree_sum([r[2] for r in results], self.split_every) if terms.tv_weight else 0.0
        return dask.delayed(_total_loss)(squared, tv, stats, style_grams, terms)


def _single(value) -> Delayed:
    return value if isinstance(value, Delayed) else dask.delayed(value, traverse=False)


def _scalar(value: Delayed) -> da.Array:
    return da.from_delayed(value, (), dtype=np.float64)


def _whole_image(model, canvas, content_target, terms, style_grams, remake: bool, guide=None):
    """The only network task of its step: it may use every thread of its Dask worker, which
    otherwise runs torch on one thread per task. ``remake``: ``content_target`` is the content
    image, whose target is remade first."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):  # not on a distributed worker
        threads = None
    with featurenet.torch_threads(threads):
        if remake:
            content_target = remade.remade_target(model, content_target, terms.content_layer)
        return kernels.whole_loss_and_grad(model, canvas, content_target, terms, style_grams,
                                           guide)  # fmt: skip


def _with_model(function, spec, weights: Mapping, windows: list, count: int, *values,
                propagation: str | None = None):  # fmt: skip
    """``function``'s task: ``values`` are its ``count`` arguments, then the windows' chunks;
    with a ``propagation``, the last window is the guide's."""
    windows = tiles.put_chunks(windows, values[count:])
    kwargs = {}
    if propagation is not None:
        *windows, guide = windows
        kwargs["guide"] = guides.Guide(guide.read(), propagation)
    return function(featurenet.get_model(spec, weights), *(w.read() for w in windows),
                    *values[:count], **kwargs)  # fmt: skip


def _core(tile: geometry.Tile) -> tuple[int, int, int, int]:
    return tile.y0, tile.y1, tile.x0, tile.x1


def _normalise(stats: kernels.Statistics, terms: kernels.LossTerms) -> dict[str, np.ndarray]:
    return {name: gram / terms.cells[name] for name, gram in stats.grams.items()}


def _guided_normalise(stats: kernels.Statistics) -> dict[str, np.ndarray]:
    """G / M of one guided region (the Grams of a style's part)."""
    return {name: gram[0] / stats.masses[name][0] for name, gram in stats.grams.items()}


def _stack(grams: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each layer's targets of the regions, one per style, stacked (R, C, C)."""
    return {name: np.stack([g[name] for g in grams]) for name in grams[0]}


def _blend(grams: list[dict[str, np.ndarray]], weights: tuple[float, ...]):
    """Σ_i w_i grams_i, summed in the given order from w_0 grams_0 (so weights (1, 0) give
    the first grams exactly)."""
    blended = {name: weights[0] * gram for name, gram in grams[0].items()}
    for weight, more in zip(weights[1:], grams[1:]):
        blended = {name: gram + weight * more[name] for name, gram in blended.items()}
    return blended


def _errors(stats, style_grams, terms) -> dict[str, np.ndarray]:
    """E_l = Ĝ_l(s) - Ĝ_l(p): the Gram errors held constant in the gradient pass (under
    region guides, one per region: :func:`daskstyle.engine.guides.region_errors`)."""
    if stats.masses:
        return {name: guides.region_errors(gram, stats.masses[name], style_grams[name])
                for name, gram in stats.grams.items()}  # fmt: skip
    return {name: style_grams[name] - grams for name, grams in _normalise(stats, terms).items()}


def _total_loss(squared_error: float, tv_squares: float, stats, style_grams,
                terms: kernels.LossTerms) -> float:  # fmt: skip
    """The loss from the tiles' summed squared content errors and pixel differences and the
    Gram pass's Grams."""
    if stats.masses:
        style = guides.region_style(terms, _errors(stats, style_grams, terms), stats.masses)
    else:
        style = terms.style(_normalise(stats, terms), style_grams)
    loss = terms.content(squared_error) + style
    if terms.tv_weight:
        loss = loss + terms.tv(tv_squares)
    return float(loss)

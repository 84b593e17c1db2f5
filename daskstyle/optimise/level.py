"""One level's loop: its targets computed once, then steps to the stop test, each checked.

The run (:mod:`daskstyle.run.painting`), the scaling study and every benchmark go through
:func:`open_level` and :meth:`Level.steps`, so that a step is the same wherever it is timed.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from dask.delayed import Delayed

from daskstyle.compute.executor import share
from daskstyle.core.errors import NotFiniteError
from daskstyle.core.geometry import TilePlan, target_chunk
from daskstyle.engine.graph import StyleGraph
from daskstyle.engine.kernels import Statistics
from daskstyle.engine.tiles import HeldWindows
from daskstyle.optimise.adam import advance
from daskstyle.optimise.held import Checkpoints, HeldState
from daskstyle.optimise.state import (
    CONTENT_TARGET,
    LevelState,
    check_whole,
    create_array,
    keep_grams,
    open_array,
    store_with_checksums,
)


@dataclass(frozen=True)
class Step:
    """A committed step: its number, loss, largest and mean pixel change, rate, seconds."""

    step: int
    loss: float | None
    max_change: float
    mean_change: float
    lr: float
    seconds: float


#: How a step gets the Gram errors its gradient pass holds: ``exact``, from a Gram pass over
#: its own canvas first; ``lagged``, from the previous step's canvas, its Grams summed in that
#: step's gradient pass (one pass per step; docs/design.md), once the Grams move slowly.
GRAM_SCHEDULES = ("exact", "lagged")

#: A lagged step holds the previous canvas's Gram errors only when, from the canvas before
#: it to the previous one, no style layer's Gram error moved by more than this fraction of
#: its size (:func:`gram_drift`); otherwise it runs a Gram pass over its own canvas first.
LAG_BELOW = 0.02


@dataclass(frozen=True)
class Level:
    """What a level's steps read: its state, tile plan, graph, content target, the style
    target (the styles' blended Gram matrices, shared by the tasks and here), the Gram
    schedule and, for ``lagged``, the drift below which a step holds the last Grams; with the
    state in memory, the content target's windows that the tiles read, held beside it."""

    state: LevelState | HeldState
    plan: TilePlan
    graph: StyleGraph
    content_target: zarr.Array
    style_grams: Delayed
    target_grams: dict[str, np.ndarray]
    gram: str = "exact"
    lag_below: float = LAG_BELOW
    seconds: dict[str, float] = field(default_factory=dict)  # its targets took: style, content
    held_target: HeldWindows | None = None

    def steps(self) -> Iterator[Step]:
        """Steps to the stop test, each yielded once committed. Before a step reads, its
        files are checked for size, and while it reads, each chunk for its crc32c; a step that
        fails is followed by a full check (:meth:`check`), so that a damaged file raises
        :class:`daskstyle.core.errors.DamagedStateError` naming it."""
        state = self.state
        while not state.done:
            start = time.perf_counter()
            self.check(read=False)
            try:
                loss, grad = self._loss_and_grad()
                max_change, mean_change, loss = advance(state, grad, loss, started=start)
            except (ValueError, NotFiniteError):  # a chunk failing its crc32c in a task: which?
                self.check()
                raise
            seconds = state.attrs["history"][-1][3]  # as loss.csv says it
            yield Step(state.step, loss, max_change, mean_change, state.lr, seconds)

    def check(self, *, read: bool = True) -> None:
        """Raise a :class:`daskstyle.core.errors.DamagedStateError` naming the first file of
        what the next step reads from disk that is missing or truncated, or, with ``read``,
        that fails its checksums (:func:`daskstyle.optimise.state.check_whole`)."""
        self.state.check(read=read)
        if self.held_target is None:
            check_whole(self.content_target, read=read)

    def _loss_and_grad(self) -> tuple[da.Array, da.Array]:
        """The loss and gradient of the current canvas. Under ``lagged`` Grams every step
        keeps its canvas's Grams, summed in its gradient pass, and a step holds the Gram
        errors of the previous canvas (one pass) where the two canvases before it had Grams
        closer than ``lag_below`` (:func:`gram_drift`; every step after the first where it is
        infinite), else its own (a Gram pass first)."""
        state = self.state
        target = self.content_target if self.held_target is None else self.held_target
        inputs = (state.canvas_store(), target, self.plan, self.style_grams)
        if self.gram == "exact" or len(self.plan) == 1:
            return self.graph.loss_and_grad(*inputs)
        step = state.step
        previous = None
        if step >= 1 and self.lag_below == math.inf:
            previous = Statistics(state.lagged_grams(step - 1))
        elif step >= 2:
            older, newer = state.lagged_grams(step - 2), state.lagged_grams(step - 1)
            cells = self.graph.terms(self.plan.shape).cells
            if gram_drift(older, newer, self.target_grams, cells) <= self.lag_below:
                previous = Statistics(newer)
        loss, grad, stats = self.graph.lagged_loss_and_grad(*inputs, previous)
        grams = dask.delayed(_grams)(stats)
        kept = dask.delayed(keep_grams)(state.path, step, grams, state.saved_step)
        # Delayed into a Dask array, never the reverse: an array inside a Delayed is
        # finalised into a copy of its graph, and the gradient tasks would run twice
        return da.from_delayed(dask.delayed(_first)(loss, kept), (), dtype=np.float64), grad


def gram_drift(older: dict, newer: dict, target: dict, cells: dict) -> float:
    """How far the Gram errors moved between two canvases, relative to their size: the largest
    over style layers l of ‖Ĝ_l(newer) − Ĝ_l(older)‖ / ‖Ĝ_l(s) − Ĝ_l(newer)‖ (Frobenius), from
    the raw Grams ``older`` and ``newer``, the target Ĝ(s) and each layer's cells. The style
    gradient is linear in the errors: this is about the relative error of a gradient at the
    newer canvas that holds the older canvas's errors, and a lagged step takes the last
    drift as the forecast of its own."""
    return max(
        float(np.linalg.norm(newer[name] - older[name]) / cells[name])
        / max(float(np.linalg.norm(target[name] - newer[name] / cells[name])), 1e-300)
        for name in target
    )


def _grams(stats: Statistics) -> dict:
    return stats.grams


def _first(value, *_):
    return value


def open_level(
    graph: StyleGraph,
    state: LevelState,
    plan: TilePlan,
    styles: Sequence[tuple[da.Array, TilePlan]],
    blend: Sequence[float],
    gram: str = "exact",
    lag_below: float = LAG_BELOW,
    checkpoint_every: int | str | Checkpoints = 1,
) -> Level:
    """The level of ``state`` with its targets: the style target (the Gram matrices of the
    ``styles``, each a style image with its tile plan, blended with the weights ``blend``
    that sum to 1), computed now and shared by every step, and the content target, computed
    once into the level's folder. ``gram``: one of :data:`GRAM_SCHEDULES`; ``lag_below``:
    see :data:`LAG_BELOW` (``math.inf``: every step after the first lags);
    ``checkpoint_every``: other than 1 (step), the steps hold the state in memory and write
    it to disk that often, in steps or minutes (:class:`daskstyle.optimise.held.Checkpoints`),
    and, where it says so, hold the content target's windows that the tiles read in memory
    too (read once here, not at every step)."""
    began = time.perf_counter()
    (grams,) = dask.compute(graph.style_target(styles, blend))
    shared = share(grams, f"daskstyle-style-grams-{tokenize(grams)}")
    made = time.perf_counter()
    target = content_target(state.path / CONTENT_TARGET, graph, state, plan)
    seconds = {"style Grams": made - began}
    every = Checkpoints.of(checkpoint_every)
    held_target = None
    if every.held:
        state = HeldState(state, every)
        if every.with_target:
            try:
                held_target = HeldWindows.of(target, graph.content_windows(plan))
            except ValueError:  # a chunk failing its crc32c in a task: which?
                check_whole(target)
                raise
    seconds["content target"] = time.perf_counter() - made
    return Level(state, plan, graph, target, shared, grams, gram, lag_below, seconds, held_target)


def content_target(path: Path, graph: StyleGraph, state: LevelState, plan: TilePlan) -> zarr.Array:
    """φ_O of the level's content, computed once per level and kept on disk (written under a
    temporary name and renamed when complete) in chunks of :func:`target_chunk`; tile tasks
    read their windows of it. The level's content image is deleted then: nothing else reads
    it. Where the graph remakes the target in each tile
    (:attr:`StyleGraph.remakes_content_target`), the content image, kept (a target a run began
    with is read as it was)."""
    if graph.remakes_content_target and not path.is_dir():
        return state.content_store()
    if not path.is_dir():
        state.check()
        features = graph.content_features(state.content(), plan)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        side = target_chunk(features.chunksize[0], features.shape[2], features.dtype.itemsize)
        array = create_array(tmp, features.shape, (side, side, features.shape[2]), features.dtype)
        store_with_checksums([features], [array])
        os.replace(tmp, path)
    state.drop_content()
    return open_array(path)

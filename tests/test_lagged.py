"""``--gram lagged``: one pass per step, the gradient holding the previous canvas's Gram errors."""

import math

import dask
import dask.array as da
import numpy as np
import pytest
import torch

import daskstyle
from daskstyle.api import make_plan
from daskstyle.core.errors import DamagedStateError
from daskstyle.engine import kernels
from daskstyle.engine.graph import as_tiled
from daskstyle.optimise.adam import AdamSettings
from daskstyle.optimise.level import LAG_BELOW, gram_drift, open_level
from daskstyle.optimise.state import LAGGED_GRAMS, LevelState

from . import reference
from .conftest import Killed, killed_before_commit
from .reference import relative_error
from .test_exactness import SHALLOW, SHALLOW_REF

WEIGHTS = dict(content_weight=2.0, style_weight=30.0, style_layer_weights=[0.5, 2.0])


def _inputs(state, images, shape, tile, dtype=np.float64):
    canvas, content, style = images(*shape)
    graph = daskstyle.style_graph(weights=state, dtype=dtype, **SHALLOW, **WEIGHTS)
    plan = make_plan(shape, tile, graph.halo.align)
    style_plan = make_plan(style.shape[:2], tile, graph.halo.align)
    grams = graph.style_target([(as_tiled(style, style_plan), style_plan)], (1.0,))
    target = graph.content_features(as_tiled(content, plan), plan)
    return graph, plan, canvas, content, style, target, dask.compute(grams)[0]


@pytest.mark.parametrize("shape, tile", [((200, 264), 112), ((177, 131), 16)])
def test_one_pass_with_this_canvas_grams_is_the_exact_step(vgg19_state, images, shape, tile):
    """Tiles of 16 px are far smaller than the halo; the Grams come from the gradient pass."""
    graph, plan, canvas, _, _, target, grams = _inputs(vgg19_state, images, shape, tile)
    tiled = as_tiled(canvas, plan)
    exact = dask.compute(*graph.loss_and_grad(tiled, target, plan, grams))
    own = dask.compute(graph.statistics(tiled, plan))[0]
    for previous in (None, own):  # a fresh Gram pass, or this canvas's Grams kept
        loss, grad, stats = _computed(
            graph.lagged_loss_and_grad(tiled, target, plan, grams, previous)
        )
        assert loss == pytest.approx(exact[0], rel=1e-12)
        assert relative_error(grad, exact[1]) < 1e-12
        for name, gram in own.grams.items():
            assert relative_error(stats.grams[name], gram) < 1e-12


def _computed(result):
    """The loss, gradient and Grams of a lagged pass, computed together: the Delayed first,
    as dask 2026.8 returns a mix of kinds of collections grouped by kind."""
    loss, grad, stats = result
    loss, stats, grad = dask.compute(loss, stats, grad)
    return loss, grad, stats


def test_one_pass_runs_each_tile_once(vgg19_state, images, monkeypatch):
    graph, plan, canvas, _, _, target, grams = _inputs(vgg19_state, images, (177, 131), 48)
    own = dask.compute(graph.statistics(as_tiled(canvas, plan), plan))[0]
    calls = {"tile_statistics": 0, "tile_gradient": 0}
    for name in calls:
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, _counted(original, calls))
    loss, grad, _ = graph.lagged_loss_and_grad(as_tiled(canvas, plan), target, plan, grams, own)
    # as a level computes it: the loss (which needs this canvas's Grams) as an array beside
    # the gradient; computed as a Delayed beside an array, dask runs the tiles twice
    loss = da.from_delayed(loss, (), dtype=np.float64)
    dask.compute(loss, grad, scheduler="synchronous")
    assert calls == {"tile_statistics": 0, "tile_gradient": len(plan)}


def _counted(function, calls):
    def counting(*args, **kwargs):
        calls[function.__name__] += 1
        return function(*args, **kwargs)

    return counting


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_lagged_gradient_is_autograd_with_the_earlier_canvas_gram_errors(
    vgg19, vgg19_state, images, dtype, tolerance
):
    """Against plain autograd on the whole image: content loss of p plus, for each style layer,
    -w / (2 C²) <E_l(q), Ĝ_l(p)> with E_l(q) = Ĝ_l(s) - Ĝ_l(q) of an earlier canvas q held
    constant, whose gradient is the style gradient at p with q's errors."""
    graph, plan, canvas, content, style, target, grams = _inputs(
        vgg19_state, images, (177, 131), 48, dtype
    )
    earlier = np.clip(canvas + np.random.default_rng(5).normal(0, 30, canvas.shape), 0, 255)
    held = dask.compute(graph.statistics(as_tiled(earlier, plan), plan))[0]
    loss, grad, _ = _computed(
        graph.lagged_loss_and_grad(as_tiled(canvas, plan), target, plan, grams, held)
    )
    ref_loss, ref_grad = _lagged_reference(vgg19, canvas, content, style, earlier, dtype)
    assert relative_error(grad, ref_grad) < tolerance
    exact_loss, _ = reference.loss_and_grad(
        vgg19.features, canvas, content, style, dtype=torch.float64, content_weight=2.0,
        style_weight=30.0, layer_weights=[0.5, 2.0], **SHALLOW_REF,
    )  # fmt: skip
    assert loss == pytest.approx(exact_loss, rel=tolerance)  # the loss is p's own


def _lagged_reference(vgg19, canvas, content, style, earlier, dtype):
    torch_dtype = getattr(torch, np.dtype(dtype).name)
    features = vgg19.features.to(torch_dtype, memory_format=reference.MEMORY_FORMAT)
    features = features.requires_grad_(False)
    indices = {SHALLOW_REF["content_index"], *SHALLOW_REF["style_indices"]}
    with torch.no_grad():
        target = reference._features(features, content, torch_dtype, indices)
        style_features = reference._features(features, style, torch_dtype, indices)
        earlier_features = reference._features(features, earlier, torch_dtype, indices)
    image = torch.tensor(canvas, dtype=torch_dtype, requires_grad=True)
    feats = reference._features(features, image, torch_dtype, indices)
    c = SHALLOW_REF["content_index"]
    loss = 2.0 * (feats[c] - target[c]).square().sum() / (2 * feats[c][0].numel())
    for w, i in zip([0.5, 2.0], SHALLOW_REF["style_indices"]):
        error = reference._gram_hat(style_features[i]) - reference._gram_hat(earlier_features[i])
        channels = feats[i].shape[1]
        loss = loss - 30.0 * w * (error * reference._gram_hat(feats[i])).sum() / (2 * channels**2)
    loss.backward()
    vgg19.float()
    return loss.item(), image.grad.numpy()


def _level(path, vgg19_state, images, gram, steps=5, dtype=np.float64, lag_below=math.inf,
           checkpoint_every=1):  # fmt: skip
    """A level of 112 x 96 px in 48-px tiles; by default every step after the first lags."""
    shape, tile = (112, 96), 48
    canvas, content, style = images(*shape)
    graph = daskstyle.style_graph(weights=vgg19_state, dtype=dtype, **SHALLOW, **WEIGHTS)
    plan = make_plan(shape, tile, graph.halo.align)
    style_plan = make_plan(style.shape[:2], tile, graph.halo.align)
    if not (path / "zarr.json").is_file():
        chunks = (tile, tile, 3)
        LevelState.create(path, da.from_array(content, chunks), da.from_array(canvas, chunks),
                          plan, AdamSettings(max_iters=steps, stop=0.0), dtype=dtype)  # fmt: skip
    state = LevelState.open(path)
    styles = [(as_tiled(style, style_plan), style_plan)]
    return open_level(graph, state, plan, styles, (1.0,), gram, lag_below, checkpoint_every)


def _passes(level):
    """The steps of ``level`` and, per step, how many tiles each kind of pass ran."""
    calls = {"tile_statistics": 0, "tile_gradient": 0}
    originals = {name: getattr(kernels, name) for name in calls}
    steps, passes = [], []
    try:
        for name in calls:
            setattr(kernels, name, _counted(originals[name], calls))
        for step in level.steps():  # as a run computes them: loss, gradient, Adam, kept Grams
            steps.append(step)
            passes.append(dict(calls))
            calls.update(dict.fromkeys(calls, 0))
    finally:
        for name, original in originals.items():
            setattr(kernels, name, original)
    return steps, passes


def test_a_lagged_level_paints_nearly_the_exact_picture(vgg19_state, images, tmp_path):
    exact = list(_level(tmp_path / "exact", vgg19_state, images, "exact").steps())
    level = _level(tmp_path / "lagged", vgg19_state, images, "lagged")
    lagged, passes = _passes(level)
    tiles = len(level.plan)
    two, one = (
        {"tile_statistics": tiles, "tile_gradient": tiles},
        {"tile_statistics": 0, "tile_gradient": tiles},
    )
    assert passes == [two, one, one, one, one]  # a Gram pass first, then one pass each
    assert lagged[0].loss == exact[0].loss  # the first step of a level is exact
    assert lagged[1].loss == pytest.approx(exact[1].loss, rel=1e-12)  # p_1's, Grams in one pass
    assert lagged[-1].loss == pytest.approx(exact[-1].loss, rel=0.05)
    assert lagged[-1].loss < lagged[0].loss
    pictures = [LevelState.open(tmp_path / name).canvas().compute() for name in ("exact", "lagged")]
    difference = np.abs(pictures[0] - pictures[1])
    assert 0 < difference.mean() < 1 and difference.max() < 5  # pixels 0-255, steps up to 12.8
    kept = sorted(p.name for p in (tmp_path / "lagged" / LAGGED_GRAMS).iterdir())
    assert kept == ["2.npz", "3.npz", "4.npz"]  # of the last three canvases only
    level.state.release()
    assert not (tmp_path / "lagged" / LAGGED_GRAMS).exists()


@pytest.mark.parametrize("commit, at_step", [("lr", 0), ("step", 0), ("step", 2)])
def test_a_lagged_level_resumes_bit_identically(vgg19_state, images, tmp_path, commit,
                                                 at_step):  # fmt: skip
    level = _level(tmp_path / "whole", vgg19_state, images, "lagged", dtype=np.float32)
    list(level.steps())
    expected = level.state.canvas().compute()
    killed = tmp_path / "killed"
    with killed_before_commit(commit, at_step), pytest.raises(Killed):
        list(_level(killed, vgg19_state, images, "lagged", dtype=np.float32).steps())
    list(_level(killed, vgg19_state, images, "lagged", dtype=np.float32).steps())
    assert np.array_equal(LevelState.open(killed).canvas().compute(), expected)


def test_missing_lagged_grams_are_damaged_state(vgg19_state, images, tmp_path):
    level = _level(tmp_path / "level", vgg19_state, images, "lagged", steps=2)
    list(level.steps())
    (tmp_path / "level" / LAGGED_GRAMS / "1.npz").unlink()
    level.state.group.attrs.put({**level.state.attrs, "settings": {
        **level.state.attrs["settings"], "max_iters": 3}})  # fmt: skip
    with pytest.raises(DamagedStateError, match="1.npz is missing or damaged"):
        list(level.steps())


def test_a_step_lags_only_below_the_drift_of_the_last_two_canvases(vgg19_state, images,
                                                                   tmp_path):  # fmt: skip
    """Below a drift of 0 no step lags: every step runs a Gram pass and the level paints the
    exact level's canvas bit for bit; the Grams of these tiny random-weight canvases move by
    more than :data:`daskstyle.optimise.level.LAG_BELOW`, so the default never lags either."""
    exact = _level(tmp_path / "exact", vgg19_state, images, "exact", dtype=np.float32)
    list(exact.steps())
    tiles = len(exact.plan)
    two = {"tile_statistics": tiles, "tile_gradient": tiles}
    for name, lag_below in (("never", 0.0), ("default", LAG_BELOW)):
        level = _level(tmp_path / name, vgg19_state, images, "lagged", dtype=np.float32,
                       lag_below=lag_below)  # fmt: skip
        assert _passes(level)[1] == [two] * 5
        assert np.array_equal(level.state.canvas().compute(), exact.state.canvas().compute())


def test_gram_drift_is_the_largest_relative_move_of_a_layer_error():
    target = {"a": np.full((2, 2), 2.0), "b": np.full((2, 2), 1.0)}
    cells = {"a": 2, "b": 1}
    older = {"a": np.full((2, 2), 2.0), "b": np.full((2, 2), 0.0)}  # Ĝ_a = 1, Ĝ_b = 0
    newer = {"a": np.full((2, 2), 3.0), "b": np.full((2, 2), 0.1)}  # Ĝ_a = 1.5, Ĝ_b = 0.1
    # a: moved 0.5 per entry, error 0.5 left: 1.0; b: moved 0.1, error 0.9 left: 1/9
    assert gram_drift(older, newer, target, cells) == pytest.approx(1.0)
    assert gram_drift(older, older, target, cells) == 0.0


@pytest.mark.parametrize("checkpoint_every", [1, 3])  # the state on disk, held in memory
def test_an_exact_step_runs_each_tile_once_in_each_pass(vgg19_state, images, tmp_path,
                                                        checkpoint_every):  # fmt: skip
    level = _level(tmp_path / "exact", vgg19_state, images, "exact", steps=3, dtype=np.float32,
                   checkpoint_every=checkpoint_every)  # fmt: skip
    tiles = len(level.plan)
    assert _passes(level)[1] == [{"tile_statistics": tiles, "tile_gradient": tiles}] * 3

"""Chunked Adam on zarr state against a whole-array NumPy Adam; lr rule; stop test; resume."""

import threading

import dask.array as da
import numpy as np
import pytest

from daskstyle.core.errors import InputError
from daskstyle.core.geometry import TilePlan
from daskstyle.optimise.adam import AdamSettings, adam_chunk, advance, first_step_lr, should_stop
from daskstyle.optimise.state import LevelState

from .conftest import Killed, killed_before_commit

B1, B2, EPS = 0.9, 0.99, 1e-6


class Gradient:
    """A deterministic gradient field at p: pulls towards a target, counts chunk evaluations."""

    def __init__(self, shape, seed=0):
        rng = np.random.default_rng(seed)
        self.target = rng.uniform(0, 255, (*shape, 3)).astype(np.float32)
        self.scale = rng.uniform(0.01, 3, (*shape, 3)).astype(np.float32)
        self.calls = 0
        self._lock = threading.Lock()

    def numpy(self, p):
        return ((p - self.target) * self.scale).astype(np.float32)

    def _block(self, p, block_info=None):
        with self._lock:
            self.calls += 1
        (r0, r1), (c0, c1), _ = block_info[0]["array-location"]
        return (p - self.target[r0:r1, c0:c1]) * self.scale[r0:r1, c0:c1]

    def dask(self, canvas):
        return canvas.map_blocks(
            self._block, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32)
        )

    def loss(self, canvas):
        """A lazy scalar that depends on the canvas (stands in for the style loss)."""
        target = da.from_array(self.target, chunks=canvas.chunks)
        return ((canvas - target) ** 2).mean(dtype=np.float64)


def reference_adam(p, gradient, steps, lr=None, tpc=12.8):
    """Plain whole-array Adam with bias correction and the first-step lr rule."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t in range(1, steps + 1):
        g = gradient(p)
        if lr is None:
            gmax = float(np.abs(g).max())
            lr = tpc * (gmax + EPS) / gmax
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        p = np.clip(p - lr * (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS), 0, 255)
    return p


def start(path, shape, tile, settings=None, seed=1):
    init = np.random.default_rng(seed).uniform(60, 200, (*shape, 3)).astype(np.float32)
    plan = TilePlan(shape, tile)
    image = da.from_array(init, chunks=(40, 40, 3))
    return init, LevelState.create(path, image, image, plan, settings or AdamSettings())


def run(state, gradient, steps):
    while state.step < steps:
        canvas = state.canvas()
        advance(state, gradient.dask(canvas), gradient.loss(canvas))
    return state.canvas().compute()


@pytest.mark.parametrize("shape, tile", [((37, 53), 16), ((50, 33), 32), ((20, 20), 32)])
@pytest.mark.parametrize("lr", [None, 3.0])
def test_chunked_adam_equals_whole_array_adam(tmp_path, shape, tile, lr):
    init, state = start(tmp_path / "level", shape, tile, AdamSettings(lr=lr))
    gradient = Gradient(shape)
    result = run(state, gradient, 4)
    expected = reference_adam(init, gradient.numpy, 4, lr=lr)
    assert np.abs(result - expected).max() <= 1e-4
    assert gradient.calls == 4 * len(TilePlan(shape, tile))  # one gradient pass per step


@pytest.mark.parametrize("lr", [None, 3.0])
def test_loss_is_computed_with_the_step_and_recorded(tmp_path, lr):
    shape = (30, 20)
    init, state = start(tmp_path / "level", shape, 16, AdamSettings(lr=lr))
    gradient = Gradient(shape)
    canvas = state.canvas()
    largest, mean, loss = advance(state, gradient.dask(canvas), gradient.loss(canvas))
    assert loss == pytest.approx(np.mean((init.astype(np.float64) - gradient.target) ** 2))
    step = np.abs(state.canvas().compute() - init)
    assert (largest, mean) == pytest.approx((step.max(), step.mean()), rel=1e-6)
    ((*kept, seconds),) = state.attrs["history"]
    assert kept == [largest, mean, loss] and 0 < seconds < 60


def test_adam_chunk_is_standard_adam():
    rng = np.random.default_rng(3)
    p, g = rng.uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    m, v = rng.uniform(0, 1, (2, 5, 7, 3)).astype(np.float32)
    new_p, new_m, new_v = adam_chunk(p, g, m, v, 3, 0.5)
    m2 = 0.9 * m + 0.1 * g
    v2 = 0.99 * v + 0.01 * g**2
    step = 0.5 * (m2 / (1 - 0.9**3)) / (np.sqrt(v2 / (1 - 0.99**3)) + 1e-6)
    np.testing.assert_allclose(new_m, m2, rtol=1e-6)
    np.testing.assert_allclose(new_v, v2, rtol=1e-6)
    np.testing.assert_allclose(new_p, np.clip(p - step, 0, 255), atol=1e-4)
    assert new_p.dtype == np.float32


def test_first_step_changes_the_largest_pixel_by_tpc(tmp_path):
    shape = (45, 70)
    plan = TilePlan(shape, 16)
    rng = np.random.default_rng(5)
    init = da.from_array(np.full((*shape, 3), 128, np.float32), chunks=(16, 16, 3))
    grad = rng.normal(0, 1e-3, (*shape, 3)).astype(np.float32)  # tiny: |g| ~ eps matters
    state = LevelState.create(tmp_path / "level", init, init, plan, AdamSettings(tpc=12.8))
    largest, _, _ = advance(state, da.from_array(grad, chunks=(16, 16, 3)))
    change = np.abs(state.canvas().compute() - 128)
    assert largest == pytest.approx(12.8, abs=1e-4)
    assert change.max() == pytest.approx(12.8, abs=1e-4)
    gmax = np.abs(grad).max()
    assert state.lr == pytest.approx(12.8 * (gmax + 1e-6) / gmax, rel=1e-12)
    assert state.lr > 12.8  # the eps term is not negligible here


def test_first_step_lr_of_a_zero_gradient_is_harmless():
    assert first_step_lr(0.0, tpc=12.8) == 12.8
    assert first_step_lr(2.0, tpc=10.0, eps=1e-6) == pytest.approx(10.0 * (2 + 1e-6) / 2)


@pytest.mark.parametrize(
    "mean, step, stop",
    [(0.05, 3, True), (0.2, 3, False), (0.2, 100, True), (0.2, 99, False), (0.1, 5, False)],
)
def test_stop_test(mean, step, stop):
    assert should_stop(mean, step, stop=0.1, max_iters=100) is stop


def test_level_stops_when_pixels_stop_moving(tmp_path):
    _, state = start(tmp_path / "level", (20, 24), 16, AdamSettings(lr=1.0, max_iters=5))
    zero = da.zeros((20, 24, 3), np.float32, chunks=(16, 16, 3))
    assert not state.done
    assert advance(state, zero) == (0.0, 0.0, None)
    assert state.done


@pytest.mark.parametrize(
    "commit, at_step",
    [("lr", 0), ("step", 0), ("step", 2)],
    ids=["after-first-moments", "end-of-first-step", "end-of-third-step"],
)
def test_resume_after_kill_is_bit_identical(tmp_path, commit, at_step):
    shape, tile, steps = (37, 45), 16, 5
    gradient = Gradient(shape)
    _, state = start(tmp_path / "whole", shape, tile)
    expected = run(state, gradient, steps)
    expected_attrs = state.attrs

    _, state = start(tmp_path / "killed", shape, tile)
    state.group.attrs.put({**state.attrs, "run_id": expected_attrs["run_id"]})
    with killed_before_commit(commit, at_step), pytest.raises(Killed):
        run(state, gradient, steps)

    state = LevelState.open(tmp_path / "killed")
    assert state.step == at_step
    _scribble_on_free_buffers(state)  # a kill mid-store leaves anything there
    result = run(state, gradient, steps)
    assert np.array_equal(result, expected)
    assert _without_seconds(state.attrs) == _without_seconds(expected_attrs)


def _without_seconds(attrs):
    """A level's attributes but the seconds of each step, which no two runs share."""
    return {**attrs, "history": [entry[:3] for entry in attrs["history"]]}


def _scribble_on_free_buffers(state):
    attrs = state.attrs
    free = 1 - attrs["current"]
    names = ["canvas"] if attrs["pending"] is not None else ["canvas", "m", "v"]
    for name in names:
        array = state.group[f"{name}{free}"]
        array[...] = np.random.default_rng(9).uniform(-1e3, 1e3, array.shape).astype(np.float32)


def test_state_survives_reopening(tmp_path):
    settings = AdamSettings(tpc=5.0, stop=0.5, max_iters=7)
    _, state = start(tmp_path / "level", (20, 30), 16, settings)
    advance(state, Gradient((20, 30)).dask(state.canvas()))
    again = LevelState.open(tmp_path / "level")
    assert again.settings == settings
    assert (again.step, again.lr) == (1, state.lr)
    np.testing.assert_array_equal(again.canvas().compute(), state.canvas().compute())


def test_release_keeps_the_final_canvas_and_repeats_after_a_kill(tmp_path):
    path = tmp_path / "level"
    _, state = start(path, (20, 30), 16)
    run(state, Gradient((20, 30)), 3)
    final = state.canvas().compute()
    state.drop_content()
    with pytest.raises(KeyError):
        state.content()
    chunk_files = sum(f.stat().st_size for f in path.rglob("c/*/*/*"))  # every array's chunks
    assert chunk_files == LevelState.nbytes(TilePlan((20, 30), 16))
    (path / "m0" / "zarr.json").unlink()  # killed while deleting m0: no longer an array
    state.release()
    assert sorted(p.name for p in path.iterdir()) == [
        f"canvas{state.attrs['current']}",
        "zarr.json",
    ]
    again = LevelState.open(path)
    np.testing.assert_array_equal(again.canvas().compute(), final)
    assert again.step == 3
    again.release()  # again: nothing more to delete
    assert sum(f.stat().st_size for f in path.rglob("c/*/*/*")) == LevelState.nbytes(
        TilePlan((20, 30), 16), released=True
    )


def test_incomplete_or_missing_state_is_refused(tmp_path):
    with pytest.raises(InputError, match="no level state"):
        LevelState.open(tmp_path / "nothing")
    _, state = start(tmp_path / "level", (20, 30), 16)
    state.group.attrs.put({})
    with pytest.raises(InputError, match="create it again"):
        LevelState.open(tmp_path / "level")


@pytest.mark.parametrize("devices, expected", [(1, "cupy"), (0, "numpy"), (RuntimeError, "numpy")])
def test_adam_updates_run_on_cupy_where_a_gpu_is_visible(monkeypatch, devices, expected):
    import sys
    import types

    from daskstyle.optimise import adam

    def device_count():
        if devices is RuntimeError:
            raise RuntimeError("no CUDA driver")
        return devices

    runtime = types.SimpleNamespace(getDeviceCount=device_count)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime), full=np.full,
                                 stack=np.stack, asarray=np.asarray,
                                 get_array_module=lambda *a: np)  # a CuPy that computes  # fmt: skip
    monkeypatch.setitem(sys.modules, "cupy", fake)
    adam.update_module.cache_clear()
    try:
        assert adam.update_module() is (fake if expected == "cupy" else np)
    finally:
        adam.update_module.cache_clear()

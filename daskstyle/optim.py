"""Chunked Adam over whole arrays, the learning-rate rule, the stop test, and one step.

The graphs here read Dask arrays and store into zarr arrays they are given; :func:`advance`
runs one step on a level's state, whose layout on disk, checks and atomic commits are
:mod:`daskstyle.state`'s.

The per-chunk update runs with CuPy in a process that sees a CUDA GPU (and has CuPy), else
with NumPy; the chunks come from and go back to zarr on the host either way.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from .errors import InputError, NotFiniteError

BETA1, BETA2, EPS = 0.9, 0.99, 1e-6
PIXEL_MAX = 255.0


def array_module(*arrays):
    """NumPy, or CuPy when one of ``arrays`` is a CuPy array (CuPy need not be installed)."""
    try:
        import cupy
    except ImportError:
        return np
    return cupy.get_array_module(*arrays)


@functools.cache
def update_module():
    """The array module of this process's Adam updates: CuPy where a CUDA GPU is visible and a
    tiny Adam step runs on it, else NumPy (with a one-line warning when CuPy fails there).
    ``DASKSTYLE_NO_CUPY=1`` in the environment forces NumPy."""
    import os
    import warnings

    if os.environ.get("DASKSTYLE_NO_CUPY", "0") not in ("", "0"):
        return np
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            return np
    except (ImportError, RuntimeError):  # no CuPy, no CUDA driver, no device: NumPy
        return np
    try:  # compiles the update's kernels now: a CuPy that cannot (no NVRTC, ...) fails here
        probe = cupy.full((2, 2, 3), 1.0, dtype=np.float32)
        _host(cupy.stack(adam_chunk(probe, probe, probe, probe, 1, 1.0)))
    except Exception as err:  # compile, runtime and library errors of many kinds
        reason = next((line for line in str(err).splitlines() if line.strip()), "")[:200]
        warnings.warn(
            f"Adam runs on NumPy: CuPy fails on this GPU ({type(err).__name__}: {reason.strip()})",
            RuntimeWarning,
            stacklevel=2,
        )
        return np
    return cupy


def moments_chunk(grad, m, v, beta1: float = BETA1, beta2: float = BETA2):
    """Adam's moments after one step: ``(m_t, v_t)`` from ``(m_{t-1}, v_{t-1})`` and ``grad``."""
    return beta1 * m + (1 - beta1) * grad, beta2 * v + (1 - beta2) * grad * grad


def param_chunk(param, m, v, step: int, lr: float, beta1=BETA1, beta2=BETA2, eps=EPS):
    """Parameters after step ``step`` (1-based) from that step's moments, clipped to 0-255."""
    xp = array_module(param, m, v)
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return xp.clip(param - lr * m_hat / (xp.sqrt(v_hat) + eps), 0, PIXEL_MAX)


def adam_chunk(param, grad, m, v, step: int, lr: float, beta1=BETA1, beta2=BETA2, eps=EPS):
    """One bias-corrected Adam step (``step`` is 1-based): ``(new_param, new_m, new_v)``."""
    m, v = moments_chunk(grad, m, v, beta1, beta2)
    return param_chunk(param, m, v, step, lr, beta1, beta2, eps), m, v


def first_step_lr(max_abs_grad: float, tpc: float = 12.8, eps: float = EPS) -> float:
    """The learning rate whose first Adam step changes the largest pixel by ``tpc``.

    With bias correction the first update is ``lr * g / (|g| + eps)`` per pixel, largest where
    ``|g|`` is largest. A zero gradient moves nothing whatever the rate: ``tpc`` is returned.
    """
    g = float(max_abs_grad)
    return float(tpc) if g == 0 else float(tpc) * (g + eps) / g


def should_stop(mean_change: float, step: int, stop: float = 0.1, max_iters: int = 100) -> bool:
    """The paper's stop test: the last step's mean pixel change is small, or steps ran out."""
    return mean_change < stop or step >= max_iters


@dataclass(frozen=True)
class StepGraph:
    """Lazy results of one step; compute them together (one pass over the data)."""

    stores: tuple
    max_change: da.Array
    mean_change: da.Array

    def compute(self, *others) -> tuple:
        """Run the stores; return the max and mean of ``|p_{t+1} - p_t|`` (then ``others``,
        computed in the same pass)."""
        _, largest, mean, *rest = dask.compute(
            self.stores, self.max_change, self.mean_change, *others
        )
        return (float(largest), float(mean), *rest)


def _host(x):
    return x if isinstance(x, np.ndarray) else x.get()


def _adam_block(param, grad, m, v, step, lr, beta1, beta2, eps):
    xp = update_module()
    arrays = [xp.asarray(a) for a in (param, grad, m, v)]
    return _host(xp.stack(adam_chunk(*arrays, step, lr, beta1, beta2, eps)))


def _moments_block(grad, m, v, beta1, beta2):
    xp = update_module()
    return _host(
        xp.stack(moments_chunk(xp.asarray(grad), xp.asarray(m), xp.asarray(v), beta1, beta2))
    )


def _stacked(func, *arrays, n: int, **kwargs) -> da.Array:
    """``func`` over aligned (H, W, 3) arrays, returning ``n`` results stacked on a new axis 0."""
    first = arrays[0]
    if any(a.chunks != first.chunks for a in arrays):
        raise InputError(
            f"arrays of one Adam step must share chunks, got {[a.chunks for a in arrays]}"
        )
    return da.map_blocks(
        func,
        *arrays,
        new_axis=0,
        chunks=((n,), *first.chunks),
        dtype=first.dtype,
        meta=np.empty((0, 0, 0, 0), first.dtype),
        **kwargs,
    )


def _change_stats(new: da.Array, old: da.Array) -> tuple[da.Array, da.Array]:
    change = abs(new - old)
    return change.max(), change.mean(dtype=np.float64)


def step_graph(
    canvas, grad, m, v, out, *, step, lr, beta1=BETA1, beta2=BETA2, eps=EPS
) -> StepGraph:
    """One fused Adam step over whole arrays.

    ``canvas``, ``grad``, ``m``, ``v``: Dask arrays of p_t, the gradient at p_t, m_t, v_t (same
    chunks, aligned with the zarr chunks of ``out``). ``out``: zarr arrays (canvas, m, v) that
    receive p_{t+1}, m_{t+1}, v_{t+1}; none of them may be read by the inputs.
    """
    new = _stacked(
        _adam_block, canvas, grad, m, v, n=3, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps
    )
    stores = da.store([new[0], new[1], new[2]], list(out), lock=False, compute=False)
    return StepGraph(tuple(stores), *_change_stats(new[0], canvas))


def moments_graph(grad, m, v, out, *, beta1=BETA1, beta2=BETA2) -> tuple[tuple, da.Array]:
    """Stores of the next moments into ``out`` (zarr m, v) and the lazy max ``|grad|``.

    The first step of a level needs max ``|grad|`` for its learning rate before any pixel
    moves; storing the moments in the same pass spares a second gradient evaluation.
    """
    new = _stacked(_moments_block, grad, m, v, n=2, beta1=beta1, beta2=beta2)
    stores = da.store([new[0], new[1]], list(out), lock=False, compute=False)
    return tuple(stores), abs(grad).max()


def param_graph(canvas, m, v, out, *, step, lr, beta1=BETA1, beta2=BETA2, eps=EPS) -> StepGraph:
    """Parameter update from moments already stored for ``step``, written to zarr ``out``."""
    hyper = {"step": step, "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}
    meta = np.empty((0, 0, 0), canvas.dtype)
    new = da.map_blocks(param_chunk, canvas, m, v, dtype=canvas.dtype, meta=meta, **hyper)
    stores = da.store(new, out, lock=False, compute=False)
    return StepGraph((stores,), *_change_stats(new, canvas))


@dataclass(frozen=True)
class AdamSettings:
    """Optimiser settings of a level (the paper's defaults); ``lr=None``: the ``tpc`` rule."""

    beta1: float = BETA1
    beta2: float = BETA2
    eps: float = EPS
    tpc: float = 12.8
    stop: float = 0.1
    max_iters: int = 100
    lr: float | None = None


def advance(state, grad: da.Array, loss=None, started: float | None = None
            ) -> tuple[float, float, float | None]:  # fmt: skip
    """Run step t+1 of a level's ``state`` (:class:`daskstyle.state.LevelState`) with
    ``grad``, the gradient at its canvas (and optionally its lazy ``loss``, computed in the
    same pass); commit it, with the seconds since ``started`` (a :func:`time.perf_counter`
    reading; default: this call) in its history; return the max and mean pixel change and
    the loss. The first step of a level without a fixed ``lr`` first stores its moments
    with max ``|grad|`` and commits the rate the ``tpc`` rule gives. A step whose loss,
    gradient or pixel change is not finite raises :class:`NotFiniteError` uncommitted."""
    started = time.perf_counter() if started is None else started
    attrs, s = state.attrs, state.settings
    t, cur = attrs["step"], attrs["current"]
    nxt = 1 - cur
    out = {b: state.store(b, nxt) for b in state.BUFFERS}
    canvas = state.read("canvas", cur)
    if t == 0:  # m_0 = v_0 = 0: never read from disk, where a lost chunk would read as NaN
        m = v = da.zeros_like(canvas)
    else:
        m, v = (state.read(b, cur) for b in ("m", "v"))
    if attrs["lr"] is None:
        stores, max_grad = moments_graph(
            grad, m, v, (out["m"], out["v"]), beta1=s.beta1, beta2=s.beta2
        )
        _, max_grad, loss = dask.compute(stores, max_grad, loss)
        _require_finite(t + 1, gradient=max_grad, loss=loss)
        lr = first_step_lr(max_grad, s.tpc, s.eps)
        state.commit(lr=lr, pending={"loss": _float_or_none(loss)})
        attrs = state.attrs
    hyper = {"step": t + 1, "lr": attrs["lr"], "beta1": s.beta1, "beta2": s.beta2, "eps": s.eps}
    if attrs["pending"] is not None:
        m, v = (state.read(b, nxt) for b in ("m", "v"))
        largest, mean = param_graph(canvas, m, v, out["canvas"], **hyper).compute()
        loss = attrs["pending"]["loss"]
    else:
        graph = step_graph(canvas, grad, m, v, tuple(out.values()), **hyper)
        largest, mean, loss = graph.compute(loss)
    _require_finite(t + 1, loss=loss, **{"pixel update": largest + mean})
    result = (largest, mean, _float_or_none(loss))
    entry = [*result, time.perf_counter() - started]
    state.commit(step=t + 1, current=nxt, pending=None, history=[*attrs["history"], entry])
    return result


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def _require_finite(step: int, **values) -> None:
    """Raise :class:`NotFiniteError` for the first of ``values`` (None: not computed) that is
    not a finite number."""
    for what, value in values.items():
        if value is not None and not math.isfinite(float(value)):
            raise NotFiniteError(step, what, float(value))

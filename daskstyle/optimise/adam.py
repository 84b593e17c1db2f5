"""Chunked Adam over whole arrays, the learning-rate rule, the stop test, and one step.

The graphs here read and return Dask arrays; :func:`advance` runs one step on a level's
state, which writes them (on disk, :mod:`daskstyle.optimise.state`, with its checks and atomic
commits, or in memory between checkpoints, :mod:`daskstyle.optimise.held`).

The per-chunk update runs with CuPy in a process that sees a CUDA GPU (and has CuPy), else
with NumPy; the chunks come from and go back to the host either way.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import dask.array as da
import numpy as np

from daskstyle.core.errors import NotFiniteError

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


def _host(x):
    return x if isinstance(x, np.ndarray) else x.get()


@dataclass(frozen=True)
class Update:
    """One pass of step ``step`` (1-based) over a level's state, chunk by chunk. ``kind``:
    ``step``, the whole update (p, m, v from p, the gradient, m, v); ``moments``, m and v
    alone (the first step of a level whose rate the ``tpc`` rule gives needs max ``|grad|``
    before any pixel moves: writing the moments in the same pass spares a second gradient
    evaluation); ``params``, then p from the moments written. Its figures: max ``|grad|``
    (``moments``), or the max and mean pixel change."""

    kind: str
    step: int
    lr: float | None = None
    beta1: float = BETA1
    beta2: float = BETA2
    eps: float = EPS

    INPUTS = {"step": ("canvas", "grad", "m", "v"), "moments": ("grad", "m", "v"),
              "params": ("canvas", "m", "v")}  # fmt: skip
    OUTPUTS = {"step": ("canvas", "m", "v"), "moments": ("m", "v"), "params": ("canvas",)}

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.INPUTS[self.kind]

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.OUTPUTS[self.kind]

    @property
    def figures(self) -> int:
        """How many figures it gives (:meth:`chunk_figures`)."""
        return 1 if self.kind == "moments" else 2

    def buffers(self, current: int, step: int) -> dict[str, int | None]:
        """The buffer each state input is read from, given the ``current`` one and the
        committed ``step``: ``params`` reads the moments just written into the other; None:
        zeros (m_0 = v_0 = 0, never read from disk, where a lost chunk would read as NaN)."""
        moments = 1 - current if self.kind == "params" else (None if step == 0 else current)
        return {name: current if name == "canvas" else moments
                for name in self.inputs if name != "grad"}  # fmt: skip

    def apply(self, *chunks) -> list:
        """The new chunks on the host, in the order of :attr:`outputs`, from chunks in the
        order of :attr:`inputs`, updated with NumPy or CuPy (:func:`update_module`)."""
        xp = update_module()
        arrays = [xp.asarray(a) for a in chunks]
        betas = (self.beta1, self.beta2)
        if self.kind == "moments":
            new = moments_chunk(*arrays, *betas)
        elif self.kind == "params":
            new = (param_chunk(*arrays, self.step, self.lr, *betas, self.eps),)
        else:
            new = adam_chunk(*arrays, self.step, self.lr, *betas, self.eps)
        return [_host(x) for x in new]

    def chunk_figures(self, chunks: list, new: list) -> tuple[float, ...]:
        """This chunk's share of the figures: max ``|grad|`` (``moments``), or the max and the
        sum of ``|new p - p|``."""
        if self.kind == "moments":
            return (float(np.abs(chunks[0]).max()),)
        change = np.abs(new[0] - chunks[0])
        return float(change.max()), float(change.sum(dtype=np.float64))


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
    """Run step t+1 of a level's ``state`` (on disk, :class:`daskstyle.optimise.state.LevelState`,
    or held in memory, :class:`daskstyle.optimise.held.HeldState`) with ``grad``, the gradient at its
    canvas (and optionally its lazy ``loss``, computed in the same pass); commit it, with the
    seconds since ``started`` (a :func:`time.perf_counter` reading; default: this call) in
    its history; return the max and mean pixel change and the loss. The first step of a
    level without a fixed ``lr`` first writes its moments with max ``|grad|`` and commits the
    rate the ``tpc`` rule gives. A step whose loss, gradient or pixel change is not finite
    raises :class:`NotFiniteError` uncommitted: it wrote only into the buffer that the
    committed step does not name. The state runs each :class:`Update` (``state.update``)."""
    started = time.perf_counter() if started is None else started
    attrs, s = state.attrs, state.settings
    t, nxt = attrs["step"], 1 - attrs["current"]
    betas = {"beta1": s.beta1, "beta2": s.beta2, "eps": s.eps}
    if attrs["lr"] is None:
        (max_grad,), loss = state.update(nxt, Update("moments", t + 1, **betas), grad, loss)
        _require_finite(t + 1, gradient=max_grad, loss=loss)
        lr = first_step_lr(max_grad, s.tpc, s.eps)
        state.commit(lr=lr, pending={"loss": _float_or_none(loss)})
        attrs = state.attrs
    if attrs["pending"] is not None:
        largest, mean = state.update(nxt, Update("params", t + 1, attrs["lr"], **betas))[0]
        loss = attrs["pending"]["loss"]
    else:
        (largest, mean), loss = state.update(nxt, Update("step", t + 1, attrs["lr"], **betas),
                                             grad, loss)  # fmt: skip
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

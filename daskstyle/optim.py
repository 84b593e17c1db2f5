"""Chunked Adam on disk-backed per-pixel state (zarr v3), the learning-rate rule and stop test.

One level's state is a zarr group (:class:`LevelState`): the content (until the run has
computed the content target from it), two canvas buffers and two buffers each of Adam's ``m``
and ``v``. Step ``t + 1`` reads buffer ``current`` (p_t, m_t, v_t, never written during the
step) and writes buffer ``1 - current``; the group's attributes (step, current buffer,
learning rate) change in one atomic write after every store of the step has finished. So a
retried task recomputes the same chunk from unchanged inputs, and after a kill at any moment
the attributes name a complete, consistent state: redoing the step from there gives
bit-identical results (given a deterministic gradient).

The per-chunk update runs with CuPy in a process that sees a CUDA GPU (and has CuPy), else
with NumPy; the chunks come from and go back to zarr on the host either way.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from .errors import InputError
from .geometry import TilePlan

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


def should_stop(
    mean_change: float, step: int, stop_condition: float = 0.1, max_iters: int = 100
) -> bool:
    """The paper's stop test: the last step's mean pixel change is small, or steps ran out."""
    return mean_change < stop_condition or step >= max_iters


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


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def read_zarr(array: zarr.Array, *token) -> da.Array:
    """``array`` as a Dask array whose key derives from ``token`` (e.g. run id and step)."""
    return da.from_zarr(
        array, name=f"read-{array.basename}-{tokenize(str(array.store_path), *token)}"
    )


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
    stop_condition: float = 0.1
    max_iters: int = 100
    lr: float | None = None


class LevelState:
    """One level's zarr group: arrays ``content``, ``canvas0/1``, ``m0/1``, ``v0/1``.

    Attributes: ``step`` (steps done), ``current`` (buffer holding p, m, v of that step),
    ``lr``, ``pending`` (``{"loss": ...}`` while the first step's moments wait in the other
    buffer), ``history`` ([max change, mean change, loss] per step), ``settings``, ``run_id``.
    """

    BUFFERS = ("canvas", "m", "v")

    def __init__(self, group: zarr.Group):
        self.group = group
        if "step" not in group.attrs:
            raise InputError(f"{group.store} holds no complete level state: create it again")

    @classmethod
    def create(
        cls,
        path,
        content: da.Array,
        canvas: da.Array,
        plan: TilePlan,
        settings: AdamSettings = AdamSettings(),
        dtype=np.float32,
    ) -> LevelState:
        """A new level at ``path`` (replacing any there) starting from ``canvas``; all
        per-pixel state is stored as ``dtype``."""
        shape = (*plan.shape, 3)
        for name, image in (("content", content), ("canvas", canvas)):
            if tuple(image.shape) != shape:
                raise InputError(f"{name} has shape {tuple(image.shape)}, the plan needs {shape}")
        group = zarr.open_group(Path(path).absolute(), mode="w")  # the same for every worker
        chunks = (plan.tile, plan.tile, 3)
        for name in ("content", *(f"{b}{i}" for b in cls.BUFFERS for i in (0, 1))):
            group.create_array(
                name, shape=shape, chunks=chunks, dtype=dtype, compressors=None, fill_value=0.0
            )
        tiled = [x.astype(dtype).rechunk(chunks) for x in (content, canvas)]
        da.store(tiled, [group["content"], group["canvas0"]], lock=False)
        group.attrs.put(
            {
                "step": 0,
                "current": 0,
                "lr": settings.lr,
                "pending": None,
                "history": [],
                "settings": dataclasses.asdict(settings),
                "run_id": uuid.uuid4().hex,
            }
        )
        return cls(group)

    @classmethod
    def nbytes(cls, plan: TilePlan, dtype=np.float32, *, released: bool = False) -> int:
        """Bytes on disk of a level state for ``plan`` (uncompressed, edge chunks whole): the
        most it holds, both buffers of canvas, m and v after :meth:`drop_content` (before it,
        only the content and one canvas), or its final canvas alone after :meth:`release`."""
        arrays = 1 if released else 2 * len(cls.BUFFERS)
        return arrays * len(plan) * plan.tile**2 * 3 * np.dtype(dtype).itemsize

    @classmethod
    def open(cls, path) -> LevelState:
        """The level state saved at ``path``."""
        try:
            group = zarr.open_group(Path(path).absolute(), mode="r+")
        except FileNotFoundError as err:
            raise InputError(f"no level state at {path}") from err
        return cls(group)

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    @property
    def step(self) -> int:
        return self.attrs["step"]

    @property
    def lr(self) -> float | None:
        return self.attrs["lr"]

    @property
    def settings(self) -> AdamSettings:
        return AdamSettings(**self.attrs["settings"])

    @property
    def done(self) -> bool:
        """Whether the stop test holds after the last step."""
        attrs, s = self.attrs, self.settings
        mean = attrs["history"][-1][1] if attrs["history"] else float("inf")
        return should_stop(mean, attrs["step"], s.stop_condition, s.max_iters)

    def _read(self, name: str, buffer: int) -> da.Array:
        attrs = self.attrs
        return read_zarr(self.group[f"{name}{buffer}"], attrs["run_id"], attrs["step"])

    def content(self) -> da.Array:
        """The level's content image."""
        return read_zarr(self.group["content"], self.attrs["run_id"])

    def canvas(self) -> da.Array:
        """p_t, the current canvas (same keys on every call for the same step)."""
        return self._read("canvas", self.attrs["current"])

    def canvas_store(self) -> zarr.Array:
        """p_t as its zarr array, for tasks that read their own windows of it."""
        return self.group[f"canvas{self.attrs['current']}"]

    def advance(self, grad: da.Array, loss=None) -> tuple[float, float, float | None]:
        """Run step t+1 with ``grad``, the gradient at :meth:`canvas` (and optionally its lazy
        ``loss``, computed in the same pass); commit it; return the max and mean pixel change
        and the loss. The first step of a level without a fixed ``lr`` first stores its moments
        with max ``|grad|`` and commits the rate the ``tpc`` rule gives."""
        attrs, s = self.attrs, self.settings
        t, cur = attrs["step"], attrs["current"]
        nxt = 1 - cur
        out = {b: self.group[f"{b}{nxt}"] for b in self.BUFFERS}
        canvas, m, v = (self._read(b, cur) for b in self.BUFFERS)
        if attrs["lr"] is None:
            stores, max_grad = moments_graph(
                grad, m, v, (out["m"], out["v"]), beta1=s.beta1, beta2=s.beta2
            )
            _, max_grad, loss = dask.compute(stores, max_grad, loss)
            lr = first_step_lr(max_grad, s.tpc, s.eps)
            self._commit(lr=lr, pending={"loss": _float_or_none(loss)})
            attrs = self.attrs
        hyper = {"step": t + 1, "lr": attrs["lr"], "beta1": s.beta1, "beta2": s.beta2, "eps": s.eps}
        if attrs["pending"] is not None:
            m, v = (self._read(b, nxt) for b in ("m", "v"))
            largest, mean = param_graph(canvas, m, v, out["canvas"], **hyper).compute()
            loss = attrs["pending"]["loss"]
        else:
            graph = step_graph(canvas, grad, m, v, tuple(out.values()), **hyper)
            largest, mean, loss = graph.compute(loss)
        result = (largest, mean, _float_or_none(loss))
        self._commit(
            step=t + 1, current=nxt, pending=None, history=[*attrs["history"], list(result)]
        )
        return result

    def drop_content(self) -> None:
        """Delete the content image, once what is computed from it (the content target) is on
        disk and nothing reads it any more; :meth:`content` fails afterwards."""
        shutil.rmtree(Path(self.group.store.root) / "content", ignore_errors=True)

    def release(self) -> None:
        """Delete all but the current canvas and the attributes (also anything stored beside
        the arrays, such as a content target): what a finished level keeps. Works on files,
        so that a repeat after a kill also removes arrays that were half deleted."""
        keep = {"zarr.json", f"canvas{self.attrs['current']}"}
        for entry in Path(self.group.store.root).iterdir():
            if entry.is_dir() and entry.name not in keep:
                shutil.rmtree(entry)

    def _commit(self, **changes) -> None:
        """Write the attributes in one atomic store write (zarr writes ``zarr.json`` via rename)."""
        self.group.attrs.put({**self.attrs, **changes})

"""Benchmarks that print figures (never timed unit tests).

Each measured configuration runs in a fresh process, so that its peak RSS is its own.

- ``gradient``: the untiled gradient against tiled ones of several tile sizes.
- ``networks``: seconds per untiled evaluation (one iteration's network work) per network.
- ``iteration``: one whole iteration (Gram pass, gradient pass, chunked Adam on zarr).
- ``precision``: gradient error of float32 / TF32 / bfloat16 against float64.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from daskstyle.compute import allocator
from daskstyle.core.geometry import TILE_BYTES_PER_PIXEL


def _in_child(function, *args):
    """``function(*args)`` in a fresh process (its own peak RSS) that allocates memory as
    daskstyle's workers do (:mod:`daskstyle.compute.allocator`), on the threaded scheduler as
    ``daskstyle run --cluster threads`` opens it (:class:`daskstyle.compute.executor.Executor`)."""
    context = multiprocessing.get_context("spawn")
    with allocator.starting_workers(), ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_on_threads, function, *args).result()


def _on_threads(function, *args):
    from daskstyle.compute.executor import Executor

    with Executor("threads").open():
        return function(*args)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _images(size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    canvas, content = rng.uniform(0, 255, (2, size, size, 3))
    return canvas, content, rng.uniform(0, 255, (size // 2, size // 2, 3))


def _time_gradient(size: int, tile: int | None, dtype: str, network: str) -> dict:
    """In a child: one warm-up on a small canvas, then the timed evaluation."""
    from daskstyle.api import loss_and_grad
    from daskstyle.networks.catalog import random_weights

    canvas, content, style = _images(size)
    kw = dict(weights=random_weights(network), dtype=np.dtype(dtype), network=network)
    loss_and_grad(canvas[:64, :64], content[:64, :64], style[:64, :64], **kw)
    base = _peak_mib()
    start = time.perf_counter()
    loss_and_grad(canvas, content, style, tile=tile, **kw)
    return dict(tile=tile, seconds=time.perf_counter() - start, peak=_peak_mib(), base=base)


def print_gradient(size: int, tiles, dtype: str, network: str, echo=print) -> None:
    """Untiled, then each tile size: seconds, ratio to untiled, peak RSS."""
    echo(f"loss and gradient, {network} to relu5_1, {size}x{size} canvas, {dtype}, random weights")
    echo(
        f"{'tiles':>10} {'seconds':>9} {'vs untiled':>11} {'peak RSS MiB':>13} {'(after import)':>15}"
    )
    baseline = None
    for tile in (None, *tiles):
        r = _in_child(_time_gradient, size, tile, dtype, network)
        baseline = baseline or r["seconds"]
        label = "untiled" if tile is None else f"{tile}px"
        echo(f"{label:>10} {r['seconds']:9.2f} {r['seconds'] / baseline:10.2f}x "
             f"{r['peak']:13.0f} {r['base']:15.0f}")  # fmt: skip


def print_networks(size: int, networks, echo=print) -> None:
    """Seconds per untiled loss-and-gradient evaluation of each network."""
    echo(f"untiled loss and gradient at {size}x{size}, float32, random weights")
    for network in networks:
        r = _in_child(_time_gradient, size, None, "float32", network)
        echo(f"{network:>10} {r['seconds']:7.2f} s per iteration   peak RSS {r['peak']:6.0f} MiB")


def _time_iteration(size: int, tile: int, network: str, steps: int, directory: str,
                    precision: str = "exact", gram: str = "exact",
                    checkpoint_every: int | str = 1) -> list[dict]:  # fmt: skip
    """In a child: a level of ``size``² on disk, then ``steps`` timed steps of a run's level
    loop (held in memory between checkpoints where ``checkpoint_every`` is not 1). Lagged Grams
    lag from the second step whatever their drift: the bench times the one-pass step."""
    import dask.array as da

    from daskstyle.api import make_plan, style_graph
    from daskstyle.networks.catalog import random_weights
    from daskstyle.optimise.adam import AdamSettings
    from daskstyle.optimise.level import open_level
    from daskstyle.optimise.state import LevelState

    canvas, content, style = (
        da.from_array(x.astype(np.float32), chunks=(tile, tile, 3)) for x in _images(size)
    )
    graph = style_graph(network=network, weights=random_weights(network), precision=precision)
    plan = make_plan((size, size), tile, graph.halo.align)
    style_plan = make_plan(style.shape[:2], tile, graph.halo.align)
    adam = AdamSettings(max_iters=steps, stop=0.0)
    state = LevelState.create(directory, content, canvas, plan, adam)
    level = open_level(graph, state, plan, [(style, style_plan)], (1.0,), gram, math.inf,
                       checkpoint_every)  # fmt: skip
    return [dict(step=step.step, seconds=step.seconds, peak=_peak_mib(), tiles=len(plan))
            for step in level.steps()]  # fmt: skip


def iteration_figures(size: int, tile: int | str, network: str, steps: int,
                      precision: str = "exact", gram: str = "exact",
                      checkpoint_every: int | str = 1) -> list[dict]:  # fmt: skip
    """Per step of a fresh process's level of ``size``² (random pictures and weights): its
    number, seconds, the peak RSS so far (MiB) and the tiles."""
    with tempfile.TemporaryDirectory(prefix="daskstyle-bench-") as directory:
        args = (size, level_tile(size, tile), network, steps, directory, precision, gram,
                checkpoint_every)  # fmt: skip
        return _in_child(_time_iteration, *args)


def level_tile(size: int, tile: int | str) -> int:
    """The tile of a bench's level of ``size``²: ``tile``, or for ``auto`` the tile `daskstyle
    run --tile auto` cuts that level in (the largest that fits this machine, cut evenly)."""
    if tile != "auto":
        return tile
    from daskstyle.compute import hardware
    from daskstyle.core.geometry import TILE_MULTIPLE, balanced_tile

    return balanced_tile((size, size), hardware.auto_tile(TILE_MULTIPLE, "float32")[0])


def print_iteration(size: int, tile: int | str, network: str, steps: int = 2,
                    precision: str = "exact", gram: str = "exact", checkpoint_every: int | str = 1,
                    echo=print) -> None:  # fmt: skip
    """Whole iterations on a level; the first includes the learning-rate pass (and, with
    ``gram="lagged"``, the level's one Gram pass). The state is on disk, or in memory with a
    checkpoint every ``checkpoint_every`` steps or minutes ("15min")."""
    from daskstyle.optimise.held import Checkpoints

    tile = level_tile(size, tile)
    every = Checkpoints.of(checkpoint_every)
    where = f"state in memory, on disk every {every}" if every.held else "zarr state on disk"
    echo(f"{size}x{size} canvas, {tile}-px tiles, {network}, float32 ({precision}), "
         f"Grams {gram}, {where}, {_device_name()}")  # fmt: skip
    megapixels = size * size / 1e6
    for r in iteration_figures(size, tile, network, steps, precision, gram, checkpoint_every):
        echo(f"step {r['step']}: {r['tiles']} tiles, {r['seconds']:7.1f} s "
             f"({r['seconds'] / megapixels:6.2f} s/MP), "
             f"peak RSS so far {r['peak'] / 1024:5.2f} GiB")  # fmt: skip
    untiled = TILE_BYTES_PER_PIXEL * size * size / 2**30
    echo(f"untiled, the activations alone would need about {untiled:.1f} GiB")


def _device_name() -> str:
    """The device the tile kernels run on in this process's children."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def _precision_errors(size: int, network: str, weights_path) -> list[tuple[str, float]]:
    """In a child: max|Δg| / max|g| of each arithmetic against float64."""
    import torch

    from daskstyle.api import loss_and_grad
    from daskstyle.networks.catalog import random_weights, read_state_dict

    weights = read_state_dict(weights_path) if weights_path else random_weights(network)
    canvas, content, style = _images(size)
    kw = dict(network=network, weights=weights, tile=None)
    _, exact = loss_and_grad(canvas, content, style, dtype=np.float64, **kw)
    rows = []
    for name, dtype, precision in (("float32", np.float32, "exact"), ("tf32", np.float32, "tf32"),
                                   ("bf16 autocast", np.float32, "bf16")):  # fmt: skip
        if precision == "tf32" and not torch.cuda.is_available():
            rows.append((name, float("nan")))
            continue
        _, grad = loss_and_grad(canvas, content, style, dtype=dtype, precision=precision, **kw)
        rows.append((name, float(np.abs(grad - exact).max() / np.abs(exact).max())))
    return rows


def print_precision(size: int, network: str, echo=print) -> None:
    """Gradient error of each arithmetic against float64 (real weights where present)."""
    from daskstyle.networks.catalog import default_weights_path, get_network

    path = default_weights_path(get_network(network))
    weights = path if path.is_file() else None
    echo(f"gradient error vs float64, {network} ({'real' if weights else 'random'} weights), "
         f"{size}x{size}, max|Δ| / max|g|")  # fmt: skip
    for name, error in _in_child(_precision_errors, size, network, weights):
        echo(f"{name:>14} {'n/a (no CUDA here)' if np.isnan(error) else f'{error:.2e}'}")

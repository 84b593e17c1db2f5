"""Benchmark: Dask's overhead per tile task and per iteration against the compute of a tile.

    python pipelines/bench_overhead.py [--tiles 256 1024] [--core 512] [--timed 2]

1. The compute of one realistic tile, measured alone: a ``--core``-px core with VGG-19's
   exact halo to relu5_1 (Gram pass on the core + K_F, gradient pass on the core + K; the
   content target, computed once per level, is not counted), seeded random weights, float32,
   one torch thread (as in a Dask worker process, where distributed sets OMP_NUM_THREADS=1).
2. The overhead of one whole iteration (Gram pass, gradient pass, chunked Adam on a zarr
   level, exactly the graphs of :mod:`daskstyle.run.painting`) whose tile kernels do nothing: the
   real VGG-19 layer list, Gram sizes and weights (a graph literal shipped with every
   compute), 16-px cores with a 16-px halo so that each padded tile spans 3 x 3 chunks like a
   512-px core with K = 160 does, on a canvas of N tiles. Timed on the threaded scheduler and
   on a 2-process LocalCluster, after one warm-up iteration (which also sets the learning rate).

The table: tasks that ran per iteration, seconds of pure overhead per iteration, ms per task
and per tile, the iteration's compute with realistic tiles (tiles x tile seconds / slots) and
the overhead's share of such an iteration. Tile data here are tiny: moving realistic padded
tiles (8 MiB each at 512 + 2 x 160 px) between worker processes comes on top.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from unittest import mock

import dask
import dask.array as da
import numpy as np

from daskstyle.api import make_plan, style_graph
from daskstyle.compute.executor import Executor
from daskstyle.engine import featurenet, kernels
from daskstyle.networks.catalog import random_weights
from daskstyle.optimise.adam import AdamSettings
from daskstyle.optimise.level import open_level
from daskstyle.optimise.state import LevelState

NETWORK = "vgg19"
NULL_CORE = 16
NULL_HALO = 16


def null_statistics(model, tile, origin, core, layers):
    """A Gram-pass kernel that computes nothing (zero Grams of the right sizes)."""
    channels = {name: model.network.channels(name) for name in layers}
    return kernels.Statistics({n: np.zeros((c, c), np.float32) for n, c in channels.items()})


def null_content_features(model, tile, origin, core, layer):
    """A content-target kernel that computes nothing (zero features of the right shape)."""
    y0, y1, x0, x1 = core
    scale = model.network.scale(layer)
    return np.zeros((y1 // scale - y0 // scale, x1 // scale - x0 // scale,
                     model.network.channels(layer)), np.float32)  # fmt: skip


def null_gradient(model, canvas_tile, content, origin, core, terms, errors, with_statistics=False):
    """A gradient-pass kernel that computes nothing (a zero gradient on the core; exact Grams
    only: no partial Grams)."""
    y0, y1, x0, x1 = core
    return np.zeros((y1 - y0, x1 - x0, 3), np.float32), 0.0, 0.0


def tile_seconds(core: int) -> tuple[float, float, int]:
    """Seconds of the Gram-pass and gradient-pass kernels of one interior tile, and K."""
    import torch

    torch.set_num_threads(1)
    graph = style_graph(network=NETWORK, weights=random_weights(NETWORK, 0))
    model = featurenet.get_model(graph.spec, graph.weights.compute())
    halo = graph.halo
    terms = graph.terms((4 * core, 4 * core))
    rng = np.random.default_rng(0)
    seconds = []
    for side in (64, core):  # a small warm-up, then the measured tile
        y0, x0 = halo.total, halo.total  # an interior tile: the full halo on every side
        stats_tile = rng.uniform(0, 255, (side + 2 * halo.forward,) * 2 + (3,)).astype(np.float32)
        grad_tile = rng.uniform(0, 255, (side + 2 * halo.total,) * 2 + (3,)).astype(np.float32)
        core_box = (y0, y0 + side, x0, x0 + side)
        _content_input(model, graph, grad_tile)  # once per level, not per iteration: untimed
        start = time.perf_counter()
        stats = kernels.tile_statistics(model, stats_tile, (y0 - halo.forward,) * 2, core_box,
                                        tuple(graph.style_weights))  # fmt: skip
        middle = time.perf_counter()
        errors = {name: g / terms.cells[name] for name, g in stats.grams.items()}
        kernels.tile_gradient(model, grad_tile, _content_input(model, graph, grad_tile), (0, 0),
                              core_box, terms, errors)  # fmt: skip
        seconds = [middle - start, time.perf_counter() - middle]
    return seconds[0], seconds[1], halo.total


def _content_input(model, graph, tile):
    """The content target φ_O(o) over a padded tile, as ``tile_gradient`` takes it."""
    box = (0, tile.shape[0], 0, tile.shape[1])
    return kernels.tile_content_features(model, tile, (0, 0), box, graph.content_layer)


class _Count(dask.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.tasks = 0

    def _pretask(self, key, dsk, state):
        self.tasks += 1


def null_iterations(tiles: int, client, warmup: int, timed: int, folder: str) -> tuple[float, int]:
    """Median seconds of a null-kernel iteration on a canvas of ``tiles`` tiles; tasks run."""
    side = round(tiles**0.5) * NULL_CORE
    graph = style_graph(network=NETWORK, weights=random_weights(NETWORK, 0), halo=NULL_HALO)
    plan = make_plan((side, side), NULL_CORE, graph.halo.align)
    assert len(plan) == tiles
    style = np.random.default_rng(1).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    style_plan = make_plan((64, 64), 32, graph.halo.align)
    content = da.random.default_rng(0).uniform(0, 255, (side, side, 3), chunks=(*plan.chunks, 3))
    adam = AdamSettings(max_iters=warmup + timed, stop=0.0)
    with (mock.patch.object(kernels, "tile_statistics", null_statistics),
          mock.patch.object(kernels, "tile_content_features", null_content_features),
          mock.patch.object(kernels, "tile_gradient", null_gradient)):  # fmt: skip
        state = LevelState.create(f"{folder}/level-{tiles}", content, content, plan, adam)
        level = open_level(graph, state, plan, [(style, style_plan)], (1.0,))
        steps = level.steps()  # a run's level loop
        seconds, tasks = [], []
        for _ in range(warmup + timed):
            counter = _Count()
            with counter, _task_stream(client) as stream:
                seconds.append(next(steps).seconds)
            tasks.append(len(stream.data) if client is not None else counter.tasks)
    return statistics.median(seconds[warmup:]), tasks[-1]


def _task_stream(client):
    if client is None:
        import contextlib

        return contextlib.nullcontext(None)
    from distributed import get_task_stream

    return get_task_stream(client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiles", type=int, nargs="+", default=[256, 1024], help="tiles per iteration (squares)"
    )
    parser.add_argument("--core", type=int, default=512, help="core side of the realistic tile")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--timed", type=int, default=2, help="timed iterations (median)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    args = parser.parse_args()
    cpus = os.cpu_count()

    stats_s, grad_s, k = tile_seconds(args.core)
    tile_s = stats_s + grad_s
    print(f"realistic tile: {args.core}-px core, {NETWORK} to relu5_1, K = {k} px, float32, "
          f"1 torch thread: Gram pass {stats_s:.2f} s + gradient pass {grad_s:.2f} s = {tile_s:.2f} s")  # fmt: skip

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as folder:
        with dask.config.set(scheduler="threads", num_workers=cpus):
            for tiles in args.tiles:
                rows.append((tiles, f"threads x{cpus}", cpus,
                             *null_iterations(tiles, None, args.warmup, args.timed, folder)))  # fmt: skip
        executor = Executor("local", workers=args.workers, threads_per_worker=1, dashboard=False)
        with executor.open() as session:
            client = session.client
            for tiles in args.tiles:
                rows.append((tiles, f"local {args.workers} proc", args.workers,
                             *null_iterations(tiles, client, args.warmup, args.timed, folder)))  # fmt: skip

    print(f"null-kernel iterations ({NULL_CORE}-px cores, {NULL_HALO}-px halo, real {NETWORK} "
          f"layers and weights), median of {args.timed} after {args.warmup} warm-up; {cpus} CPUs")  # fmt: skip
    print(f"{'tiles':>6} {'scheduler':>14} {'tasks':>7} {'overhead s/it':>14} {'ms/task':>8} "
          f"{'ms/tile':>8} {'compute s/it':>13} {'overhead %':>11}")  # fmt: skip
    for tiles, name, slots, seconds, tasks in rows:
        compute = tiles * tile_s / slots
        print(f"{tiles:>6} {name:>14} {tasks:>7} {seconds:>14.2f} {1e3 * seconds / tasks:>8.2f} "
              f"{1e3 * seconds / tiles:>8.1f} {compute:>13.0f} {100 * seconds / (seconds + compute):>10.2f}%")  # fmt: skip


if __name__ == "__main__":
    main()

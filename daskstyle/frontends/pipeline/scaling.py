"""A scaling study: strong and weak scaling of real iterations over workers and tile sizes.

Each configuration runs ``warmup`` + ``iterations`` iterations (Gram pass, gradient pass,
chunked Adam on a temporary zarr level: what :mod:`daskstyle.run.painting` does per step) on a
``LocalCluster`` of that many worker processes, on synthetic seeded content and style.
Efficiency is against the smallest worker count ``n0`` of the same mode and tile: strong
``n0 * T(n0) / (n * T(n))``, weak ``T(n0) / T(n)``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from daskstyle.core.text import counted
from daskstyle.io import files
from daskstyle.run import footprint

from . import plot
from .keys import RANDOM, Scaling

WEAK_ROUNDING = 16  # weak-scaling canvas sides are rounded to this many px
CSV_FIELDS = (
    "mode", "workers", "threads_per_worker", "tile", "canvas", "tiles_per_iteration",
    "iterations", "seconds_per_iteration", "tiles_per_second", "efficiency",
)  # fmt: skip


def weak_side(canvas: int, workers: int) -> int:
    """Canvas side for weak scaling: area proportional to ``workers``, rounded to 16 px."""
    return max(WEAK_ROUNDING, round(canvas * math.sqrt(workers) / WEAK_ROUNDING) * WEAK_ROUNDING)


def run_scaling(config: Scaling, echo: Callable[[str], None]) -> list[Path]:
    """Run the study; write and return ``OUTPUT.csv`` and ``OUTPUT.png``."""
    plot.require_matplotlib()
    weights = config.weights
    if weights == RANDOM:
        from daskstyle.networks.catalog import random_weights

        weights = random_weights(config.network, config.seed)
    graph = _graph(config, weights)
    echo(f"scaling: {graph.network.name} {', '.join(graph.spec.layers)}, halo {graph.halo.total} px, "
         f"{config.iterations} timed iterations after {config.warmup} warm-up")  # fmt: skip
    output, root = config.output, config.workdir
    footprint.require_free(Path(root or tempfile.gettempdir()), _largest_state(graph, config),
                           option=" (workdir)")  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="daskstyle-scaling-", dir=root) as folder:
        for workers in config.workers:
            rows += _rows_at(workers, config, weights, Path(folder), echo)
    _add_efficiency(rows)
    csv_path, png_path = (
        output.with_name(output.name + ".csv"),
        output.with_name(output.name + ".png"),
    )
    files.write_atomically(csv_path, _csv_text(rows).encode())
    files.write_atomically(png_path, plot.scaling_png(rows, _title(graph, config)))
    echo(f"wrote {csv_path} and {png_path}")
    return [csv_path, png_path]


def _graph(config: Scaling, weights, resources: dict | None = None):
    """The study's StyleGraph; built under a client, its weights go to the workers once."""
    from daskstyle.api import style_graph

    return style_graph(
        network=config.network, weights=weights, content_layer=config.content_layer,
        style_layers=config.style_layers, dtype=config.dtype, precision=config.precision,
        resources=resources,
    )  # fmt: skip


def _largest_state(graph, config: Scaling) -> int:
    """Bytes on disk of the study's largest synthetic level (one exists at a time)."""
    from daskstyle.api import make_plan

    sides = {config.canvas}
    if "weak" in config.modes:
        sides |= {weak_side(config.canvas, workers) for workers in config.workers}
    plans = [make_plan((s, s), t, graph.halo.align) for s in sides for t in config.tiles]
    return max(footprint.running_bytes(plan, config.dtype, graph) for plan in plans)


def _rows_at(
    workers: int, config: Scaling, weights, folder: Path, echo: Callable[[str], None]
) -> list[dict]:
    """Every (mode, tile) configuration on one LocalCluster of ``workers`` processes."""
    from daskstyle.compute.executor import Executor

    executor = Executor("local", workers=workers, threads_per_worker=config.threads_per_worker,
                        memory_limit=config.memory_limit, dashboard=False,
                        tile=max(config.tiles), dtype=config.dtype)  # fmt: skip
    with executor.open() as session:
        graph = _graph(config, weights, session.resources)
        return [row for tile in config.tiles
                for row in _tile_rows(graph, workers, tile, config, folder, echo)]  # fmt: skip


def _tile_rows(
    graph, workers: int, tile: int, config: Scaling, folder: Path, echo: Callable[[str], None]
):
    """A row per mode at one worker count and tile size (strong and weak are the same
    configuration at one worker: it runs once)."""
    timed: dict[int, list[float]] = {}  # canvas side -> seconds of each timed iteration
    rows = []
    for mode in config.modes:
        side = config.canvas if mode == "strong" else weak_side(config.canvas, workers)
        if side not in timed:
            timed[side] = _time_iterations(graph, side, tile, config, folder)
        seconds, tiles = statistics.median(timed[side]), math.ceil(side / tile) ** 2
        rows.append({
            "mode": mode, "workers": workers, "threads_per_worker": config.threads_per_worker,
            "tile": tile, "canvas": side, "tiles_per_iteration": tiles,
            "iterations": len(timed[side]), "seconds_per_iteration": seconds,
            "tiles_per_second": tiles / seconds,
        })  # fmt: skip
        count = counted(tiles, "tile")
        echo(f"{mode:>6} {workers:3d} workers x {config.threads_per_worker} threads, "
             f"tile {tile:5d}, {side}x{side} px, {count:>10}: {seconds:8.3f} s/iteration, "
             f"{tiles / seconds:8.2f} tiles/s")  # fmt: skip
    return rows


def _time_iterations(graph, side: int, tile: int, config: Scaling, folder: Path) -> list[float]:
    """Seconds of each timed step of the real engine (a run's level loop) on a fresh
    synthetic level."""
    import dask.array as da
    import numpy as np

    from daskstyle.api import make_plan
    from daskstyle.optimise.adam import AdamSettings
    from daskstyle.optimise.level import open_level
    from daskstyle.optimise.state import LevelState

    plan = make_plan((side, side), tile, graph.halo.align)
    rng = np.random.default_rng(config.seed)
    style = rng.uniform(0, 255, (config.style_side, config.style_side, 3)).astype(np.float32)
    style_plan = make_plan(style.shape[:2], tile if tile < config.style_side else None,
                           graph.halo.align)  # fmt: skip
    content = da.random.default_rng(config.seed).uniform(
        0, 255, (side, side, 3), chunks=(*plan.chunks, 3)
    )
    adam = AdamSettings(max_iters=config.warmup + config.iterations, stop=0.0)
    path = folder / f"level-{side}-{tile}"
    state = LevelState.create(path, content, content, plan, adam, dtype=config.dtype)
    try:
        level = open_level(graph, state, plan, [(da.from_array(style), style_plan)], (1.0,))
        seconds = [step.seconds for step in level.steps()]
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return seconds[config.warmup :]


def _add_efficiency(rows: list[dict]) -> None:
    """Add each row's efficiency against the smallest worker count of its mode and tile."""
    first = {}
    for row in sorted(rows, key=lambda r: r["workers"]):
        first.setdefault((row["mode"], row["tile"]), row)
    for row in rows:
        base = first[(row["mode"], row["tile"])]
        ratio = base["seconds_per_iteration"] / row["seconds_per_iteration"]
        if row["mode"] == "strong":
            ratio *= base["workers"] / row["workers"]
        row["efficiency"] = ratio


def _csv_text(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return text.getvalue()


def _title(graph, config: Scaling) -> str:
    layers = ", ".join(graph.spec.layers)
    return (f"{graph.network.name} ({layers}), {config.dtype}; strong: {config.canvas}² canvas, "
            f"weak: {config.canvas}² per worker; {config.threads_per_worker} thread(s) per "
            f"worker, {os.cpu_count()} CPUs")  # fmt: skip

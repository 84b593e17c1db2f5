"""``daskstyle bench cluster --simulate``: one level's real step graphs on the real Dask
scheduler, with simulated GPU workers.

The Gram pass, the gradient pass and their tree sums are built by the engine's own
:class:`daskstyle.engine.graph.StyleGraph`; only the network tasks are replaced
(:mod:`daskstyle.frontends.simulated_gpus`). Each tile
task sleeps for its projected GPU time (the FLOPs of its padded tile over a stated throughput
at a stated efficiency) plus, with the state on a shared filesystem, the time its reads take at
the worker's share of the filesystem's bandwidth. Each task's result is a :class:`Payload` that
Dask counts at the real size of the data it stands for, so the scheduler places tasks and moves
data between workers as it would for the real arrays. One chunked Adam task per tile follows,
as in a run. The workers are threads of this process, one task at a time each, as one GPU runs
one tile at a time; the scheduler runs in a process of its own
(:mod:`daskstyle.compute.scheduler_process`), as on a cluster, and its CPU time is measured.
A scheduler spends CPU time even while no graph runs (its workers' heartbeats, its own
monitor), at a rate measured on each cluster before its first step; a simulated step takes far
longer here than on GPUs, so that rate times the step's wall time is taken off as background,
and the rest is the step's work.

Per configuration the simulation reports the step's wall time here, the critical path and
the GPUs' work, the client's and the scheduler's CPU time, the bytes moved between workers and
to and from the run directory, and the step projected (:func:`_figures` says how) with the
state on the filesystem (every step reads and writes it) and held in the workers' memory
(``--checkpoint-every``: written once every N steps, with the content target's windows that the
tiles read held beside it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import psutil

from daskstyle.compute.scheduler_process import threads_beside_a_scheduler
from daskstyle.core import geometry
from daskstyle.engine import featurenet
from daskstyle.engine.chunk_tasks import ChunkTasks
from daskstyle.engine.tiles import Blocks, HeldWindows
from daskstyle.frontends.simulated_gpus import (
    ADAM_BYTES_PER_PIXEL,
    Machines,
    Payload,
    SimulatedGraph,
    SimulatedStore,
    forward_flops_per_pixel,
    simulated_adam,
)
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, get_network

#: Seconds over which a cluster's scheduler is watched idle before its first step.
IDLE_SECONDS = 20.0


@dataclass(frozen=True)
class Configuration:
    """One simulated level: ``size``² px in ``tile``-px tiles on ``workers`` GPUs, its state
    held in memory (``held``) or on the filesystem."""

    size: int
    tile: int
    workers: int
    held: bool
    network: str = "vgg19"
    checkpoint_every: int = 10


def build(config: Configuration, machines: Machines,
          sleeps: bool = True) -> tuple[SimulatedGraph, geometry.TilePlan]:  # fmt: skip
    """The simulated graph of ``config``'s level and its tile plan (``sleeps``: see
    :class:`SimulatedGraph`)."""
    network = get_network(config.network)
    layers = (DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS)
    deepest = max(layers, key=network.index)
    spec = featurenet.ModelSpec(network.name, layers, "float32", "simulated", "bf16")
    plan = geometry.TilePlan((config.size, config.size), config.tile)
    readers = min(config.workers, len(plan))  # a level of fewer tiles leaves workers idle
    graph = SimulatedGraph(
        network=network, content_layer=DEFAULT_CONTENT_LAYER, content_weight=1.0,
        style_weights=dict.fromkeys(DEFAULT_STYLE_LAYERS, 1.0), spec=spec,
        weights=dask.delayed({}), halo=network.halo(layers), machines=machines,
        disk_share=machines.disk_gbps * 1e9 / readers,
        forward=forward_flops_per_pixel(network, DEFAULT_STYLE_LAYERS[-1]),
        gradient=2 * forward_flops_per_pixel(network, deepest),  # the backward ≈ the forward
        sleeps=sleeps,
    )  # fmt: skip
    return graph, plan


def step(client, config: Configuration, machines: Machines, scheduler: psutil.Process,
         background: float) -> dict:  # fmt: skip
    """Simulate one step of ``config`` on ``client``'s workers; its figures. It runs twice: with
    no sleeps, to warm the workers, then with the projected times, measured: its wall time, the
    CPU time of this thread (the client's: the graph built, optimised and sent) and of the
    ``scheduler``'s process less its ``background`` (CPU seconds per second while idle:
    :func:`idle_rate`) over the wall time, and the bytes the workers sent each other."""
    held = None
    if config.held:  # canvas and moments, persisted arrays, and the content target's windows
        graph, plan = build(config, machines)
        channels = graph.network.channels(DEFAULT_CONTENT_LAYER)
        windows = {(r.start, r.stop, c.start, c.stop): dask.delayed(Payload)(
                   (r.stop - r.start) * (c.stop - c.start) * channels * 4)
                   for r, c in graph.content_windows(plan)}  # fmt: skip
        *state, persisted = dask.persist(*(_held_array(plan) for _ in range(3)),
                                         list(windows.values()))  # fmt: skip
        held = state, HeldWindows(dict(zip(windows, persisted)), _target_cells(graph, plan))
    dask.compute(*_step_graph(config, build(config, machines, sleeps=False), held, machines)[3])
    sent, busy = _bytes_sent(client), _cpu_seconds(scheduler)
    began, client_began = time.perf_counter(), time.thread_time()
    graph, plan, target, tasks = _step_graph(config, build(config, machines), held, machines)
    dask.compute(*tasks)
    wall = time.perf_counter() - began
    measured = Measured(wall=wall, client_cpu=time.thread_time() - client_began,
                        scheduler_cpu=_cpu_seconds(scheduler) - busy,
                        between=_bytes_sent(client) - sent,
                        scheduler_background=background * wall)  # fmt: skip
    return _figures(config, machines, graph, plan, target, measured)


@dataclass(frozen=True)
class Measured:
    """What a simulated step measured: its ``wall`` seconds, the CPU seconds of the client's
    thread and of the scheduler's process, the bytes sent ``between`` workers, and the part
    of the scheduler's CPU seconds that it spends idle as well (``scheduler_background``)."""

    wall: float
    client_cpu: float
    scheduler_cpu: float
    between: int
    scheduler_background: float

    @property
    def scheduler_work(self) -> float:
        """The scheduler's CPU seconds for the step's graph: its own less the background
        (never below none)."""
        return max(self.scheduler_cpu - self.scheduler_background, 0.0)


def _held_array(plan: geometry.TilePlan) -> da.Array:
    """A held (H, W, 3) float32 array in ``plan``'s chunks, each a :class:`Payload`."""
    blocks = [[[da.from_delayed(dask.delayed(Payload)(12 * (t.y1 - t.y0) * (t.x1 - t.x0)),
                                (t.y1 - t.y0, t.x1 - t.x0, 3), dtype=np.float32)]
               for t in plan if t.row == row] for row in range(plan.grid[0])]  # fmt: skip
    return da.block(blocks)  # rows, columns, and the channels in one block


def idle_rate(scheduler: psutil.Process, seconds: float = IDLE_SECONDS) -> float:
    """The CPU seconds per second that the ``scheduler``'s process spends with no graph to
    run, measured over ``seconds``."""
    began, busy = time.perf_counter(), _cpu_seconds(scheduler)
    time.sleep(seconds)
    return (_cpu_seconds(scheduler) - busy) / (time.perf_counter() - began)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _target_cells(graph: SimulatedGraph, plan: geometry.TilePlan) -> tuple[int, int]:
    scale = graph.network.scale(DEFAULT_CONTENT_LAYER)
    return tuple(geometry.feature_size(n, scale) for n in plan.shape)


def _step_graph(config: Configuration, built, held, machines: Machines):
    """The graph, plan, content target (on disk) and the tasks of one step (its loss and
    Adam's); ``held``: the held state (each tile's canvas and moments) and content target's
    windows, or None."""
    graph, plan = built
    scale = graph.network.scale(DEFAULT_CONTENT_LAYER)
    channels = graph.network.channels(DEFAULT_CONTENT_LAYER)
    chunk = geometry.target_chunk(plan.tile // scale, channels)
    target = SimulatedStore(_target_cells(graph, plan), channels, chunk)
    if held is None:
        canvas, read_target = SimulatedStore(plan.shape, 3, plan.tile), target
        state, bandwidth = [], graph.disk_share  # read and written in the run directory
    else:
        state, read_target = held
        canvas = Blocks.of(state[0])
        bandwidth = machines.memory_gbps * 1e9  # read and written in GPU memory
    style = {name: np.zeros((graph.network.channels(name),) * 2) for name in graph.style_weights}
    loss, grad = graph.loss_and_grad(canvas, read_target, plan, style)
    seconds_per_pixel = ADAM_BYTES_PER_PIXEL / bandwidth * graph.sleeps
    updates = ChunkTasks.of("simulated-adam", simulated_adam, grad.chunks, grad,
                            seconds_per_pixel, *state)  # fmt: skip
    return graph, plan, target, [loss, updates.part(0, np.float64, width=1)]


def _bytes_sent(client) -> int:
    return sum(w.transfer_outgoing_bytes_total for w in client.cluster.workers.values())


def _figures(config: Configuration, machines: Machines, graph: SimulatedGraph,
             plan: geometry.TilePlan, target: SimulatedStore, measured: Measured) -> dict:  # fmt: skip
    """A step's figures: ``measured``, counted from the plan (the tasks' times as
    :meth:`SimulatedGraph._model_call` sets them) and projected.

    The projection does not take the measured wall time, since here every simulated worker
    shares this process with the client, which a cluster does not. It adds what runs one after
    the other and takes the largest of what overlaps: the client's graph, then the longest of
    the passes' tasks spread over the workers (each pass waits for the one before), the
    scheduler's CPU time, the network (the bytes between workers over their links) and the run
    directory's traffic over the filesystem's bandwidth, then the step's share of a checkpoint.
    ``at_most_step_s`` adds them all, as if nothing overlapped, with all of the scheduler's
    CPU time (none of it taken off as background: the idle rate is an estimate that need not
    hold while a step runs). The bottleneck is the largest of the GPUs' work, the filesystem,
    the network and the scheduler."""
    halo, share = graph.halo, graph.disk_share
    store = SimulatedStore(plan.shape, 3, plan.tile)
    gpu = {"gram": [], "grad": [], "adam": []}
    read = {"gram": [], "grad": [], "adam": []}
    flops, disk = 0.0, 0.0
    for tile, cells in zip(plan, graph.content_windows(plan)):
        forward, total = (_padded(tile, depth, plan.shape) for depth in (halo.forward, halo.total))
        content = target.window(*cells)
        reads = [0, 0] if config.held else [store.window(*tile.padded(depth, plan.shape)).nbytes
                                            for depth in (halo.forward, halo.total)]  # fmt: skip
        pixels = (tile.y1 - tile.y0) * (tile.x1 - tile.x0)
        adam = ADAM_BYTES_PER_PIXEL * pixels
        flops += graph.forward * forward + graph.gradient * total
        gpu["gram"].append(machines.seconds(graph.forward * forward))
        gpu["grad"].append(machines.seconds(graph.gradient * total))
        gpu["adam"].append(adam / (machines.memory_gbps * 1e9) if config.held else 0.0)
        read["gram"].append(reads[0] / share)
        content_bytes = 0 if config.held else content.nbytes  # held: its window is in memory
        read["grad"].append((reads[1] + content_bytes) / share)
        read["adam"].append(0.0 if config.held else adam / share)
        disk += sum(reads) + content_bytes + (0 if config.held else adam)
    busy = min(config.workers, len(plan))  # workers with a tile to run
    passes = {name: [g + r for g, r in zip(gpu[name], read[name])] for name in gpu}
    critical = sum(max(times) for times in passes.values())
    spread = sum(max(max(times), sum(times) / busy) for times in passes.values())
    bandwidth = machines.disk_gbps * 1e9
    checkpoint = config.held * 36 * plan.shape[0] * plan.shape[1] / bandwidth
    checkpoint /= config.checkpoint_every
    network = measured.between / (config.workers * machines.link_gbps * 1e9)
    parts = {"compute": machines.seconds(flops) / busy, "disk": disk / bandwidth,
             "network": network, "scheduler": measured.scheduler_work}  # fmt: skip
    overlapping = max(spread, measured.scheduler_work, network, parts["disk"])
    projected = measured.client_cpu + overlapping + checkpoint
    at_most = measured.client_cpu + spread + measured.scheduler_cpu + network + checkpoint
    return {
        "size": config.size, "tile": plan.tile, "workers": config.workers,
        "state": f"held, checkpoint every {config.checkpoint_every}" if config.held else "on disk",
        "tiles": len(plan), "step_s": round(measured.wall, 2),
        "critical_path_s": round(critical, 3), "passes_s": round(spread, 3),
        "compute_s": round(parts["compute"], 3),
        "client_cpu_s": round(measured.client_cpu, 2),
        "scheduler_cpu_s": round(measured.scheduler_work, 2),
        "scheduler_background_s": round(measured.scheduler_background, 2),
        "network_s": round(network, 3), "disk_s": round(parts["disk"], 3),
        "checkpoint_s": round(checkpoint, 3),
        "between_workers_gb": float(f"{measured.between / 1e9:.3g}"),
        "run_dir_gb": float(f"{(disk + checkpoint * bandwidth) / 1e9:.3g}"),
        "projected_step_s": round(projected, 2), "at_most_step_s": round(at_most, 2),
        "bottleneck": max(parts, key=parts.get),
    }  # fmt: skip


def _padded(tile: geometry.Tile, depth: int, shape: tuple[int, int]) -> int:
    rows, cols = tile.padded(depth, shape)
    return (rows.stop - rows.start) * (cols.stop - cols.start)


def simulate(sizes, tiles, workers, machines: Machines = Machines(), network: str = "vgg19",
             checkpoint_every: int = 10, echo=print, states: tuple[bool, ...] = (False, True),
             idle_seconds: float | None = None) -> list[dict]:  # fmt: skip
    """Every configuration's figures, each worker count on a fresh cluster: its workers threads
    of this process, its scheduler in a process of its own, whose idle CPU rate is measured
    first, over ``idle_seconds`` (None: :data:`IDLE_SECONDS`). ``states``: the state on disk
    (False), held in the workers' memory (True), or both."""
    rows = []
    for count in workers:
        with threads_beside_a_scheduler(count) as (client, pid):
            scheduler = psutil.Process(pid)
            background = idle_rate(scheduler, idle_seconds or IDLE_SECONDS)
            for size in sizes:
                for tile in tiles:
                    for held in states:
                        config = Configuration(size, tile, count, held, network, checkpoint_every)
                        rows.append(step(client, config, machines, scheduler, background))
                        echo(", ".join(f"{k} {v}" for k, v in rows[-1].items()))
    return rows


def run_from_arguments(args) -> None:
    """``daskstyle bench cluster``: simulate, print a line per configuration, write the CSV."""
    import csv

    from daskstyle.core.errors import InputError

    if not args.simulate:
        raise InputError("daskstyle bench cluster simulates its workers: give --simulate")
    if min(args.workers) < 1 or min(args.size) < 16 or min(args.tile) < 16:
        raise InputError("give --workers of at least 1 and --size and --tile of at least 16 px")
    machines = Machines(args.tflops, args.efficiency, args.memory_gbps, args.disk_gbps,
                        args.link_gbps)  # fmt: skip
    print(f"simulated GPUs: {machines.tflops:g} TFLOP/s at {machines.efficiency:.0%}, "
          f"{machines.memory_gbps:g} GB/s memory; filesystem {machines.disk_gbps:g} GB/s; "
          f"links {machines.link_gbps:g} GB/s")  # fmt: skip
    rows = simulate(args.size, args.tile, args.workers, machines, args.network,
                    args.checkpoint_every)  # fmt: skip
    if args.csv:
        with open(args.csv, "w", newline="") as file:
            writer = csv.DictWriter(file, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

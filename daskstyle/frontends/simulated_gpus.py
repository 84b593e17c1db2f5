"""The simulated GPU workers of ``daskstyle bench cluster --simulate``
(:mod:`daskstyle.frontends.cluster_simulation`): what a tile's tasks cost on a stated GPU and
filesystem, and the engine's graphs with each network task replaced by a sleep of that time
whose result Dask counts at the real size of the data it stands for.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import dask
import numpy as np
from dask.sizeof import sizeof

from daskstyle.core import geometry
from daskstyle.engine import kernels
from daskstyle.engine.graph import StyleGraph
from daskstyle.engine.graph import _whole_image as whole_image
from daskstyle.engine.tiles import take_chunks

#: Bytes of the state per pixel a step on disk moves: Adam reads the canvas and both moments
#: and writes them again (3 arrays of 3 float32 samples, each way).
ADAM_BYTES_PER_PIXEL = 2 * 3 * 3 * 4
#: An H100 SXM's dense bf16 throughput (TFLOP/s) and its memory bandwidth (GB/s).
H100_TFLOPS, H100_MEMORY_GBPS = 989.0, 3350.0


@dataclass(frozen=True)
class Machines:
    """What a simulated worker and its cluster do per second: the GPU's throughput
    (``tflops`` at ``efficiency``) and memory bandwidth, the shared filesystem's bandwidth for
    all workers together, and each worker's network link."""

    tflops: float = H100_TFLOPS
    efficiency: float = 0.3
    memory_gbps: float = H100_MEMORY_GBPS
    disk_gbps: float = 10.0
    link_gbps: float = 25.0

    def seconds(self, flops: float) -> float:
        return flops / (self.tflops * 1e12 * self.efficiency)


class Payload:
    """Stands for an array of ``nbytes`` without holding it: Dask counts it at that size."""

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)


sizeof.register(Payload, lambda payload: payload.nbytes)


def forward_flops_per_pixel(network, deepest: str) -> float:
    """FLOPs per input pixel of the network's convolutions up to layer ``deepest`` (3x3
    kernels: 2 · 9 · C_in · C_out per cell, a cell of a layer at scale s covering s² pixels)."""
    flops, scale, channels = 0.0, 1, 3
    names, kinds = network.layer_names, network.layer_kinds
    widths = iter(c for c in network.cfg if c != "M")
    for name, kind in zip(names[: network.index(deepest) + 1], kinds):
        if kind == geometry.CONV:
            width = next(widths)
            flops += 2 * 9 * channels * width / scale**2
            channels = width
        elif kind == geometry.POOL:
            scale *= 2
    return flops


@dataclass(frozen=True)
class StoredWindow:
    """A window a task reads from the run directory: its pixels and bytes."""

    pixels: int
    nbytes: int


@dataclass(frozen=True)
class SimulatedStore:
    """A (H, W, C) float32 array in the run directory, in ``chunk``-sided chunks, that tasks
    read windows of: as the engine's tasks do, a window reads each chunk it touches whole."""

    shape: tuple[int, int]
    channels: int
    chunk: int

    def window(self, rows: slice, cols: slice) -> StoredWindow:
        touched = 1
        for cut, n in zip((rows, cols), self.shape):
            sizes = [self.chunk] * (-(-n // self.chunk))
            touched *= len(geometry.block_cuts(sizes, cut.start, cut.stop)[0]) * self.chunk
        pixels = (rows.stop - rows.start) * (cols.stop - cols.start)
        return StoredWindow(pixels, touched * self.channels * 4)


def _pixels(window) -> int:
    """Pixels of a tile's window, read from the run directory or from held chunks."""
    if isinstance(window, StoredWindow):
        return window.pixels
    rows = sum(cut.stop - cut.start for cut in window.row_cuts)
    return rows * sum(cut.stop - cut.start for cut in window.col_cuts)


@dataclass(frozen=True)
class SimulatedGraph(StyleGraph):
    """The engine's graphs with each network task replaced by a sleep of its projected time:
    ``forward`` and ``gradient`` FLOPs per padded pixel (a Gram pass's forward; a gradient
    pass's forward and backward), reads at ``disk_share`` bytes per second (one worker's share
    of the filesystem)."""

    machines: Machines = Machines()
    disk_share: float = 1.0
    forward: float = 0.0
    gradient: float = 0.0
    sleeps: bool = True  # False: every task returns at once (what the scheduler alone costs)

    def _model_call(self, function, windows: list, *args, **options):
        flops = self.forward if function is kernels.tile_statistics else self.gradient
        read = sum(w.nbytes for w in windows if isinstance(w, StoredWindow))
        seconds = self.machines.seconds(flops * _pixels(windows[0])) + read / self.disk_share
        seconds *= self.sleeps
        if function is whole_image:  # a level in one tile: one forward and one backward
            return dask.delayed(_simulated_whole_image)(seconds, _pixels(windows[0]))
        _, chunks = take_chunks(windows)  # as the engine's tasks get them
        return dask.delayed(_simulated_tile)(function is kernels.tile_statistics, seconds,
                                             self.style_channels, args[1], *chunks)  # fmt: skip

    @functools.cached_property
    def style_channels(self) -> dict[str, int]:
        """Each style layer's channels (counted once, not at every task the client builds)."""
        return {name: self.network.channels(name) for name in self.style_weights}

    def _inputs(self, canvas, content_target, plan, style_grams):
        return self.terms(plan.shape), canvas, content_target, dask.delayed(style_grams)


def _simulated_tile(statistics: bool, seconds: float, layers: dict, core, *chunks):
    """Sleep for the tile's projected time; return what its kernel would, at the real size
    (the held ``chunks`` that its windows read are only its inputs)."""
    time.sleep(seconds)
    if statistics:
        return kernels.Statistics({name: np.zeros((c, c)) for name, c in layers.items()})
    y0, y1, x0, x1 = core
    return Payload((y1 - y0) * (x1 - x0) * 3 * 4), 0.0, 0.0


def _simulated_whole_image(seconds: float, pixels: int):
    """Sleep for the image's projected time; return its loss and gradient, at the real size."""
    time.sleep(seconds)
    return 0.0, Payload(pixels * 3 * 4)


def simulated_adam(index: tuple, shape: tuple, grad: Payload, seconds_per_pixel: float,
                   *held) -> tuple[np.ndarray]:  # fmt: skip
    """The Adam update of the tile at ``index`` (of ``shape``) after its pixels' seconds: its
    canvas and moments are updated where they are held (the workers holding ``held``, its
    chunks of them), or read and written in the run directory; its share of the figures."""
    time.sleep(seconds_per_pixel * shape[0] * shape[1])
    return (np.zeros(1),)

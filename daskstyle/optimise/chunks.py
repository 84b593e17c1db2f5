"""A step's update written chunk by chunk in place, and the crc32c of a chunk as written.

Where the state is on disk, each chunk of an update is one task that takes its chunk of the
gradient, reads its own chunks of the state, writes the new ones into the other buffer and
returns only numbers: the written chunks' checksums and its share of the step's figures. No
task reads the state ahead of the gradient that needs it (as root tasks, Dask would run them
all, or every gradient task, first), so a step holds a few tiles' gradients at once rather
than the canvas's, whatever the scheduler's order.
"""

from __future__ import annotations

import itertools

import dask
import dask.array as da
import google_crc32c  # zarr's own dependency, behind its crc32c codec
import numpy as np
import zarr

from daskstyle.core.errors import InputError
from daskstyle.optimise.adam import Update

#: Where an array's ``zarr.json`` keeps the crc32c of each chunk's data as written, in the
#: C order of its chunk grid (arrays written before these checksums have none).
CHECKSUMS = "checksums"


def checksum(block: np.ndarray) -> int:
    """The crc32c of a chunk's data, in C order."""
    return google_crc32c.value(np.ascontiguousarray(block).view(np.uint8))


def keep_checksums(target: zarr.Array, sums: list[int]) -> None:
    """Keep in ``target``'s ``zarr.json`` the checksums of its chunks as written."""
    target.attrs[CHECKSUMS] = sums


def update_in_place(reads: dict[str, zarr.Array | None], writes: dict[str, zarr.Array],
                    update: Update, grad: da.Array | None, *others) -> tuple:  # fmt: skip
    """Run ``update`` over the state chunk by chunk: read its inputs from ``reads`` (name:
    array, None: zeros), take the gradient's chunks from ``grad`` (chunked as the arrays),
    write its outputs into ``writes`` (name: array) with their checksums, and compute
    ``others`` (Dask collections or None) in the same pass. Return the update's figures
    (NaN where a chunk's is) and the values of ``others``."""
    first = writes[update.outputs[0]]
    grid = list(itertools.product(*map(range, first.cdata_shape)))
    pieces = [None] * len(grid)
    if grad is not None:
        chunks = da.core.normalize_chunks(first.chunks, first.shape)
        if grad.chunks != chunks:
            raise InputError(f"the gradient's chunks {grad.chunks} are not the state's {chunks}")
        pieces = list(grad.to_delayed(optimize_graph=False).ravel())
    tasks = [dask.delayed(_update_chunk, pure=False)(update, reads, writes, index, piece)
             for index, piece in zip(grid, pieces)]  # fmt: skip
    results, *values = dask.compute(tasks, *others)
    for number, name in enumerate(update.outputs):
        keep_checksums(writes[name], [sums[number] for sums, _ in results])
    figures = np.array([shares for _, shares in results])  # chunks x figures
    totals = [figures[:, 0].max()]
    if figures.shape[1] > 1:
        totals.append(figures[:, 1].sum() / first.size)
    return tuple(float(x) for x in totals), *values


def _update_chunk(update: Update, reads: dict, writes: dict, index: tuple, grad):
    written_to = writes[update.outputs[0]]
    shape = tuple(min(c, n - i * c) for i, c, n in zip(index, written_to.chunks, written_to.shape))
    chunks = []
    for name in update.inputs:
        if name == "grad":
            chunks.append(grad)
        elif reads[name] is None:
            chunks.append(np.zeros(shape, written_to.dtype))
        else:
            chunks.append(reads[name].blocks[index])
    new = update.apply(*chunks)
    sums = []
    for name, chunk in zip(update.outputs, new):
        written = chunk.astype(writes[name].dtype, copy=False)
        writes[name].blocks[index] = written
        sums.append(checksum(written))
    return sums, update.chunk_figures(chunks, new)

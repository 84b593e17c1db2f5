"""A step's update chunk by chunk, one task per chunk, and the crc32c of a chunk as written.

Each chunk of an update is one task that takes its chunk of the gradient and its chunks of
the state (read from disk inside the task, or held chunks) and returns only what must
outlive it: on disk, after writing the new chunks into the other buffer, their checksums and
its share of the step's figures; held in memory, the new chunks and that share. Nothing reads
the state ahead of the gradient that needs it (Dask runs such reads, root tasks, and every
gradient with them, before the first update), so a step holds a few tiles' gradients at
once, not the canvas's, whatever the scheduler's order.
"""

from __future__ import annotations

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

#: Where an update's input comes from: an array on disk (each task reads its own chunk), a
#: held Dask array chunked as the state, or None (zeros).
Source = zarr.Array | da.Array | None


def checksum(block: np.ndarray) -> int:
    """The crc32c of a chunk's data, in C order."""
    return google_crc32c.value(np.ascontiguousarray(block).view(np.uint8))


def keep_checksums(target: zarr.Array, sums: list[int]) -> None:
    """Keep in ``target``'s ``zarr.json`` the checksums of its chunks as written."""
    target.attrs[CHECKSUMS] = sums


def update_in_place(sources: dict[str, Source], writes: dict[str, zarr.Array], update: Update,
                    grad: da.Array | None, *others) -> tuple:  # fmt: skip
    """Run ``update`` with the chunks of ``grad`` (chunked as the state) and of its inputs'
    ``sources`` (by name), write its outputs into ``writes`` (by name) with their checksums,
    and compute ``others`` (Dask collections or None) in the same pass. Return the update's
    figures (NaN where a chunk's is) and the values of ``others``."""
    first = writes[update.outputs[0]]
    chunks = da.core.normalize_chunks(first.chunks, first.shape)
    tasks = _tasks(update, grad, sources, chunks, first.dtype, writes)
    results, *values = dask.compute(tasks, *others)
    for number, name in enumerate(update.outputs):
        keep_checksums(writes[name], [sums[number] for sums, _ in results])
    return tuple(map(float, _totals([shares for _, shares in results], first.size))), *values


def update_held(sources: dict[str, Source], update: Update, grad: da.Array | None,
                like: da.Array) -> tuple[dict[str, da.Array], tuple[da.Array, ...]]:  # fmt: skip
    """Run ``update`` as :func:`update_in_place` does, into new arrays chunked and typed as
    ``like``, the held canvas: the new arrays by name and the figures, lazy, to persist and
    compute in one pass."""
    tasks = _tasks(update, grad, sources, like.chunks, like.dtype)
    grid = tuple(map(len, like.chunks))
    new = {}
    for number, name in enumerate(update.outputs):
        blocks = np.empty(grid, dtype=object)
        for index, task in zip(np.ndindex(grid), tasks):
            shape = tuple(c[i] for c, i in zip(like.chunks, index))
            blocks[index] = da.from_delayed(task[0][number], shape, dtype=like.dtype)
        new[name] = da.block(blocks.tolist())
    totals = dask.delayed(_totals)([task[1] for task in tasks], like.size)
    figures = da.from_delayed(totals, (update.figures,), dtype=np.float64)
    return new, tuple(figures[i] for i in range(update.figures))


def _tasks(update: Update, grad: da.Array | None, sources: dict[str, Source], chunks: tuple,
           dtype, writes: dict[str, zarr.Array] | None = None) -> list:  # fmt: skip
    """One delayed :func:`_update_chunk` per chunk of the state, in the C order of its grid."""
    pieces = [_pieces(grad if name == "grad" else sources[name], chunks) for name in update.inputs]
    tasks = []
    for index in np.ndindex(tuple(map(len, chunks))):
        shape = tuple(c[i] for c, i in zip(chunks, index))
        inputs = [p[index] if isinstance(p, np.ndarray) else p for p in pieces]
        tasks.append(dask.delayed(_update_chunk, pure=False)(update, index, shape, dtype,
                                                             inputs, writes))  # fmt: skip
    return tasks


def _pieces(source: Source, chunks: tuple):
    """A Dask array's chunks as an array of Delayed objects, by grid index (other sources
    as they are: each task reads its own chunk)."""
    if not isinstance(source, da.Array):
        return source
    if source.chunks != chunks:
        raise InputError(f"the update's input chunks {source.chunks} are not the state's {chunks}")
    return source.to_delayed(optimize_graph=False)


def _update_chunk(update: Update, index: tuple, shape: tuple, dtype, inputs: list,
                  writes: dict[str, zarr.Array] | None):  # fmt: skip
    chunks = [np.zeros(shape, dtype) if x is None
              else x.blocks[index] if isinstance(x, zarr.Array) else x for x in inputs]  # fmt: skip
    new = update.apply(*chunks)
    shares = update.chunk_figures(chunks, new)
    if writes is None:
        return [chunk.astype(dtype, copy=False) for chunk in new], shares
    sums = []
    for name, chunk in zip(update.outputs, new):
        written = chunk.astype(writes[name].dtype, copy=False)
        writes[name].blocks[index] = written
        sums.append(checksum(written))
    return sums, shares


def _totals(shares: list[tuple[float, ...]], size: int) -> np.ndarray:
    """The update's figures from each chunk's share: the largest of the first, and the mean
    (the sum over ``size`` values) of the second where there is one."""
    table = np.array(shares)  # chunks x figures; max and sum keep a NaN
    totals = [table[:, 0].max()]
    if table.shape[1] > 1:
        totals.append(table[:, 1].sum() / size)
    return np.array(totals, dtype=np.float64)

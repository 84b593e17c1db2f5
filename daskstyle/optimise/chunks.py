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

from daskstyle.engine.chunk_tasks import ChunkTasks
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
    and compute ``others`` (Dask arrays or None) in the same pass. Return the update's
    figures (NaN where a chunk's is) and the values of ``others``."""
    first = writes[update.outputs[0]]
    chunks = da.core.normalize_chunks(first.chunks, first.shape)
    tasks = _tasks(update, grad, sources, chunks, first.dtype, writes)
    table = tasks.part(0, np.float64, width=update.figures + len(update.outputs))
    figures = _figures(update, table, first.size)
    sums, *values = dask.compute(table[..., update.figures :], *figures, *others)
    sums = sums.reshape(-1, len(update.outputs))  # in the C order of the chunk grid
    for number, name in enumerate(update.outputs):
        keep_checksums(writes[name], sums[:, number].astype(np.uint32).tolist())
    return tuple(map(float, values[: update.figures])), *values[update.figures :]


def update_held(sources: dict[str, Source], update: Update, grad: da.Array | None,
                like: da.Array) -> tuple[dict[str, da.Array], tuple[da.Array, ...]]:  # fmt: skip
    """Run ``update`` as :func:`update_in_place` does, into new arrays chunked and typed as
    ``like``, the held canvas: the new arrays by name and the figures, lazy, to persist and
    compute in one pass."""
    tasks = _tasks(update, grad, sources, like.chunks, like.dtype)
    new = {name: tasks.part(1 + n, like.dtype) for n, name in enumerate(update.outputs)}
    return new, _figures(update, tasks.part(0, np.float64, width=update.figures), like.size)


def _tasks(update: Update, grad: da.Array | None, sources: dict[str, Source], chunks: tuple,
           dtype, writes: dict[str, zarr.Array] | None = None) -> ChunkTasks:  # fmt: skip
    """One :func:`_update_chunk` task per chunk of the state."""
    inputs = [grad if name == "grad" else sources[name] for name in update.inputs]
    return ChunkTasks.of("update-chunk", _update_chunk, chunks, update, dtype, writes, *inputs)


def _figures(update: Update, table: da.Array, size: int) -> tuple[da.Array, ...]:
    """The update's figures from the chunks' rows (lazy): the largest of the first, and the
    mean (the sum over ``size`` values) of the second where there is one; NaN stays NaN."""
    if update.figures == 1:
        return (table[..., 0].max(),)
    return table[..., 0].max(), table[..., 1].sum() / size


def _update_chunk(index: tuple, shape: tuple, update: Update, dtype,
                  writes: dict[str, zarr.Array] | None, *inputs) -> tuple:  # fmt: skip
    """The chunk at ``index`` updated from its ``inputs`` (in the order of the update's): its
    row, its share of the figures (:meth:`Update.chunk_figures`) then, where written into
    ``writes``, each new chunk's checksum; then, where not written, the new chunks."""
    chunks = [np.zeros(shape, dtype) if x is None
              else x.blocks[index] if isinstance(x, zarr.Array) else x for x in inputs]  # fmt: skip
    new = update.apply(*chunks)
    row = list(update.chunk_figures(chunks, new))
    if writes is None:
        return np.array(row), *(chunk.astype(dtype, copy=False) for chunk in new)
    for name, chunk in zip(update.outputs, new):
        written = chunk.astype(writes[name].dtype, copy=False)
        writes[name].blocks[index] = written
        row.append(checksum(written))  # below 2**32: exact in float64
    return (np.array(row, dtype=np.float64),)

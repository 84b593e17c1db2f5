"""One task per chunk of a grid, built as one graph layer.

A Delayed object per chunk that takes its chunk of a Dask array (``to_delayed``) copies the
array's every graph layer into its own graph; the gradient has a layer or more per tile, so
building a task per chunk that way grows with the square of the tiles. Here the tasks are one
layer over the graphs of the arrays they read, built in time linear in the chunks, and each
part of their results is a Dask array of one more layer. Dask only; no torch here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask._task_spec import Task, TaskRef
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer


@dataclass(frozen=True)
class ChunkTasks:
    """The tasks (layer ``name`` of ``graph``, keyed by chunk index) over the grid ``chunks``."""

    name: str
    graph: HighLevelGraph
    chunks: tuple

    @classmethod
    def of(cls, name: str, function, chunks: tuple, *args) -> ChunkTasks:
        """``function(index, shape, *args)`` for each chunk (its index in the grid ``chunks``
        and its shape), each Dask array in ``args`` given as its chunk at that index. Impure:
        each call makes new tasks, which run anew."""
        arrays = [x for x in args if isinstance(x, da.Array)]
        for array in arrays:
            if array.chunks != chunks:
                raise ValueError(f"an input chunked as {array.chunks}, not as {chunks}")
        key = f"{name}-{uuid.uuid4().hex}"
        layer = {}
        for index in np.ndindex(_grid(chunks)):
            shape = tuple(c[i] for c, i in zip(chunks, index))
            pieces = [TaskRef((x.name, *index)) if isinstance(x, da.Array) else x for x in args]
            layer[(key, *index)] = Task((key, *index), function, index, shape, *pieces)
        return cls(key, HighLevelGraph.from_collections(key, layer, arrays), chunks)

    def part(self, number: int, dtype, width: int | None = None) -> da.Array:
        """Part ``number`` of every task's result as one array: chunked as the grid, or,
        given ``width``, a row of ``width`` numbers a chunk (shape: the grid's, then
        ``width``)."""
        keys = [(self.name, *index) for index in np.ndindex(_grid(self.chunks))]
        out = f"{self.name}-{number}"
        return _parts(out, self.graph, {self.name}, keys, self.chunks, number, dtype, width)


def part_array(results: Sequence[Delayed], chunks: tuple, number: int | None,
               dtype) -> da.Array:  # fmt: skip
    """Part ``number`` (None: the whole) of each of ``results`` (one per chunk of the grid
    ``chunks``, in its C order) as one array chunked so: a task a chunk that takes its part,
    where a Delayed object's item, made an array and put in place, took up to four."""
    graph = HighLevelGraph.merge(*(result.__dask_graph__() for result in results))
    layers = {layer for result in results for layer in result.__dask_layers__()}
    keys = [result.key for result in results]
    out = f"part-{number}-{uuid.uuid4().hex}"
    return _parts(out, graph, layers, keys, chunks, number, dtype, None)


def _parts(out: str, graph: HighLevelGraph, layers: set, keys: list, chunks: tuple,
           number: int | None, dtype, width: int | None) -> da.Array:  # fmt: skip
    """Part ``number`` of the results under ``keys`` (in the C order of the grid ``chunks``,
    in ``graph``'s ``layers``) as an array in a layer ``out`` of its own."""
    rows = width is not None
    layer = {}
    for index, source in zip(np.ndindex(_grid(chunks)), keys, strict=True):
        key = (out, *index, 0) if rows else (out, *index)
        layer[key] = Task(key, _part, TaskRef(source), number,
                          (1,) * len(index) + (width,) if rows else None)  # fmt: skip
    shape = (*((1,) * n for n in _grid(chunks)), (width,)) if rows else chunks
    graph = HighLevelGraph({**graph.layers, out: MaterializedLayer(layer)},
                           {**graph.dependencies, out: set(layers)})  # fmt: skip
    return da.Array(graph, out, shape, dtype=dtype)


def _grid(chunks: tuple) -> tuple[int, ...]:
    return tuple(map(len, chunks))


def _part(result, number: int | None, shape: tuple | None):
    part = result if number is None else result[number]
    return part if shape is None else np.asarray(part).reshape(shape)

"""One task per chunk of a grid, built as one graph layer.

A Delayed object per chunk that takes its chunk of a Dask array (``to_delayed``) copies the
array's every graph layer into its own graph; the gradient has a layer or more per tile, so
building a task per chunk that way grows with the square of the tiles. Here the tasks are one
layer over the graphs of the arrays they read, built in time linear in the chunks, and each
part of their results is a Dask array of one more layer. Dask only; no torch here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask._task_spec import Task, TaskRef
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
        out = f"{self.name}-{number}"
        rows = width is not None
        layer = {}
        for index in np.ndindex(_grid(self.chunks)):
            key = (out, *index, 0) if rows else (out, *index)
            layer[key] = Task(key, _part, TaskRef((self.name, *index)), number,
                              (1,) * len(index) + (width,) if rows else None)  # fmt: skip
        chunks = (*((1,) * n for n in _grid(self.chunks)), (width,)) if rows else self.chunks
        graph = HighLevelGraph({**self.graph.layers, out: MaterializedLayer(layer)},
                               {**self.graph.dependencies, out: {self.name}})  # fmt: skip
        return da.Array(graph, out, chunks, dtype=dtype)


def _grid(chunks: tuple) -> tuple[int, ...]:
    return tuple(map(len, chunks))


def _part(result, number: int, shape: tuple | None):
    part = result[number]
    return part if shape is None else np.asarray(part).reshape(shape)

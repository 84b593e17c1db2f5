"""One task per chunk, built as one graph layer (daskstyle.engine.chunk_tasks)."""

import dask
import dask.array as da
import numpy as np
import pytest

from daskstyle.engine.chunk_tasks import ChunkTasks, part_array


def _tiled(blocks: int) -> da.Array:
    """An array of ``blocks`` x ``blocks`` chunks, each from a task of its own, as the
    gradient is: a graph layer or more per chunk."""
    rows = [[[da.from_delayed(dask.delayed(np.full)((2, 3, 3), 10 * i + j), (2, 3, 3), int)]
             for j in range(blocks)] for i in range(blocks)]  # fmt: skip
    return da.block(rows)  # rows, columns, and the channels in one block


def _chunk_and_sum(index, shape, scale, chunk, other):
    assert chunk.shape == shape and other is None
    return scale * chunk, np.array([index[0], index[1], chunk.sum()])


def test_each_task_gets_its_index_shape_and_chunks_and_its_parts_are_arrays():
    grad = _tiled(3)
    tasks = ChunkTasks.of("scaled", _chunk_and_sum, grad.chunks, 2, grad, None)
    scaled, rows = dask.compute(tasks.part(0, grad.dtype), tasks.part(1, float, width=3))
    np.testing.assert_array_equal(scaled, 2 * grad.compute())
    assert rows.shape == (3, 3, 1, 3)
    expected = [[i, j, (10 * i + j) * 18] for i in range(3) for j in range(3)]
    np.testing.assert_array_equal(rows.reshape(-1, 3), expected)  # in the C order of the grid


def test_the_tasks_add_one_layer_whatever_the_chunks():
    """Built as a Delayed object per chunk, each task's graph would copy every layer of the
    array's (one or more per chunk): a building time in the square of the chunks."""
    for blocks in (2, 6):
        grad = _tiled(blocks)
        tasks = ChunkTasks.of("scaled", _chunk_and_sum, grad.chunks, 2, grad, None)
        assert set(tasks.graph.layers) == {*grad.dask.layers, tasks.name}
        assert len(tasks.graph.layers[tasks.name]) == blocks**2
        assert set(tasks.part(1, float, width=3).dask.layers) - set(tasks.graph.layers) == {
            f"{tasks.name}-1"
        }


def test_each_call_makes_new_tasks():
    grad = _tiled(2)
    names = {ChunkTasks.of("scaled", _chunk_and_sum, grad.chunks, 2, grad, None).name
             for _ in range(2)}  # fmt: skip
    assert len(names) == 2


def test_an_input_chunked_otherwise_is_refused():
    grad = _tiled(2)
    with pytest.raises(ValueError, match="chunked as"):
        ChunkTasks.of("scaled", _chunk_and_sum, grad.chunks, 2, grad.rechunk((4, 6, 3)), None)


def test_parts_of_delayed_results_are_one_array_of_a_task_a_chunk():
    results = [dask.delayed(lambda i: (np.full((2, 3, 3), i), i))(i) for i in range(6)]
    chunks = ((2, 2), (3, 3, 3), (3,))
    array = part_array(results, chunks, 0, int)
    expected = np.block([[[np.full((2, 3, 3), 3 * r + c)] for c in range(3)] for r in range(2)])
    np.testing.assert_array_equal(array.compute(), expected)
    assert len(array.dask.layers[array.name]) == 6  # no item, array or concatenation tasks
    whole = part_array([dask.delayed(np.ones)((2, 3, 3))], ((2,), (3,), (3,)), None, float)
    np.testing.assert_array_equal(whole.compute(), np.ones((2, 3, 3)))

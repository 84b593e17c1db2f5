"""Chunked resize against Pillow's own float resize, on awkward sizes and chunkings."""

import threading

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from daskstyle.core.errors import InputError
from daskstyle.io.resize import resize

PILLOW = {"bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX}
#: measured: 0.0 (the arithmetic is Pillow's, in the same order); allow float32 noise.
TOLERANCE = 1e-4


def pillow_resize(image: np.ndarray, shape, method):
    """Pillow's mode "F" resize, one channel at a time."""
    channels = [
        np.asarray(Image.fromarray(image[..., c], mode="F").resize(shape[::-1], PILLOW[method]))
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=2)


@pytest.fixture
def picture():
    def make(height, width, seed=0):
        rng = np.random.default_rng(seed)
        smooth = np.linspace(0, 255, height * width * 3).reshape(height, width, 3)
        return (0.5 * smooth + 0.5 * rng.uniform(0, 255, (height, width, 3))).astype(np.float32)

    return make


@pytest.mark.parametrize("method", ["bilinear", "box"])
@pytest.mark.parametrize(
    "size, target, chunks",
    [
        ((23, 31), (46, 62), (7, 11)),  # up x2
        ((45, 60), (15, 20), (16, 16)),  # down /3
        ((37, 53), (20, 41), (10, 53)),  # odd, shrink by odd factors
        ((17, 9), (40, 25), (17, 4)),  # odd, enlarge by odd factors
        ((64, 48), (5, 7), (13, 5)),  # strong shrink: wide filters across many chunks
        ((30, 20), (30, 20), (8, 8)),  # same size: identity
    ],
)
def test_matches_pillow(picture, method, size, target, chunks):
    image = picture(*size)
    result = resize(da.from_array(image, chunks=(*chunks, 3)), target, method=method, chunks=8)
    expected = pillow_resize(image, target, method)
    assert result.shape == (*target, 3)
    assert result.dtype == np.float32
    assert np.abs(result.compute() - expected).max() <= TOLERANCE
    if size == target:
        np.testing.assert_array_equal(result.compute(), image)


@pytest.mark.parametrize(
    "chunks, expected", [(8, ((8, 8, 4), (8, 8, 8, 1))), ((20, 5), ((20,), (5,) * 5))]
)
def test_output_chunks(picture, chunks, expected):
    result = resize(da.from_array(picture(30, 30), chunks=(7, 7, 3)), (20, 25), chunks=chunks)
    assert result.chunks == (*expected, (3,))


def test_small_block_limit_changes_nothing_but_the_task_count(picture, monkeypatch):
    image = da.from_array(picture(64, 48), chunks=(16, 16, 3))
    expected = resize(image, (5, 7), chunks=4)
    monkeypatch.setattr("daskstyle.io.resize.BLOCK_BYTES", 2000)  # ~ 3 lines of 48 px per task
    result = resize(image, (5, 7), chunks=4)
    assert len(result.__dask_graph__()) > len(expected.__dask_graph__())
    assert result.chunks == expected.chunks
    np.testing.assert_array_equal(result.compute(), expected.compute())


def test_default_chunks_follow_the_input(picture):
    result = resize(da.from_array(picture(30, 30), chunks=(12, 9, 3)), (50, 50))
    assert result.chunksize == (12, 9, 3)


def test_an_output_chunk_reads_only_the_input_it_needs(picture):
    calls, lock = [], threading.Lock()

    def source(block, block_info=None):
        with lock:
            calls.append(block_info[0]["chunk-location"])
        return block

    image = da.from_array(picture(100, 100), chunks=(10, 10, 3)).map_blocks(
        source, dtype=np.float32
    )
    out = resize(image, (50, 50), chunks=10)
    np.testing.assert_allclose(
        out.blocks[0, 0].compute(),
        pillow_resize(picture(100, 100), (50, 50), "bilinear")[:10, :10],
        atol=TOLERANCE,
    )
    assert 0 < len(calls) <= 9  # 3 x 3 of the 100 input chunks


def test_integer_images_resize_as_float(picture):
    image = picture(12, 12).astype(np.uint8)
    result = resize(da.from_array(image, chunks=5), (6, 6))
    assert result.dtype == np.float32
    expected = pillow_resize(image.astype(np.float32), (6, 6), "bilinear")
    assert np.abs(result.compute() - expected).max() <= TOLERANCE


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [((0, 5), {}, "at least 1"), ((5, 5), {"method": "lanczos"}, "unknown resize method")],
)
def test_bad_arguments(picture, shape, kwargs, message):
    with pytest.raises(InputError, match=message):
        resize(da.from_array(picture(10, 10)), shape, **kwargs)

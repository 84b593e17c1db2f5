"""The picture the first level starts from: the content, noise, flat gray, or a picture file.

Noise comes from a counter-based generator: each value is a hash of (seed, y, x, channel)
alone, so it is the same whatever the chunking, the canvas size or the worker that makes it,
and a run resumed or re-chunked starts from the same picture.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import numpy as np
from dask.array.core import normalize_chunks

from daskstyle.core.errors import InputError
from daskstyle.io.images import read_image
from daskstyle.io.resize import resize

#: The start pictures with names; anything else is the path of a picture.
INITS = ("content", "noise", "gray")
#: The value of every sample of the gray start (the middle of 0-255).
GRAY = 128.0
#: Noise coordinates are packed as ``y << 32 | x << 2 | channel``: sides up to 2**30 pixels.
MAX_NOISE_SIDE = 2**30

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_MASK64 = 2**64 - 1


def start_image(init, content: da.Array, seed: int = 0) -> da.Array:
    """The start of the first level for ``init`` (a name in :data:`INITS` or a picture's
    path), with ``content``'s shape and chunks: ``content`` itself, :func:`noise` from
    ``seed``, :func:`gray`, or the picture read and resized (bilinear) to the content."""
    shape, chunks = content.shape[:2], content.chunks[:2]
    if init == "content":
        return content
    if init == "noise":
        start = noise(shape, seed, chunks)
    elif init == "gray":
        start = gray(shape, chunks)
    else:
        start = resize(read_image(init), shape, chunks=chunks)
    return start.rechunk(content.chunks)


def check_init(init) -> None:
    """Raise a one-line :class:`InputError` if ``init`` is neither a name in :data:`INITS`
    nor a picture that can be read, before any work is done."""
    if isinstance(init, str) and init in INITS:
        return
    if not Path(init).exists():
        raise InputError(f"{init}: no such picture, and not one of {', '.join(INITS)}")
    with warnings.catch_warnings():  # they come again when the start is read
        warnings.simplefilter("ignore")
        read_image(init)


def noise(shape: tuple[int, int], seed: int, chunks) -> da.Array:
    """Uniform noise on 0-255, (H, W, 3) float32 for ``shape`` (H, W), in ``chunks`` of the
    (H, W) plane (as :func:`resize` takes them); each value depends on ``seed`` and its
    position alone."""
    _check_shape(shape)
    if max(shape) > MAX_NOISE_SIDE:
        raise InputError(f"noise of {shape} px is too large: sides up to {MAX_NOISE_SIDE} px")
    return da.map_blocks(
        _noise_block,
        key=_mix(np.full(1, seed & _MASK64, np.uint64)),  # an array: uint64 arithmetic wraps
        chunks=(*_plane_chunks(shape, chunks), (3,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )


def gray(shape: tuple[int, int], chunks) -> da.Array:
    """The flat gray start, :data:`GRAY` everywhere, (H, W, 3) float32 in ``chunks``."""
    _check_shape(shape)
    return da.full((*shape, 3), GRAY, chunks=(*_plane_chunks(shape, chunks), 3), dtype=np.float32)


def _check_shape(shape) -> None:
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"a start picture needs a shape (height, width), both at least 1: {shape}")


def _plane_chunks(shape: tuple[int, int], chunks) -> tuple[tuple[int, ...], ...]:
    """``chunks`` (an int, a pair, or explicit sizes per axis) for the (H, W) plane."""
    if isinstance(chunks, int):
        chunks = (chunks, chunks)
    return normalize_chunks(tuple(chunks), tuple(shape))


def _noise_block(key: np.ndarray, block_info=None) -> np.ndarray:
    """The noise block at ``block_info``'s location: the top 24 bits of a two-round
    splitmix64 hash of each sample's position, keyed by the seed, scaled to [0, 255]."""
    (y0, y1), (x0, x1), (c0, c1) = block_info[None]["array-location"]
    y = np.arange(y0, y1, dtype=np.uint64)[:, None, None] << np.uint64(32)
    x = np.arange(x0, x1, dtype=np.uint64)[None, :, None] << np.uint64(2)
    c = np.arange(c0, c1, dtype=np.uint64)[None, None, :]
    bits = _mix(_mix(y | x | c) ^ key) >> np.uint64(40)
    return (bits * (255.0 / 2**24)).astype(np.float32)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of ``z + golden ratio`` on a uint64 array (wrapping): a
    bijection whose outputs look independent for neighbouring inputs."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))

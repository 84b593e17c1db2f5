"""Chunked, separable resizing of (H, W, C) Dask arrays, the same arithmetic as Pillow's.

Each output pixel is a normalised weighted sum of input pixels along one axis, then the
other (columns first, as Pillow does). The filter's support grows with the shrink factor, so
shrinking antialiases. Pixel centres sit at ``(i + 0.5) * in / out``. Weights and taps are
computed in float64, results rounded to the input's float type after each pass; on float32
images this reproduces Pillow's mode ``"F"`` resize.

Each output chunk along an axis reads only the input band its taps touch (about
``chunk * factor + 2 * support`` pixels), cut along the other axis so that no task reads more
than :data:`BLOCK_BYTES`: memory per task stays bounded for any size and factor.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from daskstyle.core.errors import InputError

#: Largest input block one task of a pass reads (the other axis is cut to keep it so).
BLOCK_BYTES = 64 * 2**20


def _triangle(x):
    return np.maximum(1.0 - np.abs(x), 0.0)


def _box(x):
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


#: name -> (support at scale 1, filter); Pillow's BILINEAR and BOX.
FILTERS = {"bilinear": (1.0, _triangle), "box": (0.5, _box)}


def resize_weights(
    n_in: int, n_out: int, method: str = "bilinear"
) -> tuple[np.ndarray, np.ndarray]:
    """Taps ``(index, weight)`` (n_out x taps): out[i] = sum_k weight[i, k] * in[index[i, k]]."""
    support, kernel = FILTERS[method]
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support *= filterscale
    center = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum(np.floor(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.floor(center + support + 0.5).astype(np.int64), n_in) - lo
    k = np.arange(count.max())
    weight = kernel((lo[:, None] + k - center[:, None] + 0.5) * (1.0 / filterscale))
    weight[k >= count[:, None]] = 0.0
    total = np.zeros(n_out)
    for column in weight.T:  # sequential sums, as Pillow does
        total += column
    return np.minimum(lo[:, None] + k, n_in - 1), weight / total[:, None]


def resize(
    image: da.Array,
    shape: tuple[int, int],
    *,
    method: str = "bilinear",
    chunks: int | tuple[int, int] | None = None,
) -> da.Array:
    """``image`` (H, W, C) resized to ``shape`` (h, w), in output chunks of ``chunks`` pixels
    (default: the input's chunk size). Integer images are resized as float32."""
    if image.ndim != 3:
        raise InputError(f"resize expects an (H, W, C) array, got shape {image.shape}")
    if method not in FILTERS:
        raise InputError(f"unknown resize method {method!r}: use one of {sorted(FILTERS)}")
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"cannot resize to {shape}: give (height, width), both at least 1")
    if chunks is None:
        chunks = image.chunksize[:2]
    if isinstance(chunks, int):
        chunks = (chunks, chunks)
    rows, cols = da.core.normalize_chunks(tuple(chunks), tuple(shape))
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    image = image.rechunk({2: -1})
    resized = _resize_axis(_resize_axis(image, 1, cols, method), 0, rows, method)
    return resized.rechunk((rows, cols, -1))


def _resize_axis(x: da.Array, axis: int, out_chunks: tuple[int, ...], method: str) -> da.Array:
    """``x`` resampled along ``axis`` to ``sum(out_chunks)`` pixels in chunks ``out_chunks``."""
    index, weight = resize_weights(x.shape[axis], sum(out_chunks), method)
    pieces, start = [], 0
    for size in out_chunks:
        taps = index[start : start + size]
        lo, hi = int(taps.min()), int(taps.max()) + 1
        source = x[(slice(None),) * axis + (slice(lo, hi),)]
        line_bytes = (hi - lo) * x.shape[2] * x.dtype.itemsize
        spec = {axis: -1}
        if max(source.chunks[1 - axis]) * line_bytes > BLOCK_BYTES:
            spec[1 - axis] = max(1, BLOCK_BYTES // line_bytes)
        source = source.rechunk(spec)
        chunks = tuple((size,) if i == axis else c for i, c in enumerate(source.chunks))
        pieces.append(
            source.map_blocks(
                _apply_taps,
                index=taps - lo,
                weight=weight[start : start + size],
                axis=axis,
                chunks=chunks,
                dtype=x.dtype,
                meta=np.empty((0,) * x.ndim, x.dtype),
            )
        )
        start += size
    return da.concatenate(pieces, axis=axis)


def _apply_taps(block: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    src = np.moveaxis(block, axis, 0)
    out = np.zeros((len(index), *src.shape[1:]), np.float64)
    scale_shape = (-1,) + (1,) * (src.ndim - 1)
    for k in range(index.shape[1]):
        out += weight[:, k].reshape(scale_shape) * src[index[:, k]]
    return np.moveaxis(out.astype(block.dtype), 0, axis)

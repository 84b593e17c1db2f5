"""Colour controls on (H, W, 3) Dask arrays on 0-255: YCbCr, luminance-only transfer, the
content's chroma on a result, and the style's colours matched to the content's.

Every per-pixel transform is an affine map of the three channels, applied chunk by chunk.
Global statistics (means, standard deviations, covariances) are Dask reductions summed over
chunks in float64, and the statistics one function needs are computed together in one
``dask.compute``; no image is ever wholly in memory. Float inputs keep their dtype, others
become float32.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from daskstyle.core.errors import InputError

#: What ``--colors`` may be: the style's colours, the content's chroma on the result, or the
#: style's colours matched to the content's before the transfer.
COLORS = ("style", "content", "match")

#: RGB -> YCbCr, BT.601 full range as in JPEG: ycbcr = RGB_TO_YCBCR @ rgb + YCBCR_OFFSET.
RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
YCBCR_OFFSET = np.array([0.0, 128.0, 128.0])
#: The exact inverse (R = Y + 1.402 (Cr - 128), ... to six digits). Its first column is
#: (1, 1, 1): adding d to Y adds d to R, G and B and leaves Cb and Cr as they are.
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)

#: The least spread (standard deviation, on 0-255) a style is taken to have along any colour
#: direction when its statistics are matched to the content's: along directions where a
#: gray or single-colour style hardly varies, its rounding noise is stretched at most by
#: the content's spread over this (and may not reach the content's spread there), instead
#: of being blown up or divided by zero.
MIN_STYLE_STD = 1.0


def to_ycbcr(image) -> da.Array:
    """``image`` (H, W, 3) RGB on 0-255 as YCbCr (Y on 0-255, Cb and Cr centred on 128)."""
    return _affine(_as_image(image), RGB_TO_YCBCR, before=0.0, after=YCBCR_OFFSET)


def to_rgb(image) -> da.Array:
    """``image`` (H, W, 3) YCbCr as RGB on 0-255 (not clipped)."""
    return _affine(_as_image(image), YCBCR_TO_RGB, before=YCBCR_OFFSET, after=0.0)


def luminance_only(content, styles) -> tuple[da.Array, list[da.Array]]:
    """Luminance-only transfer (Gatys et al. 2017, "Controlling perceptual factors"): the
    content's Y as a gray RGB picture (Y, Y, Y), and each of ``styles``' Y, matched to the
    content's Y in mean and standard deviation, as gray RGB pictures.

    The statistics of all pictures are computed together, in one ``dask.compute``; a style
    whose Y is (nearly) flat is divided by at least :data:`MIN_STYLE_STD`.
    """
    content = _as_image(content)
    styles = [_as_image(style) for style in styles]
    lumas = [_luminance(image) for image in (content, *styles)]
    stats = dask.compute(*[(y.mean(), y.std()) for y in lumas])
    (content_mean, content_std), style_stats = stats[0], stats[1:]
    grays = []
    for style, (mean, std) in zip(styles, style_stats):
        scale = content_std / max(std, MIN_STYLE_STD)
        grays.append(_gray(style, scale, content_mean - scale * mean))
    return _gray(content, 1.0, 0.0), grays


def with_chroma(canvas, content) -> da.Array:
    """The picture whose luminance Y is ``canvas``'s and whose chroma Cb, Cr is
    ``content``'s, in RGB (not clipped), chunk by chunk: ``content + Y(canvas) - Y(content)``
    on each channel, which is exactly the YCbCr round trip (see :data:`YCBCR_TO_RGB`)."""
    canvas, content = _as_image(canvas), _as_image(content)
    if canvas.shape != content.shape:
        raise InputError(
            f"the canvas {canvas.shape} and the content {content.shape} must have one shape"
        )
    return da.map_blocks(
        _with_chroma_block,
        canvas,
        content.rechunk(canvas.chunks),
        dtype=canvas.dtype,
        meta=np.empty((0, 0, 0), canvas.dtype),
    )


def match_colors(style, content) -> da.Array:
    """``style`` with its colours mapped to ``content``'s: ``x' = A (x - mu_s) + mu_c``
    with ``A = C_c^(1/2) C_s^(-1/2)`` (symmetric square roots), so that its mean colour and
    3x3 colour covariance are the content's. Not clipped; the style's dtype is kept.

    The means and covariances of both pictures are computed together in float64, from sums
    over chunks. The style's covariance eigenvalues are raised to at least
    ``MIN_STYLE_STD ** 2``, so a gray or single-colour style gives a finite result.
    """
    style, content = _as_image(style), _as_image(content)
    (style_mean, style_cov), (content_mean, content_cov) = dask.compute(
        _color_moments(style), _color_moments(content)
    )
    whiten = _covariance_power(style_cov, -0.5, floor=MIN_STYLE_STD**2)
    matrix = _covariance_power(content_cov, 0.5, floor=0.0) @ whiten
    return _affine(style, matrix, before=style_mean, after=content_mean)


def _as_image(image) -> da.Array:
    """``image`` as an (H, W, 3) Dask array of floats with its channels in one chunk."""
    image = da.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"a colour picture must have shape (H, W, 3), got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    return image.rechunk({2: -1})


def _affine(image: da.Array, matrix: np.ndarray, before, after) -> da.Array:
    """``matrix @ (x - before) + after`` for every pixel ``x``, in float64, chunk by chunk."""
    return image.map_blocks(
        _affine_block,
        matrix=matrix,
        before=np.asarray(before, np.float64),
        after=np.asarray(after, np.float64),
        dtype=image.dtype,
        meta=np.empty((0, 0, 0), image.dtype),
    )


def _affine_block(block: np.ndarray, matrix, before, after) -> np.ndarray:
    return ((block.astype(np.float64) - before) @ matrix.T + after).astype(block.dtype)


def _luma_block(block: np.ndarray) -> np.ndarray:
    """Y of an (h, w, 3) RGB block, in float64, (h, w)."""
    return block.astype(np.float64) @ RGB_TO_YCBCR[0]


def _luminance(image: da.Array) -> da.Array:
    """Y of ``image``, (H, W) float64."""
    return image.map_blocks(
        _luma_block, drop_axis=2, dtype=np.float64, meta=np.empty((0, 0), np.float64)
    )


def _gray(image: da.Array, scale: float, shift: float) -> da.Array:
    """``scale * Y + shift`` of ``image`` repeated on R, G and B."""
    return image.map_blocks(
        _gray_block, scale, shift, dtype=image.dtype, meta=np.empty((0, 0, 0), image.dtype)
    )


def _gray_block(block: np.ndarray, scale: float, shift: float) -> np.ndarray:
    y = _luma_block(block) * scale + shift
    return np.repeat(y[..., None], 3, axis=2).astype(block.dtype)


def _with_chroma_block(canvas: np.ndarray, content: np.ndarray) -> np.ndarray:
    shift = _luma_block(canvas) - _luma_block(content)
    return (content.astype(np.float64) + shift[..., None]).astype(canvas.dtype)


def _color_moments(image: da.Array) -> tuple[da.Array, da.Array]:
    """Lazy mean colour (3,) and 3x3 colour covariance of ``image`` over all its pixels,
    from float64 sums of ``x`` and of ``x x^T`` reduced over chunks."""
    x = image.astype(np.float64)
    count = image.shape[0] * image.shape[1]
    mean = x.sum(axis=(0, 1)) / count
    second = da.tensordot(x, x, axes=((0, 1), (0, 1))) / count
    return mean, second - mean[:, None] * mean[None, :]


def _covariance_power(cov: np.ndarray, power: float, floor: float) -> np.ndarray:
    """``cov ** power`` for a symmetric 3x3 covariance (by eigh), its eigenvalues first raised
    to at least ``floor``."""
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.maximum(values, floor) ** power) @ vectors.T

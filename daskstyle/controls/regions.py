"""Regions: a label image, one style per label, made into each level's region guides.

A label image has the content's aspect ratio; a pixel's value k (8-bit gray, or the index of
a palette PNG) puts it in region k, which takes the k-th style. At a level, the labels are
resized to the level's size (nearest neighbour: labels are names, not numbers), made one-hot
(R channels of 0 and 1, one per style) and, with a feather, blurred by a Gaussian, so that
the regions' weights change smoothly across a border and still sum to 1 at every pixel.
The guide of a level is an (H, W, R) Dask array; the engine carries it to every layer
(:mod:`daskstyle.engine.guides`).
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
from PIL import Image
from scipy import ndimage

from daskstyle.core.errors import InputError

#: The chunk side of a guide: the feather's blur reads a halo of 4 standard deviations.
GUIDE_CHUNK = 2048
#: How far apart the label image's aspect ratio and the content's may be: a pixel per side.
ASPECT_SLACK = 1.0


def read_labels(path) -> np.ndarray:
    """The labels of a picture as (H, W) uint8: an 8-bit gray picture's values, or a palette
    picture's indices; a colour picture whose pixels are all gray counts as gray."""
    path = Path(path)
    try:
        with Image.open(path) as picture:
            mode, labels = picture.mode, np.asarray(picture)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the labels {path}: {err}") from None
    if mode == "RGB" and (labels == labels[..., :1]).all():
        mode, labels = "L", labels[..., 0]
    if mode not in ("L", "P"):
        raise InputError(f"the labels {path} are {mode}: give an 8-bit gray or a palette PNG")
    return np.ascontiguousarray(labels, dtype=np.uint8)


def check_labels(labels: np.ndarray, styles: int, content: tuple[int, int], name="labels"):
    """Raise an :class:`InputError` unless every label selects one of ``styles`` styles and
    the labels have the aspect ratio of a content of (H, W) ``content``."""
    most = int(labels.max())
    if most >= styles:
        raise InputError(f"the {name} hold label {most} but {styles} styles are given: give a "
                         "style for each label 0, 1, ... (one style may be given twice)")  # fmt: skip
    height, width = labels.shape
    if abs(height * content[1] / content[0] - width) > ASPECT_SLACK * max(1, width / content[1]):
        raise InputError(f"the {name} ({width}x{height} px) do not have the content's aspect "
                         f"ratio ({content[1]}x{content[0]} px): resize them to it")  # fmt: skip


def label_shares(labels: np.ndarray, styles: int) -> tuple[float, ...]:
    """Each label's share of the pixels, for labels 0 to ``styles`` - 1."""
    return tuple(np.bincount(labels.ravel(), minlength=styles)[:styles] / labels.size)


def resized_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``labels`` at (H, W) ``shape`` by nearest neighbour (each pixel's centre)."""
    rows = ((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(np.intp)
    cols = ((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(np.intp)
    return labels[np.minimum(rows, labels.shape[0] - 1)][:, np.minimum(cols, labels.shape[1] - 1)]


def level_guide(labels: np.ndarray, styles: int, shape: tuple[int, int], feather: float = 0.0,
                dtype="float32") -> da.Array:  # fmt: skip
    """The region guides of a level of (H, W) ``shape``: (H, W, ``styles``), region r's
    weight of each pixel, the one-hot labels blurred by a Gaussian of standard deviation
    ``feather`` px (at this level's size; 0: hard borders)."""
    chunks = (min(GUIDE_CHUNK, shape[0]), min(GUIDE_CHUNK, shape[1]))
    level = da.from_array(resized_labels(labels, shape), chunks=chunks)
    one_hot = level[..., None] == da.arange(styles, dtype=np.uint8, chunks=styles)
    guide = one_hot.astype(dtype)
    if feather <= 0:
        return guide
    depth = min(int(4 * feather + 0.5), *(side - 1 for side in shape))  # scipy's own radius
    blurred = guide.map_overlap(
        ndimage.gaussian_filter, depth={0: depth, 1: depth, 2: 0},
        boundary="nearest", sigma=(feather, feather, 0), mode="nearest", truncate=4.0,
        dtype=guide.dtype, meta=np.empty((0, 0, 0), guide.dtype),
    )  # fmt: skip
    return blurred


def style_guide(labels: np.ndarray, region: int, shape: tuple[int, int], dtype="float32"):
    """The part of a style that region ``region`` takes its Gram from, at (H, W) ``shape``:
    (H, W, 1), 1 where the style's labels say ``region``, else 0."""
    part = resized_labels(labels, shape) == region
    if not part.any():
        raise InputError(f"the style labels of region {region} hold no pixel labelled {region}: "
                         "mark its part of the style with that value")  # fmt: skip
    chunks = (min(GUIDE_CHUNK, shape[0]), min(GUIDE_CHUNK, shape[1]), 1)
    return da.from_array(part[..., None].astype(dtype), chunks=chunks)


def feather_at(feather: float, level_side: int, full_side: int) -> float:
    """A feather of ``feather`` px on the finished picture (long side ``full_side``) at a
    level whose long side is ``level_side``."""
    return feather * level_side / full_side

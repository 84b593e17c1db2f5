"""Deep Zoom (DZI): an image as levels of square tiles, each level half the next.

Level z of an image of W x H px is ceil(W / 2^k) x ceil(H / 2^k) px with k = Z - z, where
Z = ceil(log2(max(W, H))) is the full resolution; level 0 is 1 px. Each level is cut into
:data:`TILE_SIZE`-px tiles without overlap, addressed ``z/x_y`` from the top left, and a
descriptor (``.dzi``, XML) gives the size, the tile size, the overlap and the format.

A :class:`Pyramid` holds the image at the first few k (k = 0, full resolution, and halved
levels below it); a tile at a smaller level is halved from the pyramid's smallest, which is
small, so no tile reads more than a few chunks whatever its zoom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import imagecodecs
import numpy as np

TILE_SIZE = 256
OVERLAP = 0
FORMAT = "png"
NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


class Region(Protocol):
    """An image (H, W, 3) that reads a rectangle at a time as 8-bit samples."""

    shape: tuple[int, int]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray: ...


class Pyramid(Protocol):
    """An image at full resolution and halved: ``levels[k]`` is it in means of 2^k px."""

    levels: Sequence[Region]


class NoSuchTile(LookupError):
    """A tile address outside the image."""


def max_level(shape: tuple[int, int]) -> int:
    """Z, the level at full resolution: ceil(log2) of the long side."""
    return (max(shape) - 1).bit_length()


def level_shape(shape: tuple[int, int], z: int) -> tuple[int, int]:
    """(H, W) of level ``z`` of an image of ``shape``."""
    k = max_level(shape) - z
    return (-(-shape[0] // 2**k), -(-shape[1] // 2**k))


def descriptor(shape: tuple[int, int]) -> bytes:
    """The ``.dzi`` XML of an image of ``shape`` (H, W)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Image xmlns="{NAMESPACE}" '
        f'TileSize="{TILE_SIZE}" Overlap="{OVERLAP}" Format="{FORMAT}">'
        f'<Size Width="{shape[1]}" Height="{shape[0]}"/></Image>\n'
    ).encode()


def tile_box(shape: tuple[int, int], z: int, x: int, y: int) -> tuple[int, int, int, int]:
    """Rows and columns (y0, y1, x0, x1) of tile ``x``, ``y`` in level ``z`` of an image of
    ``shape``; :class:`NoSuchTile` outside it."""
    if not 0 <= z <= max_level(shape):
        raise NoSuchTile(f"level {z}")
    h, w = level_shape(shape, z)
    y0, x0 = y * TILE_SIZE, x * TILE_SIZE
    if not (0 <= y0 < h and 0 <= x0 < w):
        raise NoSuchTile(f"tile {x}_{y} of level {z}")
    return y0, min(y0 + TILE_SIZE, h), x0, min(x0 + TILE_SIZE, w)


def tile(pyramid: Pyramid, z: int, x: int, y: int, most_pixels: int) -> np.ndarray:
    """Tile ``x``, ``y`` of level ``z`` as (h, w, 3) uint8: read from the pyramid's level
    for it, or halved from its smallest level when that has at most ``most_pixels`` pixels
    (:class:`OverflowError` else)."""
    levels = pyramid.levels
    y0, y1, x0, x1 = tile_box(levels[0].shape, z, x, y)
    k = max_level(levels[0].shape) - z
    if k < len(levels):
        return levels[k].read(y0, y1, x0, x1)
    smallest = levels[-1]
    if smallest.shape[0] * smallest.shape[1] > most_pixels:
        raise OverflowError(f"a {smallest.shape[1]}x{smallest.shape[0]} px level to halve")
    image = smallest.read(0, smallest.shape[0], 0, smallest.shape[1])
    for _ in range(k - len(levels) + 1):
        image = halve(image)
    return image[y0:y1, x0:x1]


def halve(image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 in means of 2 x 2 px, rounded; an odd last row or column is
    averaged with itself (as :func:`daskstyle.optimise.overview.halve`)."""
    h, w = image.shape[:2]
    padded = np.pad(image.astype(np.float32), ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    means = padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]
    return np.clip(np.rint(means / 4), 0, 255).astype(np.uint8)


def samples(pixels: np.ndarray) -> np.ndarray:
    """Canvas values on 0-255 as 8-bit samples, rounded as the previews are (a value that is
    not finite, a chunk not written yet, shows as 0)."""
    pixels = np.nan_to_num(np.asarray(pixels, dtype=np.float64), nan=0.0)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    """``pixels`` (h, w, 3) uint8 as a PNG, quickly compressed."""
    return imagecodecs.png_encode(np.ascontiguousarray(pixels), level=1)

"""Pure tiling arithmetic: receptive fields, halos, alignment and tile plans.

A network is described here only by its layer kinds, in the order of torchvision's
``features`` (``"conv"``: 3x3, stride 1, zero padding 1; ``"relu"``; ``"pool"``: 2x2,
stride 2, floor). No torch, no Dask.

A feature cell of a layer at scale ``s`` covers input pixels ``[s*i, s*i + s)`` and depends
on the pixels within ``R`` of that span (``R``: the layer's radius, the sum of the scales of
the convolutions before it). With tile origins aligned to ``s``:

- forward: the core's cells are exact when the tile reads ``R`` pixels beyond the core;
- backward: the core's pixels receive gradient from cells up to ``s * ceil(R / s)`` pixels
  beyond the core, and those cells must be exact themselves, so the tile reads
  ``R + s * ceil(R / s)`` pixels beyond the core.

Both are rounded up to the alignment ``A`` (the scale of the deepest layer used): for
VGG-19's conv5_1 ``R = 70``, ``K_F = 80``, ``K = 160``; for conv4_2 alone ``40 + 40``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

CONV, RELU, POOL = "conv", "relu", "pool"

#: Core tiles are multiples of this many pixels (conv5_x sits behind four 2x2 pools).
TILE_MULTIPLE = 16


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def vgg_layers(cfg: Sequence[int | str]) -> tuple[tuple[str, str], ...]:
    """(name, kind) of each ``features`` entry of a torchvision-style VGG config.

    ``[64, 64, "M", 128, ...]`` gives ``conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1 ...``.
    """
    layers: list[tuple[str, str]] = []
    block, conv = 1, 0
    for item in cfg:
        if item == "M":
            layers.append((f"pool{block}", POOL))
            block, conv = block + 1, 0
        else:
            conv += 1
            layers += [(f"conv{block}_{conv}", CONV), (f"relu{block}_{conv}", RELU)]
    return tuple(layers)


def scale_and_radius(kinds: Sequence[str], index: int) -> tuple[int, int]:
    """Scale (input pixels per cell) and receptive radius in pixels of layer ``index``."""
    scale, radius = 1, 0
    for kind in kinds[: index + 1]:
        if kind == CONV:
            radius += scale
        elif kind == POOL:
            scale *= 2
        elif kind != RELU:
            raise ValueError(f"unknown layer kind {kind!r}")
    return scale, radius


@dataclass(frozen=True)
class Halo:
    """Halo depths in pixels for a set of layers: forward (``K_F``) and backward (``K_B``)."""

    forward: int
    backward: int
    align: int

    @property
    def total(self) -> int:
        """``K = K_F + K_B``: the depth a gradient tile reads beyond its core."""
        return self.forward + self.backward


def halo(kinds: Sequence[str], indices: Sequence[int]) -> Halo:
    """The exact halo for the layers ``indices`` of a network of layer ``kinds``."""
    if not indices:
        raise ValueError("no layers given")
    geometry = [scale_and_radius(kinds, i) for i in indices]
    align = max(scale for scale, _ in geometry)
    forward = _round_up(max(radius for _, radius in geometry), align)
    total = _round_up(max(r + s * math.ceil(r / s) for s, r in geometry), align)
    return Halo(forward=forward, backward=total - forward, align=align)


@dataclass(frozen=True)
class Tile:
    """One tile: its position in the tile grid and its core rectangle in pixels."""

    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int

    def cells(self, scale: int) -> tuple[int, int]:
        """Rows and columns of feature cells of the core at a layer of ``scale``."""
        return self.y1 // scale - self.y0 // scale, self.x1 // scale - self.x0 // scale

    def padded(self, depth: int, shape: tuple[int, int]) -> tuple[slice, slice]:
        """Slices of the core grown by ``depth`` on each side, clipped to the image."""
        height, width = shape
        return (
            slice(max(0, self.y0 - depth), min(height, self.y1 + depth)),
            slice(max(0, self.x0 - depth), min(width, self.x1 + depth)),
        )


@dataclass(frozen=True)
class TilePlan:
    """How an image of ``shape`` (H, W) is cut into core tiles of ``tile`` pixels."""

    shape: tuple[int, int]
    tile: int

    def __post_init__(self) -> None:
        if min(self.shape) < 1:
            raise ValueError(f"empty image of shape {self.shape}")
        if self.tile < 1 or self.tile % TILE_MULTIPLE:
            raise ValueError(f"tile size {self.tile} is not a positive multiple of {TILE_MULTIPLE}")

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dask chunks along rows and columns (the last ones may be smaller)."""
        return tuple(
            tuple(min(self.tile, n - start) for start in range(0, n, self.tile)) for n in self.shape
        )

    @property
    def grid(self) -> tuple[int, int]:
        rows, cols = self.chunks
        return len(rows), len(cols)

    def __len__(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def __iter__(self) -> Iterator[Tile]:
        height, width = self.shape
        rows, cols = self.grid
        t = self.tile
        for r in range(rows):
            for c in range(cols):
                yield Tile(r, c, r * t, min(height, (r + 1) * t), c * t, min(width, (c + 1) * t))


def whole_image_plan(shape: tuple[int, int]) -> TilePlan:
    """A plan of a single tile covering the image."""
    return TilePlan(shape, _round_up(max(shape), TILE_MULTIPLE))


def block_cuts(sizes: Sequence[int], start: int, stop: int) -> tuple[range, list[slice]]:
    """The chunks (of ``sizes`` along one axis) that ``[start, stop)`` touches, and the part
    of each chunk inside it."""
    edges = list(accumulate(sizes, initial=0))
    if not 0 <= start < stop <= edges[-1]:
        raise ValueError(f"[{start}, {stop}) is not inside an axis of {edges[-1]}")
    chunks = range(bisect_right(edges, start) - 1, bisect_left(edges, stop))
    return chunks, [
        slice(max(start, edges[i]) - edges[i], min(stop, edges[i + 1]) - edges[i]) for i in chunks
    ]


#: Chunks of a level's content target per tile side. A tile's window (its core and halo) reads
#: each chunk it touches whole: with one chunk per tile, a window touches up to 3 x 3 chunks and
#: reads up to 6 times its own bytes (1,376-px tiles, 128-px halos); with 8 per side, about 1.3.
TARGET_CHUNKS_PER_TILE = 8
#: ... but no chunk smaller than this, nor one file per handful of cells (small tiles).
TARGET_CHUNK_BYTES = 2**20


def target_chunk(tile_cells: int, channels: int, itemsize: int = 4) -> int:
    """The side, in cells, of the content target's chunks for tiles of ``tile_cells`` cells of
    ``channels`` channels: an eighth of the tile, at least :data:`TARGET_CHUNK_BYTES`, at most
    the tile."""
    smallest = math.isqrt(-(-TARGET_CHUNK_BYTES // (channels * itemsize)) - 1) + 1
    return min(tile_cells, max(-(-tile_cells // TARGET_CHUNKS_PER_TILE), smallest))


#: Peak bytes per padded pixel of one float32 gradient tile (VGG-19 to relu5_1 with its
#: backward pass; about 1.7 GB for a 512-px core with a 160-px halo, as measured).
TILE_BYTES_PER_PIXEL = 2.5e3


def concurrent_tiles(memory: float, tile: int, depth: int, itemsize: int = 4) -> int:
    """How many gradient tiles (``tile``-px cores, ``depth``-px halos) fit in ``memory``
    bytes at the same time; at least one."""
    per_tile = TILE_BYTES_PER_PIXEL * itemsize / 4 * (tile + 2 * depth) ** 2
    return max(1, int(memory // per_tile))


def largest_tile(
    memory: float, depth: int, itemsize: int = 4, multiple: int = TILE_MULTIPLE
) -> int:
    """The largest core tile side on the ``multiple``-px grid whose gradient tile, read with a
    ``depth``-px halo, fits in ``memory`` bytes (the inverse of :func:`concurrent_tiles`);
    at least ``multiple``."""
    padded = math.isqrt(int(memory / (TILE_BYTES_PER_PIXEL * itemsize / 4)))
    return max(multiple, (padded - 2 * depth) // multiple * multiple)


def balanced_tile(shape: tuple[int, int], largest: int, multiple: int = TILE_MULTIPLE) -> int:
    """The tile side, on the ``multiple``-px grid and at most ``largest``, that covers the long
    side of ``shape`` with the fewest tiles, cut as evenly as the grid allows: no thin last
    tile that pays a whole halo for a few pixels."""
    count = -(-max(shape) // largest)
    even = -(-max(shape) // count)
    return min(largest, -(-even // multiple) * multiple)


def feature_crop(start: int, stop: int, origin: int, scale: int) -> slice:
    """Cells of a layer at ``scale`` that belong to pixels ``[start, stop)`` of a tile read
    from pixel ``origin`` (all aligned to ``scale``, or ``stop`` the image's edge)."""
    return slice((start - origin) // scale, (stop - origin) // scale)


def feature_size(pixels: int, scale: int) -> int:
    """Cells along an axis of ``pixels`` at ``scale`` with floor pooling."""
    return pixels // scale


def cell_windows(plan: TilePlan, depth: int, scale: int) -> list[tuple[slice, slice]]:
    """Each tile's window padded by ``depth`` px, in cells of a layer at ``scale``, in the
    order of ``plan``; for a plan of one tile, all the layer's cells."""
    if len(plan) == 1:
        return [tuple(slice(0, feature_size(n, scale)) for n in plan.shape)]
    return [
        tuple(slice(px.start // scale, px.stop // scale) for px in tile.padded(depth, plan.shape))
        for tile in plan
    ]


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of ``shape`` scaled by ``scale``: sides rounded to whole pixels, at least 1."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def level_shapes(shape: tuple[int, int], r0: int) -> list[tuple[int, int]]:
    """(H, W) of each resolution level: long side ``min(r0 * 2**i, long side)``, the last
    level exactly ``shape``; the aspect ratio is kept (sides rounded to whole pixels)."""
    if r0 < 1:
        raise ValueError(f"r0 must be positive, not {r0}")
    long_side = max(shape)
    shapes = []
    side = r0
    while side < long_side:
        scale = side / long_side
        shapes.append(scaled_shape(shape, scale))
        side *= 2
    return shapes + [tuple(shape)]


def style_shape(style: tuple[int, int], level_side: int, minimum: int,
                style_scale: float = 1.0) -> tuple[int, int]:  # fmt: skip
    """The style's size at a level whose long side is ``level_side``: scaled like the
    content, never above its own size, then by ``style_scale`` (above 1: larger strokes,
    the style enlarged beyond its own size if need be), never below ``minimum`` per side."""
    scale = min(1.0, level_side / max(style)) * style_scale
    scale = max(scale, minimum / min(style))
    return scaled_shape(style, scale)

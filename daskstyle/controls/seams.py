"""Measures of the trace a tiling leaves in a picture: seams at tile borders, patchwork colour.

Both read an (H, W, C) picture (NumPy, Dask or zarr) one band of rows at a time, so a Dask
picture is never held whole in memory, and both are ratios, so the picture's value range
does not matter. A picture without tile structure scores about 1 on both.
"""

from __future__ import annotations

import numpy as np

#: Rows of a picture read at once.
BAND_ROWS = 1024


def near_borders(pairs: int, tile: int, width: int) -> np.ndarray:
    """Which of the neighbour pairs (i, i + 1), i < ``pairs``, lie wholly within ``width`` px
    of an internal border of a grid of ``tile``-px cells (borders at multiples of ``tile``
    strictly inside the picture): with ``width=1`` only the pair straddling each border,
    with ``width=2`` also one pair on each side of it."""
    if not 1 <= width <= tile // 2:
        raise ValueError(f"width {width} must be between 1 and half the tile ({tile} px)")
    second = np.arange(1, pairs + 1)  # the second pixel of each pair
    border = (second + tile // 2) // tile * tile  # the nearest border
    return (np.abs(second - border) < width) & (border > 0) & (border < pairs + 1)


def _pair_sums(band: np.ndarray, top: int, rows: int, seam_rows: np.ndarray, tile: int,
               width: int) -> np.ndarray:  # fmt: skip
    """[sum, count] of |Δ| (summed over channels) for pairs near borders and for the others,
    over the pairs of a band starting at row ``top``: horizontal pairs in its first ``rows``
    rows, vertical pairs between all of its rows (the band holds one row more than it owns,
    except the last); ``seam_rows``: which vertical pairs of the picture are near borders."""
    across = np.abs(np.diff(band[:rows], axis=1)).sum(axis=-1)  # (rows, W - 1)
    down = np.abs(np.diff(band, axis=0)).sum(axis=-1)  # (len(band) - 1, W)
    seam_cols = near_borders(band.shape[1] - 1, tile, width)
    seam_rows = seam_rows[top : top + len(down)]
    return np.array([
        across[:, seam_cols].sum() + down[seam_rows].sum(),
        across[:, seam_cols].size + down[seam_rows].size,
        across[:, ~seam_cols].sum() + down[~seam_rows].sum(),
        across[:, ~seam_cols].size + down[~seam_rows].size,
    ], dtype=np.float64)  # fmt: skip


def seam_score(image, tile: int, *, width: int = 1) -> float:
    """Mean gradient magnitude across the internal borders of a grid of ``tile``-px cores,
    divided by the same mean over all other neighbour pairs; 1.0: the tiling left no trace.

    The gradient magnitude of a pair of neighbouring pixels is |Δ| summed over channels.
    Border pairs are the horizontal pairs whose pixels both lie within ``width`` px of a
    vertical border and the vertical pairs within ``width`` px of a horizontal border
    (:func:`near_borders`): 2·width - 1 pairs per border line; the others are every other
    horizontal and vertical pair. The picture must have at least one internal border.

    Measure what was painted, ``painting - start image`` (the content): a picture's own
    structure can line up with the grid (VGG's pools tile it in 2, 4, 8, 16 px), which the
    painted change does not inherit. ``width=1`` (the pairs straddling a border) separates
    the ablations of docs/design.md best; wider bands dilute the step with ordinary pairs.
    """
    height = image.shape[0]
    seam_rows = near_borders(height - 1, tile, width)
    totals = np.zeros(4)
    for top in range(0, height, BAND_ROWS):
        rows = min(BAND_ROWS, height - top)
        band = np.asarray(image[top : top + rows + 1], dtype=np.float64)
        totals += _pair_sums(band, top, rows, seam_rows, tile, width)
    seam, seams, other, others = totals
    if not seams or not others:
        raise ValueError(f"a {image.shape[1]}x{height} picture has no internal {tile}-px border")
    return float((seam / seams) / (other / others))


def tile_means(image, tile: int, offset: int = 0) -> np.ndarray:
    """(rows, cols, C) mean colour of each whole cell of a grid of ``tile``-px cells whose
    first cell starts at (``offset``, ``offset``); cells cut by the picture's edge are left
    out."""
    height, width = image.shape[:2]
    cols = (width - offset) // tile
    means = []
    for top in range(offset, height - tile + 1, tile):
        band = np.asarray(image[top : top + tile, offset : offset + cols * tile], np.float64)
        means.append(band.reshape(tile, cols, tile, -1).mean(axis=(0, 2)))
    return np.stack(means)


def _neighbour_rms(means: np.ndarray) -> float:
    """Root mean square difference of the mean colours of side-by-side cells, averaged over
    channels."""
    steps = [np.diff(means, axis=0), np.diff(means, axis=1)]
    squares = np.concatenate([step.reshape(-1, means.shape[-1]) for step in steps])
    return float(np.sqrt((squares**2).mean(axis=0)).mean())


def tile_colour_spread(image, tile: int) -> float:
    """Patchwork: how much the mean colour jumps from one tile to the next on the tile grid,
    relative to a grid shifted by half a tile; about 1 without tile structure, above 1 when
    each tile has a colour of its own.

    The jump of a grid is the root mean square difference between the mean colours of
    horizontally and vertically adjacent whole cells, averaged over channels. Smooth colour
    changes of the picture itself (a linear ramp gives the same jump on both grids) cancel
    in the ratio; independent per-tile colour offsets of spread σ give jumps of √2·σ on the
    tile grid but σ/2 on the shifted grid, whose cells straddle four tiles: a ratio of 2.8.
    The picture needs at least 2 × 2 whole cells of the shifted grid. As for
    :func:`seam_score`, measure the painted change ``painting - start image``.
    """
    shifted = tile_means(image, tile, tile // 2)
    if min(shifted.shape[:2]) < 2:
        raise ValueError(f"a {tile}-px grid needs a picture of at least {3 * tile} px per side")
    return _neighbour_rms(tile_means(image, tile)) / _neighbour_rms(shifted)

"""OME-Zarr out: a picture as an NGFF 0.5 multiscale image on zarr v3, chunk by chunk.

ome-zarr-py (the library napari's reader is built on) writes the arrays and all of their
metadata: axes ``c``, ``y``, ``x``, pixels ``1 / dpi`` inch, a scale transform per level, and
the channels as red, green and blue for viewers. The picture is computed and stored a few
chunks at a time by threads of this process (where the folder is, whichever Dask scheduler
the painting ran on), then each level from the one stored above it, so memory stays
bounded for any size. The folder is written under a temporary name and renamed into place
(:func:`daskstyle.io.files.atomic_folder`); the group's ``daskstyle`` attribute marks it as
daskstyle's, and only such a folder, holding nothing else (no labels added since), is
replaced.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from daskstyle.core.errors import InputError
from daskstyle.io.files import atomic_folder
from daskstyle.io.resize import resize
from daskstyle.io.samples import SAMPLE_SCALE, check_finite, to_samples

SUFFIX = ".ome.zarr"
#: The group attribute that marks an OME-Zarr as written by daskstyle.
MARKER = "daskstyle"
_CHANNELS = (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))


def is_ome_zarr_name(path: Path) -> bool:
    """Whether ``path`` names an OME-Zarr output (``*.ome.zarr``)."""
    return Path(path).name.lower().endswith(SUFFIX) and len(Path(path).name) > len(SUFFIX)


def check_replaceable(path: Path) -> None:
    """Raise an :class:`InputError` when something is at ``path`` that daskstyle did not
    write: a user's files are never replaced."""
    if (path.exists() or path.is_symlink()) and not written_by_daskstyle(path):
        raise InputError(f"cannot write {path}: it exists and is not an OME-Zarr daskstyle "
                         f"wrote; move it away or name another output")  # fmt: skip


def written_by_daskstyle(path: Path) -> bool:
    """Whether ``path`` is a folder (not a link) holding an OME-Zarr group daskstyle marked,
    its levels and nothing else."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        attributes = json.loads((path / "zarr.json").read_text(encoding="utf-8"))["attributes"]
        datasets = attributes["ome"]["multiscales"][0]["datasets"]
        levels = {f"s{level}" for level in range(len(datasets))}
        return MARKER in attributes and set(os.listdir(path)) <= {"zarr.json", *levels}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False


def write_ome_zarr(path: Path, image: da.Array, shapes: list[tuple[int, int]], dtype: np.dtype,
                   *, tile: int, dpi: int, description: str | None) -> None:  # fmt: skip
    """Write ``image`` ((H, W, 3) on 0-255) and its levels of ``shapes`` (full size first,
    each about half the last) as ``dtype`` samples in ``tile``-px chunks to the OME-Zarr
    ``path``; ``description`` goes into the group's ``daskstyle`` attribute.

    Each level is the one above it as stored, halved by :func:`daskstyle.io.resize.resize`
    (box), so the picture is computed once."""
    top = np.iinfo(dtype).max
    omero = {"channels": [{"label": name, "color": colour, "active": True,
                           "window": {"min": 0, "max": top, "start": 0, "end": top}}
                          for name, colour in _CHANNELS]}  # fmt: skip
    # here, not at the top: ome-zarr-py loads scikit-image and SciPy (about 0.4 s), and its
    # writer's default argument warns of its own deprecated Scaler as it is imported
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV05
        from ome_zarr.writer import write_multiscale

    with atomic_folder(path) as folder:
        pyramid = [_channels_first(image, dtype)]
        for level, shape in enumerate(shapes[1:]):
            above = _StoredLevel(folder / f"s{level}", (3, *shapes[level]), dtype)
            pyramid.append(_channels_first(_halved(above, shape, tile), dtype))
        group = zarr.open_group(folder, mode="w", zarr_format=3)
        stores = write_multiscale(
            pyramid,
            group,
            fmt=FormatV05(),
            axes=["c", "y", "x"],
            axes_units={"y": "inch", "x": "inch"},
            scale={"y": 1 / dpi, "x": 1 / dpi},
            storage_options={"chunks": (3, tile, tile)},
            name=path.name[: -len(SUFFIX)],
            compute=False,
            metadata={"omero": omero},
        )
        # in order, each level read from the one stored before it; on an error the pool
        # finishes the chunks in flight before the folder is removed
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            for store in stores:
                dask.compute(store, scheduler="threads", pool=pool)
        group.attrs[MARKER] = {"description": description}


class _StoredLevel:
    """A level of the OME-Zarr being written, (3, H, W) samples, as an array-like that opens
    it when a task reads a region (after it is stored)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype, self.ndim = str(path), shape, dtype, len(shape)

    def __getitem__(self, index):
        return zarr.open_array(self.path, mode="r")[index]


def _halved(above: _StoredLevel, shape: tuple[int, int], tile: int) -> da.Array:
    """The level ``above`` resized to ``shape`` as (H, W, 3) on 0-255."""
    stored = da.from_array(
        above,
        chunks=(3, tile, tile),
        meta=np.empty((0, 0, 0), above.dtype),
        name=f"ome-zarr-level-{tokenize(above.path, above.shape, str(above.dtype))}",
    )
    image = stored.transpose(1, 2, 0).astype(np.float32) / np.float32(SAMPLE_SCALE[above.dtype])
    return resize(image, shape, method="box", chunks=tile)


def _channels_first(level: da.Array, dtype: np.dtype) -> da.Array:
    """``level`` (H, W, 3) on 0-255 as lazy (3, H, W) samples of ``dtype``, each chunk
    checked to be finite."""
    samples = level.rechunk({2: -1}).map_blocks(
        _finite_samples, dtype, dtype=dtype, meta=np.empty((0, 0, 0), dtype)
    )
    return samples.transpose(2, 0, 1)


def _finite_samples(block: np.ndarray, dtype: np.dtype, block_info=None) -> np.ndarray:
    y0, y1 = block_info[0]["array-location"][0] if block_info else (0, len(block))
    return to_samples(check_finite(block, f"rows {y0}-{y1 - 1}"), dtype)

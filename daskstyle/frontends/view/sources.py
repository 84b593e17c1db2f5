"""What the viewer shows: a run directory's levels, or a finished painting (.tif, .ome.zarr).

A run directory's level N is its current canvas (``level<N>/canvas<current>``, values on
0-255 shown rounded as the previews are) with the halved levels of its overview
(:mod:`daskstyle.optimise.overview`), each read with the step it shows as the version of its
cached chunks. A level whose overview is not written yet is halved from the canvas itself,
which only a small level may be (:data:`MOST_HALVED_PIXELS`). A TIFF written with
``--pyramid`` holds its halved levels as SubIFDs, read a region at a time with tifffile; an
OME-Zarr, as a multiscale image read with zarr, inside its folder only.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import zarr

from daskstyle.core.errors import InputError
from daskstyle.frontends.view import deepzoom
from daskstyle.frontends.view.reading import ChunkCache, Folder, NotServed, read_region
from daskstyle.optimise.overview import overview_shapes
from daskstyle.optimise.state import OVERVIEW
from daskstyle.run import rundir
from daskstyle.run.record import MAX_LEVELS

#: A level without halved levels of its own is halved from one of at most this many pixels.
MOST_HALVED_PIXELS = 4096 * 4096

#: The bytes of chunks kept in memory between tiles.
CACHE_BYTES = 512 * 2**20


@dataclass
class ZarrRegion:
    """A region-reading view of an (H, W, 3) zarr array in a :class:`Folder`."""

    folder: Folder
    names: tuple[str, ...]
    array: zarr.Array
    cache: ChunkCache
    version: tuple

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape[:2])

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        pixels = read_region(self.folder, self.names, self.array, (y0, y1, x0, x1), self.cache,
                             self.version)  # fmt: skip
        return pixels if pixels.dtype == np.uint8 else deepzoom.samples(pixels)


@dataclass
class Levels:
    """A :class:`deepzoom.Pyramid`: ``levels[k]`` the image in means of 2^k px."""

    levels: list


class RunDirectory:
    """A run directory, live or finished: its record, levels, previews and loss."""

    kind = "run"

    def __init__(self, path, cache_bytes: int = CACHE_BYTES):
        self.folder = Folder(path)
        self.cache = ChunkCache(cache_bytes)

    def record(self) -> dict | None:
        """What ``run.json`` says, or None before the run has written it (or where it is not
        a run's record)."""
        try:
            record = self.folder.read_json(rundir.RECORD)
        except NotServed:
            return None
        levels = record.get("levels")
        if type(levels) is not int or not 1 <= levels <= MAX_LEVELS:
            return None
        return record

    def level_attrs(self, number: int) -> dict | None:
        """The attributes of level ``number`` (from 1), or None before it is whole."""
        try:
            attrs = self.folder.read_json(f"level{number}", "zarr.json").get("attributes", {})
        except NotServed:
            return None
        return attrs if {"step", "current", "settings", "history"} <= set(attrs) else None

    def image_names(self) -> list[str]:
        record = self.record()
        return [f"level/{n}" for n in range(1, record["levels"] + 1)] if record else []

    def pyramid(self, name: str) -> tuple[Levels, str]:
        """Image ``name`` (``level/N``) as a pyramid, and its version (step and buffer)."""
        number = int(name.removeprefix("level/"))
        attrs = self.level_attrs(number)
        if attrs is None:
            raise NotServed(f"level {number} has not begun")
        level, version = f"level{number}", (attrs["step"], attrs["current"])
        names = (level, f"canvas{attrs['current']}")
        canvas = ZarrRegion(self.folder, names, self.folder.open_array(*names), self.cache,
                            version)  # fmt: skip
        return Levels([canvas, *self._overview(level, canvas.shape)]), "{}.{}".format(*version)

    def _overview(self, level: str, shape: tuple[int, int]) -> list[ZarrRegion]:
        """The halved levels kept for ``level`` (none where there are none, or not whole)."""
        try:
            attrs = self.folder.read_json(level, OVERVIEW, "zarr.json").get("attributes", {})
            version = (attrs["step"], attrs["current"])
            arrays = [((level, OVERVIEW, str(k)), self.folder.open_array(level, OVERVIEW, str(k)))
                      for k in range(1, attrs["levels"] + 1)]  # fmt: skip
        except (NotServed, KeyError, TypeError):
            return []
        if [tuple(a.shape) for _, a in arrays] != [(*s, 3) for s in overview_shapes(shape)]:
            return []
        return [ZarrRegion(self.folder, names, a, self.cache, version) for names, a in arrays]

    def preview(self, number: int) -> bytes:
        return self.folder.read_bytes(f"level{number}.png")

    def loss_csv(self) -> bytes:
        return self.folder.read_bytes(rundir.LOSS_CSV)


class _Painting:
    """A finished painting: one image, ``output``, and its levels halved as Deep Zoom halves."""

    kind = "painting"
    _levels: Levels
    version: str

    def image_names(self) -> list[str]:
        return ["output"]

    def pyramid(self, name: str) -> tuple[Levels, str]:
        if name != "output":
            raise NotServed(name)
        return self._levels, self.version


def _halved(shape: tuple[int, int], levels: list[tuple[tuple[int, ...], object]]) -> list:
    """The regions of ``levels`` (each with its (height, width)) from the first on, while each
    is the one before halved as Deep Zoom halves, rounding up."""
    kept = []
    for k, (level_shape, region) in enumerate(levels):
        if tuple(level_shape) != tuple(-(-n // 2**k) for n in shape):
            break
        kept.append(region)
    return kept


class TiffPainting(_Painting):
    """A finished painting in a TIFF: its first image and the halved levels beside it."""

    def __init__(self, path):
        self.path = Path(path).resolve()
        self._lock = threading.Lock()  # one file handle, one read at a time
        try:
            self._file = tifffile.TiffFile(self.path)
            series = self._file.series[0]
            arrays = [zarr.open_array(series.aszarr(level=k), mode="r")
                      for k in range(len(series.levels))]  # fmt: skip
        except Exception as err:  # tifffile raises many kinds on files it cannot read
            raise InputError(f"{path} is not a TIFF daskstyle can show ({err})") from None
        if (
            series.axes != "YXS"
            or series.shape[2] != 3
            or series.dtype not in (np.uint8, np.uint16)
        ):
            raise InputError(f"{path} is not an 8- or 16-bit RGB picture: daskstyle shows its own")
        shape = series.shape[:2]
        kept = _halved(shape, [(a.shape[:2], _TiffRegion(a, self._lock)) for a in arrays])
        if len(kept) == 1 and shape[0] * shape[1] > MOST_HALVED_PIXELS:
            raise InputError(f"{path} holds no reduced resolutions: write it with --pyramid "
                             "to view it")  # fmt: skip
        self._levels = Levels(kept)
        self.version = str(self.path.stat().st_mtime_ns)


@dataclass
class _TiffRegion:
    array: zarr.Array
    lock: threading.Lock

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape[:2])

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        with self.lock:
            pixels = self.array[y0:y1, x0:x1]
        if pixels.dtype == np.uint16:
            return deepzoom.samples(pixels / 257)
        return pixels


class OmeZarrPainting(_Painting):
    """A finished painting in an OME-Zarr (NGFF 0.4 or 0.5): its multiscale levels, axes
    ``c``, ``y``, ``x`` in any order (others of size 1), read inside its folder only."""

    def __init__(self, path):
        self.folder = Folder(path)
        try:
            attrs = self.folder.read_json("zarr.json").get("attributes", {})
            multiscale = attrs.get("ome", attrs).get("multiscales", [{}])[0]
            axes = [axis["name"] if isinstance(axis, dict) else axis for axis in multiscale["axes"]]
            names = [tuple(d["path"].split("/")) for d in multiscale["datasets"]]
            arrays = [self.folder.open_array(*n) for n in names]
        except (NotServed, KeyError, IndexError, TypeError, AttributeError):
            raise InputError(f"{path} is not an OME-Zarr image daskstyle can show") from None
        if not {"c", "y", "x"} <= set(axes) or arrays[0].shape[axes.index("c")] != 3:
            raise InputError(f"{path} is not an RGB OME-Zarr image (axes {axes})")

        def yx(array) -> tuple[int, int]:
            return tuple(array.shape[axes.index(a)] for a in "yx")

        shape = yx(arrays[0])
        kept = _halved(shape, [(yx(array), _OmeRegion(self.folder, name, array, axes))
                               for name, array in zip(names, arrays)])  # fmt: skip
        if len(kept) == 1 and shape[0] * shape[1] > MOST_HALVED_PIXELS:
            raise InputError(f"{path} holds no reduced resolutions to view it by")
        self._levels = Levels(kept)
        self.version = str(self.folder.check("zarr.json").stat().st_mtime_ns)


@dataclass
class _OmeRegion:
    folder: Folder
    names: tuple[str, ...]
    array: zarr.Array
    axes: list[str]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape[self.axes.index(a)] for a in "yx")

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        span = {"y": (y0, y1), "x": (x0, x1)}
        grid = zip(self.axes, self.array.shape, self.array.shards or self.array.chunks)
        ranges = [range(span[a][0] // g, (span[a][1] - 1) // g + 1) if a in span
                  else range(-(-n // g)) for a, n, g in grid]  # fmt: skip
        for index in itertools.product(*ranges):  # every file the region reads: no link
            key = self.array.metadata.encode_chunk_key(index)
            self.folder.check(*self.names, *key.split("/"), missing_ok=True)
        pixels = self.array[tuple(slice(*span[a]) if a in span else (slice(None) if a == "c" else 0)
                                  for a in self.axes)]  # fmt: skip
        kept = [a for a in self.axes if a in "cyx"]
        pixels = np.transpose(pixels, [kept.index(a) for a in "yxc"])
        return pixels if pixels.dtype == np.uint8 else deepzoom.samples(pixels / 257)


def open_source(path, *, waiting: bool = False) -> RunDirectory | TiffPainting | OmeZarrPainting:
    """What ``path`` holds: a run directory (``waiting``: one whose run has not begun yet is
    allowed) or a finished painting, .tif or .ome.zarr; an :class:`InputError` else."""
    path = Path(path)
    if re.search(r"\.tiff?$", path.name, re.IGNORECASE) and path.is_file():
        return TiffPainting(path)
    if path.name.lower().endswith(".ome.zarr") and path.is_dir():
        return OmeZarrPainting(path)
    if waiting or (path / rundir.RECORD).is_file():
        return RunDirectory(path)
    raise InputError(f"{path} is neither a run directory (with {rundir.RECORD}) nor a .tif or "
                     ".ome.zarr painting: give one of them")  # fmt: skip

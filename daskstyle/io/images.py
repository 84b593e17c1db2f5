"""Image files in: lazy reads of TIFF, PNG and JPEG with clear errors for bad files.

Reads give a Dask array (H, W, 3) float32 on 0-255. TIFF (and BigTIFF) is read lazily, a
region per task, so no file is ever wholly in memory; other formats go through Pillow, which
decodes the whole image (16-bit PNG, which Pillow cuts to 8 bits, through imagecodecs), once
here to check it and again in the task that reads it, so that graphs hold its path, not its
pixels, and a picture changed in between is refused. A damaged file is one
:class:`InputError`, raised when it is opened or when a task reads the damaged region; what
tifffile logs about it while it reads on is dropped. Writing is :mod:`daskstyle.io.writers`,
whose entry points are importable from here too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from pathlib import Path

import dask
import dask.array as da
import imagecodecs
import numpy as np
import tifffile
import zarr
from dask.array.core import normalize_chunks
from dask.base import tokenize
from PIL import Image, UnidentifiedImageError

from daskstyle.core.errors import InputError
from daskstyle.core.text import one_line, readable
from daskstyle.io.samples import SAMPLE_SCALE
from daskstyle.io.writers import check_output, pyramid_shapes, write_image  # noqa: F401

TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ACCEPTED_PHOTOMETRIC = ("RGB", "MINISBLACK", "YCBCR")


def read_image(path) -> da.Array:
    """The image at ``path`` as a lazy (H, W, 3) float32 array on 0-255.

    8- and 16-bit samples (16-bit scaled to 0-255); gray becomes RGB; an alpha channel is
    dropped with a warning. Unreadable input raises :class:`InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)  # a PNG's signature and IHDR up to its bit depth
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from err
    if head[:4] in TIFF_MAGIC:
        raw = _read_tiff(path)
    elif head[:8] == PNG_MAGIC and head[12:16] == b"IHDR" and head[24:25] == b"\x10":
        raw = _read_png16(path, head)
    else:
        raw = _read_pillow(path)
    return _as_rgb(raw, path)


def _read_png16(path: Path, head: bytes) -> da.Array:
    """A 16-bit PNG (which Pillow reads as 8 bits when it has colour) as (H, W, C) uint16."""
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if width * height > 2 * Image.MAX_IMAGE_PIXELS:  # the limit the Pillow path has
        raise InputError(f"{path} is too large to read whole: convert it to a tiled TIFF")
    return _decoded_in_tasks(_png16_pixels, path)


def _png16_pixels(path: Path) -> np.ndarray:
    try:
        array = imagecodecs.png_decode(path.read_bytes())
    except (imagecodecs.PngError, OSError) as err:
        raise InputError(f"{path} is corrupt or truncated ({one_line(err)})") from err
    return array[:, :, None] if array.ndim == 2 else array


def _read_pillow(path: Path) -> da.Array:
    image = _decoded_in_tasks(_pillow_pixels, path)
    if image.shape[0] * image.shape[1] > (Image.MAX_IMAGE_PIXELS or float("inf")):
        warnings.warn(f"{path} is {image.shape[1]}x{image.shape[0]} px, read whole into memory "
                      f"({readable(image.nbytes)}); a tiled TIFF would be read in parts",
                      stacklevel=1)  # fmt: skip
    return image


def _pillow_pixels(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # large pictures are read on purpose (:func:`_read_pillow` warns of them); above
            # Pillow's hard limit the error says what to do
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                array = _pillow_array(img)
    except UnidentifiedImageError as err:
        raise InputError(
            f"{path} is not an image in a known format: use PNG, JPEG or TIFF"
        ) from err
    except Image.DecompressionBombError as err:
        raise InputError(f"{path} is too large for Pillow: convert it to a tiled TIFF") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path} is corrupt or truncated ({one_line(err)})") from err
    return array[:, :, None] if array.ndim == 2 else array


def _decoded_in_tasks(pixels, path: Path) -> da.Array:
    """The picture ``pixels(path)`` decodes (H, W, C), decoded here to check it, then again
    by the task that reads it: a graph holds the picture's path, not its pixels (which a
    cluster's scheduler would otherwise receive with every graph that reads them)."""
    stat = path.stat()  # before the check: a file changed while it is checked is refused
    array = pixels(path)
    task = dask.delayed(_pixels_unchanged, pure=True)(pixels, path, stat.st_size, stat.st_mtime_ns)
    image = da.from_delayed(task, array.shape, dtype=array.dtype)
    return image.rechunk(("auto", "auto", -1))


def _pixels_unchanged(pixels, path: Path, size: int, mtime_ns: int) -> np.ndarray:
    """``pixels(path)``, if the file is the one that was checked."""
    try:
        stat = path.stat()
    except OSError as err:
        raise InputError(f"{path} went away while it was in use ({err.strerror})") from err
    if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
        raise InputError(f"{path} changed while it was in use: put the picture back as it was, "
                         f"or start again")  # fmt: skip
    return pixels(path)


def _pillow_array(img: Image.Image) -> np.ndarray:
    """The pixels of ``img`` as uint8 or uint16 (H, W[, C])."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("1", "PA"):
        img = img.convert({"1": "L", "PA": "RGBA"}[img.mode])
    elif img.mode not in ("L", "LA", "RGB", "RGBA") and not img.mode.startswith("I"):
        img = img.convert("RGB")
    array = np.asarray(img)
    if img.mode.startswith("I"):  # 16-bit gray ("I;16*", or "I" holding 16-bit values)
        array = np.clip(array, 0, 65535).astype(np.uint16)
    return array


class _TiffLevel:
    """The full-resolution image of a TIFF as an array-like that reads one region per call."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype, self.ndim = str(path), shape, dtype, len(shape)

    def __getitem__(self, index):
        try:
            with _tifffile_quiet(), tifffile.TiffFile(self.path) as tf:
                return zarr.open_array(tf.series[0].aszarr(level=0), mode="r")[index]
        except Exception as err:  # image data that its header did not show to be damaged
            raise InputError(f"{self.path} is a corrupt TIFF ({one_line(err)})") from err


_reading = threading.local()  # .depth: the _tifffile_quiet blocks this thread is in


class _QuietWhileReading(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_reading, "depth", 0)


logging.getLogger("tifffile").addFilter(_QuietWhileReading())


@contextlib.contextmanager
def _tifffile_quiet():
    """tifffile logs what it finds wrong in a file ("invalid offset to first page", ...) while
    it reads on: in this block (in this thread) it does not, and the error raised says it once."""
    _reading.depth = getattr(_reading, "depth", 0) + 1
    try:
        yield
    finally:
        _reading.depth -= 1


def _read_tiff(path: Path) -> da.Array:
    """The first image of a TIFF as a lazy (H, W, C) array of its own sample type."""
    try:
        with _tifffile_quiet(), tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise InputError(f"{path} holds no readable image: is it a corrupt TIFF?")
            series = tf.series[0]
            axes, shape, dtype = series.axes, series.shape, series.dtype
            if 0 in shape:
                raise InputError(f"{path} is an empty image of shape {shape}")
            _check_complete(path, series.pages)
            photometric = series.keyframe.photometric.name
            native = zarr.open_array(series.aszarr(level=0), mode="r").chunks
    except InputError:
        raise
    except Exception as err:  # tifffile raises many kinds on corrupt files
        raise InputError(f"{path} is a corrupt TIFF ({one_line(err)})") from err
    if photometric not in _ACCEPTED_PHOTOMETRIC:
        raise InputError(f"{path}: {photometric} TIFFs are not supported: save it as RGB or gray")
    sizes = dict(zip(axes, shape))
    if any(n > 1 for a, n in sizes.items() if a not in "YXS"):
        raise InputError(f"{path} holds a stack of images (axes {axes}): give a single image")
    stat = path.stat()
    chunks = normalize_chunks(
        tuple("auto" if a in "YX" else -1 for a in axes),
        shape,
        dtype=np.float32,
        previous_chunks=native,
    )
    raw = da.from_array(
        _TiffLevel(path, shape, dtype),
        chunks=chunks,
        meta=np.empty((0,) * len(shape), dtype),
        name=f"read-tiff-{tokenize(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}",
    )
    raw = raw.squeeze(axis=tuple(i for i, a in enumerate(axes) if a not in "YXS"))
    kept = [a for a in axes if a in "YXS"]
    if "S" not in kept:
        raw, kept = raw[..., None], [*kept, "S"]
    return raw.transpose([kept.index(a) for a in "YXS"])


def _check_complete(path: Path, pages) -> None:
    """Raise if the image data of ``pages`` reaches beyond the end of the file."""
    end = max(
        (o + n for page in pages for o, n in zip(page.dataoffsets, page.databytecounts)), default=0
    )
    size = path.stat().st_size
    if end > size:
        raise InputError(
            f"{path} is truncated: its image data needs {end} bytes, the file has {size}"
        )


def _as_rgb(raw: da.Array, path: Path) -> da.Array:
    """(H, W, C) uint8/uint16 -> (H, W, 3) float32 on 0-255."""
    channels = raw.shape[2]
    if raw.dtype not in SAMPLE_SCALE:
        raise InputError(f"{path} has {raw.dtype} samples: only 8- and 16-bit images are supported")
    if channels not in (1, 2, 3, 4):
        raise InputError(f"{path} has {channels} channels: give a gray, RGB or RGBA image")
    if channels in (2, 4):
        warnings.warn(
            f"{path}: the alpha channel is ignored (transparent parts keep the colours stored "
            "under them)",
            UserWarning,
            stacklevel=3,
        )
    raw = raw.rechunk({2: -1})
    return raw.map_blocks(
        _float_rgb,
        SAMPLE_SCALE[raw.dtype],
        chunks=(*raw.chunks[:2], (3,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )


def _float_rgb(block: np.ndarray, divisor: int) -> np.ndarray:
    colour = block[..., :3] if block.shape[2] >= 3 else np.repeat(block[..., :1], 3, axis=2)
    return colour.astype(np.float32) / np.float32(divisor)

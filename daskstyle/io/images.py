"""Image files in and out: lazy reads, streamed tiled BigTIFF writes, atomic replacement.

Reads give a Dask array (H, W, 3) float32 on 0-255. TIFF (and BigTIFF) is read lazily, a
region per task, so no file is ever wholly in memory; other formats go through Pillow, which
decodes the whole image (16-bit PNG, which Pillow cuts to 8 bits, through imagecodecs). A
damaged file is one :class:`InputError`, raised when it is opened or when a task reads the
damaged region; what tifffile logs about it while it reads on is dropped. Writes, 8 or 16
bits a sample, go to a temporary file beside the target and are renamed over it only when
complete; on failure the temporary is removed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
import zlib
from pathlib import Path

import dask.array as da
import imagecodecs
import numpy as np
import tifffile
import zarr
from dask.array.core import normalize_chunks
from dask.base import tokenize
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from daskstyle.core.errors import DaskstyleError, InputError
from daskstyle.core.text import one_line, readable
from daskstyle.io.files import atomic, not_writable
from daskstyle.io.resize import resize

TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Bits a sample -> the sample type written.
SAMPLE_TYPES = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16)}
#: Largest image written through Pillow (PNG/JPEG, encoded whole in memory).
MAX_PILLOW_PIXELS = 8192 * 8192
_DIVISOR = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 257}  # 65535 / 257 = 255
_SUFFIXES = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
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
    try:
        array = imagecodecs.png_decode(path.read_bytes())
    except (imagecodecs.PngError, OSError) as err:
        raise InputError(f"{path} is corrupt or truncated ({one_line(err)})") from err
    if array.ndim == 2:
        array = array[:, :, None]
    return da.from_array(array, chunks=("auto", "auto", -1))


def _read_pillow(path: Path) -> da.Array:
    try:
        with warnings.catch_warnings():
            # large pictures are read on purpose (a note says so below); above Pillow's hard
            # limit the error says what to do
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
    if array.shape[0] * array.shape[1] > (Image.MAX_IMAGE_PIXELS or float("inf")):
        warnings.warn(f"{path} is {array.shape[1]}x{array.shape[0]} px, read whole into memory "
                      f"({readable(array.nbytes)}); a tiled TIFF would be read in parts",
                      stacklevel=1)  # fmt: skip
    if array.ndim == 2:
        array = array[:, :, None]
    return da.from_array(array, chunks=("auto", "auto", -1))


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
    if raw.dtype not in _DIVISOR:
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
        _DIVISOR[raw.dtype],
        chunks=(*raw.chunks[:2], (3,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )


def _float_rgb(block: np.ndarray, divisor: int) -> np.ndarray:
    colour = block[..., :3] if block.shape[2] >= 3 else np.repeat(block[..., :1], 3, axis=2)
    return colour.astype(np.float32) / np.float32(divisor)


def write_image(
    path,
    image,
    *,
    pyramid: bool = False,
    tile: int = 512,
    compression: str | None = "zlib",
    description: str | None = None,
    bit_depth: int = 8,
) -> None:
    """Write ``image`` ((H, W, 3) on 0-255) to ``path`` with ``bit_depth`` (8 or 16) bits a
    sample: ``round(x)``, or ``round(x * 257)`` for 16 bits, clipped to the sample's range.

    ``.tif``/``.tiff``: a tiled BigTIFF streamed a band of ``tile`` rows at a time, with
    halved levels down to one tile as SubIFDs when ``pyramid``. ``.png``/``.jpg``/``.jpeg``:
    Pillow (16-bit PNG: imagecodecs), for images up to :data:`MAX_PILLOW_PIXELS`.
    ``description`` goes into the file's metadata. The file appears under ``path`` only when
    complete.
    """
    path = Path(path)
    image = image if isinstance(image, da.Array) else da.from_array(np.asarray(image))
    fmt = check_output(path, bit_depth)
    dtype = SAMPLE_TYPES[bit_depth]
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise InputError(f"an image to write must have shape (H, W, 3), got {image.shape}")
    if fmt == "TIFF":
        if tile < 16 or tile % 16:
            raise InputError(f"TIFF tile size {tile} must be a positive multiple of 16")
        with atomic(path) as fh:
            _write_tiff(fh, image, pyramid, tile, compression, description, dtype)
    else:
        height, width, _ = image.shape
        if height * width > MAX_PILLOW_PIXELS:
            raise InputError(
                f"{height}x{width} px is too large for {fmt} ({MAX_PILLOW_PIXELS} px at most): "
                f"write a .tif instead"
            )
        with atomic(path) as fh:
            _write_pillow(fh, image, fmt, tile, description, dtype)


def check_output(path, bit_depth: int = 8) -> str:
    """The format to write ``path`` in with ``bit_depth`` bits a sample, or an
    :class:`InputError` before any work is done."""
    path = Path(path)
    if bit_depth not in SAMPLE_TYPES:
        raise InputError(f"bit depth must be 8 or 16, not {bit_depth}")
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write {path.name}: use a .tif, .png or .jpg name")
    if fmt == "JPEG" and bit_depth != 8:
        raise InputError(f"cannot write {path.name}: 16-bit output needs a .tif or .png name")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder; name a file (such as "
                         f"{path / ('painting' + path.suffix)})")  # fmt: skip
    if not path.parent.is_dir():
        why = ": it is a file" if path.parent.exists() else ""
        raise InputError(f"cannot write {path}: the directory {path.parent} does not exist{why}")
    why = not_writable(path.parent)
    if why:
        raise InputError(f"cannot write {path}: the directory {path.parent} {why}")
    return fmt


def pyramid_shapes(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level: halved (rounding up) until the image fits one tile."""
    shapes = [tuple(shape)]
    while max(shapes[-1]) > tile:
        shapes.append(tuple(-(-n // 2) for n in shapes[-1]))
    return shapes


def _write_tiff(
    fh, image: da.Array, pyramid: bool, tile: int, compression, description, dtype: np.dtype
) -> None:
    shapes = pyramid_shapes(image.shape[:2], tile) if pyramid else [image.shape[:2]]
    with tifffile.TiffWriter(fh, bigtiff=True) as tif:
        for level, shape in enumerate(shapes):
            data = image if level == 0 else resize(image, shape, method="box", chunks=tile)
            tif.write(
                _tiles(data, tile, dtype),
                shape=(*shape, 3),
                dtype=dtype,
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                metadata=None,
                subifds=len(shapes) - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                description=description if level == 0 else None,
            )


def _tiles(image: da.Array, tile: int, dtype: np.dtype):
    """Tiles of ``image`` as ``dtype`` samples in row-major order, zero-padded; one band in
    memory."""
    width = image.shape[1]
    for band in _bands(image, tile):
        band = _samples(band, dtype)
        for x0 in range(0, width, tile):
            block = np.zeros((tile, tile, 3), dtype)
            part = band[:, x0 : x0 + tile]
            block[: part.shape[0], : part.shape[1]] = part
            yield block


def _bands(image: da.Array, rows: int):
    """``image`` computed ``rows`` rows at a time, each band checked to be finite."""
    for y0 in range(0, image.shape[0], rows):
        band = np.asarray(image[y0 : y0 + rows].compute())
        if not np.isfinite(band).all():  # a picture that is not finite is never written
            raise DaskstyleError(f"rows {y0}-{y0 + len(band) - 1} of the picture are not finite")
        yield band


def _samples(band: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``band`` on 0-255 as rounded, clipped samples of ``dtype`` (uint16: 65535 = 255 * 257)."""
    band = np.rint(band if dtype == np.uint8 else band.astype(np.float64) * _DIVISOR[dtype])
    return np.clip(band, 0, np.iinfo(dtype).max, out=band).astype(dtype)


def _write_pillow(fh, image: da.Array, fmt: str, rows: int, description, dtype: np.dtype) -> None:
    pixels = np.concatenate([_samples(band, dtype) for band in _bands(image, rows)])
    if dtype != np.uint8:
        fh.write(_png16(pixels, description))
        return
    options = {"quality": 95} if fmt == "JPEG" else {}
    if description is not None and fmt == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_itxt("Description", description)
    elif description is not None:
        options["comment"] = description
    Image.fromarray(pixels).save(fh, format=fmt, **options)


def _png16(pixels: np.ndarray, description: str | None) -> bytes:
    """A 16-bit RGB PNG of ``pixels``, with ``description`` in an iTXt chunk (as Pillow writes
    it for 8 bits) before IEND."""
    png = imagecodecs.png_encode(pixels)
    if description is None:
        return png
    body = b"iTXt" + b"Description\0\0\0\0\0" + description.encode("utf-8")
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return png[:-12] + chunk + png[-12:]  # IEND is the last 12 bytes

"""Pictures out: streamed tiled BigTIFF, PNG, JPEG and OME-Zarr, print-ready and atomic.

Writes, 8 or 16 bits a sample (:mod:`daskstyle.io.samples`), go to a temporary name beside
the target and are renamed over it only when complete; on failure the temporary is removed.
TIFF, PNG and JPEG files carry an sRGB ICC profile and their print resolution (``dpi``);
an OME-Zarr's pixels are ``1 / dpi`` inch (:mod:`daskstyle.io.ngff`).
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path

import dask.array as da
import imagecodecs
import numpy as np
import tifffile
import zarr
from PIL import Image, ImageCms, PngImagePlugin

from daskstyle.core.errors import InputError
from daskstyle.io import files, ngff
from daskstyle.io.files import atomic, not_writable
from daskstyle.io.resize import resize
from daskstyle.io.samples import SAMPLE_SCALE, SAMPLE_TYPES, check_finite, to_samples

#: Largest image written through Pillow (PNG/JPEG, encoded whole in memory).
MAX_PILLOW_PIXELS = 8192 * 8192
#: The print resolution a picture carries unless told otherwise (``--dpi``).
DEFAULT_DPI = 300
_SUFFIXES = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_METRES_PER_INCH = 0.0254


def write_image(
    path,
    image,
    *,
    pyramid: bool = False,
    tile: int = 512,
    compression: str | None = "zlib",
    description: str | None = None,
    bit_depth: int = 8,
    dpi: int = DEFAULT_DPI,
) -> None:
    """Write ``image`` ((H, W, 3) on 0-255) to ``path`` with ``bit_depth`` (8 or 16) bits a
    sample: ``round(x)``, or ``round(x * 257)`` for 16 bits, clipped to the sample's range.

    ``.tif``/``.tiff``: a tiled BigTIFF streamed a band of ``tile`` rows at a time, with
    halved levels down to one tile as SubIFDs when ``pyramid``. ``.png``/``.jpg``/``.jpeg``:
    Pillow (16-bit PNG: imagecodecs), for images up to :data:`MAX_PILLOW_PIXELS`.
    ``.ome.zarr``: an OME-Zarr multiscale image in ``tile``-px chunks, always with halved
    levels. ``description`` goes into the file's metadata, ``dpi`` (and an sRGB profile) too.
    The file appears under ``path`` only when complete.
    """
    path = Path(path)
    image = image if isinstance(image, da.Array) else da.from_array(np.asarray(image))
    fmt = check_output(path, bit_depth)
    dtype = SAMPLE_TYPES[bit_depth]
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise InputError(f"an image to write must have shape (H, W, 3), got {image.shape}")
    if fmt in ("TIFF", "OME-Zarr") and (tile < 16 or tile % 16):
        raise InputError(f"{fmt} tile size {tile} must be a positive multiple of 16")
    if fmt == "OME-Zarr":
        shapes = pyramid_shapes(image.shape[:2], tile)
        ngff.write_ome_zarr(path, image, shapes, dtype, tile=tile, dpi=dpi, description=description)
    elif fmt == "TIFF":
        with atomic(path) as fh:
            _write_tiff(fh, image, pyramid, tile, compression, description, dtype, dpi)
    else:
        height, width, _ = image.shape
        if height * width > MAX_PILLOW_PIXELS:
            raise InputError(
                f"{height}x{width} px is too large for {fmt} ({MAX_PILLOW_PIXELS} px at most): "
                f"write a .tif or .ome.zarr instead"
            )
        with atomic(path) as fh:
            _write_pillow(fh, image, fmt, tile, description, dtype, dpi)


def check_output(path, bit_depth: int = 8) -> str:
    """The format to write ``path`` in with ``bit_depth`` bits a sample (``"TIFF"``,
    ``"PNG"``, ``"JPEG"`` or ``"OME-Zarr"``), or an :class:`InputError` before any work is
    done."""
    path = Path(path)
    if bit_depth not in SAMPLE_TYPES:
        raise InputError(f"bit depth must be 8 or 16, not {bit_depth}")
    fmt = "OME-Zarr" if ngff.is_ome_zarr_name(path) else _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write {path.name}: use a .tif, .png, .jpg or .ome.zarr name")
    if fmt == "JPEG" and bit_depth != 8:
        raise InputError(f"cannot write {path.name}: 16-bit output needs a .tif or .png name")
    if fmt == "OME-Zarr":
        ngff.check_replaceable(path)
    elif path.is_dir():
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


@functools.cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (Little CMS's, as Pillow makes it): the colours of every output."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _write_tiff(fh, image: da.Array, pyramid: bool, tile: int, compression, description,
                dtype: np.dtype, dpi: int) -> None:  # fmt: skip
    """The levels of ``shapes`` in order: the first and the second from ``image``, each
    further one from the level above it as stored, halved (as OME-Zarr's are), kept in a
    scratch folder beside ``fh`` that only this call makes and removes (under a third of the
    file's samples): ``image`` is read twice, not once per level."""
    shapes = pyramid_shapes(image.shape[:2], tile) if pyramid else [image.shape[:2]]
    scratch = Path(fh.name).with_suffix(".levels")
    with tifffile.TiffWriter(fh, bigtiff=True) as tif, files.owned_folder(scratch):
        above = None
        for level, shape in enumerate(shapes):
            if level < 2:
                data = image if level == 0 else resize(image, shape, method="box", chunks=tile)
            else:
                data = _samples_image(above, dtype)
                data = resize(data, shape, method="box", chunks=tile)
            keep = None
            if 0 < level < len(shapes) - 1:  # the next level is made from this one
                keep = zarr.create_array(scratch / str(level), shape=(*shape, 3),
                                         chunks=(tile, tile, 3), dtype=dtype)  # fmt: skip
            tif.write(
                _tiles(data, tile, dtype, keep),
                shape=(*shape, 3),
                dtype=dtype,
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                metadata=None,
                subifds=len(shapes) - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                description=description if level == 0 else None,
                iccprofile=srgb_profile(),
                # a level keeps the print size: fewer pixels to the inch
                resolution=(dpi * shape[1] / shapes[0][1], dpi * shape[0] / shapes[0][0]),
                resolutionunit="INCH",
            )
            above = keep


def _samples_image(stored: zarr.Array, dtype: np.dtype) -> da.Array:
    """Stored samples of ``dtype`` as an (H, W, 3) image on 0-255."""
    return da.from_zarr(stored).astype(np.float32) / np.float32(SAMPLE_SCALE[dtype])


def _tiles(image: da.Array, tile: int, dtype: np.dtype, keep: zarr.Array | None = None):
    """Tiles of ``image`` as ``dtype`` samples in row-major order, zero-padded; one band in
    memory. ``keep``: a zarr array its samples are also stored in."""
    width = image.shape[1]
    for y0, band in _bands(image, tile):
        band = to_samples(band, dtype)
        if keep is not None:
            keep[y0 : y0 + len(band)] = band
        for x0 in range(0, width, tile):
            block = np.zeros((tile, tile, 3), dtype)
            part = band[:, x0 : x0 + tile]
            block[: part.shape[0], : part.shape[1]] = part
            yield block


def _bands(image: da.Array, rows: int):
    """``image`` computed ``rows`` rows at a time, each band checked to be finite, with its
    first row."""
    for y0 in range(0, image.shape[0], rows):
        band = np.asarray(image[y0 : y0 + rows].compute())
        yield y0, check_finite(band, f"rows {y0}-{y0 + len(band) - 1}")


def _write_pillow(fh, image: da.Array, fmt: str, rows: int, description, dtype: np.dtype,
                  dpi: int) -> None:  # fmt: skip
    pixels = np.concatenate([to_samples(band, dtype) for _, band in _bands(image, rows)])
    if dtype != np.uint8:
        fh.write(_png16(pixels, description, dpi))
        return
    options = {"icc_profile": srgb_profile(), "dpi": (dpi, dpi)}
    if fmt == "JPEG":
        options["quality"] = 95
    if description is not None and fmt == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_itxt("Description", description)
    elif description is not None:
        options["comment"] = description
    Image.fromarray(pixels).save(fh, format=fmt, **options)


def _png16(pixels: np.ndarray, description: str | None, dpi: int) -> bytes:
    """A 16-bit RGB PNG of ``pixels`` with, as Pillow writes them for 8 bits, the sRGB
    profile (iCCP) and ``dpi`` (pHYs) after IHDR, and ``description`` (iTXt) before IEND."""
    png = imagecodecs.png_encode(pixels)
    per_metre = round(dpi / _METRES_PER_INCH).to_bytes(4, "big")
    header = _png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(srgb_profile()))
    header += _png_chunk(b"pHYs", per_metre * 2 + b"\x01")  # unit 1: the metre
    text = b""
    if description is not None:
        text = _png_chunk(b"iTXt", b"Description\0\0\0\0\0" + description.encode("utf-8"))
    ihdr_end = 8 + 25  # the signature, then IHDR: length, type, 13 bytes, CRC
    return png[:ihdr_end] + header + png[ihdr_end:-12] + text + png[-12:]  # IEND: last 12


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

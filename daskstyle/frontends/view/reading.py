"""Reading inside one folder only: no path outside it, no symbolic link, nothing written.

Every path the viewer reads is given as names below a :class:`Folder` and checked name by
name: none may be a symbolic link, so no file outside the folder is reached through one. Zarr
arrays are opened read-only, and the chunks a region needs are checked the same way before
zarr reads them, then kept in a :class:`ChunkCache` bounded in bytes.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import zarr


class NotServed(LookupError):
    """A path that does not exist, is a symbolic link or leaves the folder."""


class Folder:
    """The folder ``path`` (resolved once, as given), whose files the viewer may read."""

    def __init__(self, path):
        self.path = Path(path).resolve()
        self._arrays: dict[tuple, tuple] = {}  # names: (what zarr.json was, the array)
        self._lock = threading.Lock()

    def check(self, *names: str, missing_ok: bool = False) -> Path:
        """The path of ``names`` below the folder, each checked not to be a symbolic link (nor
        ``..`` or a name with a separator); :class:`NotServed` else, and where it does not
        exist unless ``missing_ok``."""
        if any(name in ("", ".", "..") or "/" in name or "\0" in name for name in names):
            raise NotServed("/".join(names))
        path = self.path
        for name in names:
            path = path / name
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    raise NotServed(f"{path} is a symbolic link")
            except (FileNotFoundError, NotADirectoryError):
                if missing_ok:
                    return self.path.joinpath(*names)
                raise NotServed(f"{path} does not exist") from None
        return path

    def read_bytes(self, *names: str) -> bytes:
        """The bytes of the regular file ``names``, opened without following a link."""
        path = self.check(*names)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as err:
            raise NotServed(f"{path}: {err.strerror}") from None
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise NotServed(f"{path} is not a file")
            return file.read()

    def read_json(self, *names: str) -> dict:
        try:
            found = json.loads(self.read_bytes(*names))
        except (ValueError, UnicodeDecodeError):
            raise NotServed(f"{'/'.join(names)} is not JSON") from None
        if not isinstance(found, dict):
            raise NotServed(f"{'/'.join(names)} is not a JSON object")
        return found

    def exists(self, *names: str) -> bool:
        try:
            self.check(*names)
        except NotServed:
            return False
        return True

    def open_array(self, *names: str) -> zarr.Array:
        """The zarr array in folder ``names``, read-only, its ``zarr.json`` checked first;
        opened again only when that file changes."""
        path = self.check(*names)
        try:
            info = os.stat(self.check(*names, "zarr.json"))
        except OSError:
            raise NotServed(f"{path}/zarr.json cannot be read") from None
        key = (names, info.st_ino, info.st_mtime_ns, info.st_size)
        with self._lock:
            found = self._arrays.get(names)
        if found is not None and found[0] == key:
            return found[1]
        try:
            array = zarr.open_array(str(path), mode="r")
        except (OSError, ValueError, KeyError, TypeError):
            raise NotServed(f"{path} is not a zarr array") from None
        with self._lock:
            self._arrays[names] = (key, array)
        return array


class ChunkCache:
    """Chunks (or bands of their rows) read lately, kept up to ``most_bytes`` in all (the least
    recently used go)."""

    def __init__(self, most_bytes: int):
        self.most_bytes, self.bytes = most_bytes, 0
        self._chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            found = self._chunks.get(key)
            if found is not None:
                self._chunks.move_to_end(key)
            return found

    def put(self, key: tuple, chunk: np.ndarray) -> None:
        with self._lock:
            if key in self._chunks or chunk.nbytes > self.most_bytes:
                return
            self._chunks[key] = chunk
            self.bytes += chunk.nbytes
            while self.bytes > self.most_bytes:
                _, dropped = self._chunks.popitem(last=False)
                self.bytes -= dropped.nbytes


def read_region(folder: Folder, names: tuple[str, ...], array: zarr.Array, box: tuple,
                cache: ChunkCache, version) -> np.ndarray:  # fmt: skip
    """Rows y0:y1, columns x0:x1 (``box``) of the (H, W, C) zarr ``array`` in folder
    ``names``, chunk by chunk, each chunk file checked (:meth:`Folder.check`; a missing one
    reads as the fill value). An array stored raw (a level's canvas, its overview) gives only
    the rows the box needs, across the chunk's width (a band that the tiles beside it share);
    others, their whole chunks. Either is kept in ``cache`` under ``version``."""
    y0, y1, x0, x1 = box
    ch, cw = array.chunks[:2]
    out = np.empty((y1 - y0, x1 - x0, array.shape[2]), array.dtype)
    rows, cols = range(y0 // ch, (y1 - 1) // ch + 1), range(x0 // cw, (x1 - 1) // cw + 1)
    raw = _stored_raw(array)
    for row, col in itertools.product(rows, cols):
        top, left = row * ch, col * cw
        a, b = max(y0, top), min(y1, top + ch)  # rows of the box in this chunk
        first, last = (a - top, b - top) if raw else (0, ch)
        key = (*names, version, row, col, first, last)
        part = cache.get(key)
        if part is None:
            chunk_key = array.metadata.encode_chunk_key((row, col, 0))
            path = folder.check(*names, *chunk_key.split("/"), missing_ok=True)
            if raw:
                part = _raw_rows(path, array, first, last)
            else:
                part = np.asarray(array.blocks[row, col, 0])
            cache.put(key, part)
        c, d = max(x0, left), min(x1, left + cw)
        out[a - y0 : b - y0, c - x0 : d - x0] = part[a - top - first : b - top - first,
                                                     c - left : d - left]  # fmt: skip
    return out


def _stored_raw(array: zarr.Array) -> bool:
    """Whether each chunk file of ``array`` is its C-order little-endian bytes (then perhaps
    their crc32c): no compression, no filters, no shards."""
    names = [type(codec).__name__ for codec in array.metadata.codecs]
    endian = getattr(array.metadata.codecs[0], "endian", None)
    return (names in (["BytesCodec"], ["BytesCodec", "Crc32cCodec"]) and array.order == "C"
            and array.dtype.byteorder in ("<", "=", "|") and np.little_endian
            and getattr(endian, "value", "little") == "little")  # fmt: skip


def _raw_rows(path: Path, array: zarr.Array, first: int, last: int) -> np.ndarray:
    """Rows ``first:last`` of the raw chunk file ``path`` (whole chunk, as zarr stores edge
    chunks), read without following a link; the fill value where the file is missing."""
    chunk_shape = array.chunks
    row_bytes = math.prod(chunk_shape[1:]) * array.dtype.itemsize
    shape = (last - first, *chunk_shape[1:])
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return np.full(shape, array.fill_value, array.dtype)
    except OSError as err:
        raise NotServed(f"{path}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size < chunk_shape[0] * row_bytes:
            raise NotServed(f"{path} is not a whole chunk")
        data = os.pread(fd, (last - first) * row_bytes, first * row_bytes)
    finally:
        os.close(fd)
    return np.frombuffer(data, array.dtype).reshape(shape)

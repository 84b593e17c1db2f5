"""Files written safely: a file (or folder) appears whole or not at all, and a directory says
why it cannot be written to before any work is done."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from daskstyle.core.errors import DaskstyleError
from daskstyle.core.text import one_line


def not_writable(directory: Path) -> str | None:
    """Why files cannot be made in ``directory`` ("is on a read-only disk", "is not
    writable"), or None when they can."""
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        return "is on a read-only disk"
    if not os.access(directory, os.W_OK | os.X_OK):
        return "is not writable"
    return None


def nearest_existing(path: Path) -> Path:
    """``path`` (absolute) or its nearest existing parent."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` into ``path``, which holds its old contents or all of the new, never a part."""
    with atomic(path) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic(path: Path):
    """A new file beside ``path`` that replaces ``path`` once the block completes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, DaskstyleError) or not isinstance(err, Exception):
            raise
        raise DaskstyleError(f"could not write {path}: {one_line(err)}") from err


@contextlib.contextmanager
def owned_folder(path: Path):
    """A new folder at ``path`` (an error if anything is there) for the block's scratch
    files, removed with them when the block ends, however it ends."""
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(path: Path):
    """A new folder beside ``path`` that replaces ``path`` (a folder the caller may replace, or
    nothing) once the block completes, its files flushed to disk first. Between the two
    renames the old folder waits under a hidden name, and comes back if the second fails."""
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp, old = (path.with_name(f".{path.name}.{tag}.{end}") for end in ("part", "old"))
    try:
        tmp.mkdir()
        yield tmp
        _flush_files(tmp)
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists():
                os.replace(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, DaskstyleError) or not isinstance(err, Exception):
            raise
        raise DaskstyleError(f"could not write {path}: {one_line(err)}") from err


def _flush_files(folder: Path) -> None:
    """Every file under ``folder`` onto the disk (``fsync``), as :func:`atomic` does for one."""
    for directory, _, names in os.walk(folder):
        for name in names:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

"""One level's state on disk: a zarr group, its layout, its checks, its sizes and commits.

The group (:class:`LevelState`) holds the content (until the run has computed the content
target from it), two canvas buffers and two buffers each of Adam's ``m`` and ``v``. Step
``t + 1`` reads buffer ``current`` (p_t, m_t, v_t, never written during the step) and writes
buffer ``1 - current``; the group's attributes (step, current buffer, learning rate) change in
one atomic write after every store of the step has finished and its loss and pixel changes
are known to be finite (:func:`daskstyle.optimise.adam.advance`, the update itself). So a retried
task recomputes the same chunk from unchanged inputs, and after a kill at any moment the attributes name a complete, consistent state: redoing the
step from there gives bit-identical results (given a deterministic gradient).

Arrays are uncompressed with NaN as zarr's fill value: every chunk of a finite picture is
written, a chunk file that goes missing reads as NaN (which no step commits), and
:meth:`LevelState.check` names a missing or truncated chunk file before a step reads it.
Each chunk file ends in the crc32c of its bytes (zarr's ``crc32c`` codec), which every read
verifies, and each array's ``zarr.json`` keeps the crc32c of every chunk's data as it was
written (:func:`store_with_checksums`, and a step's :meth:`LevelState.update`): a chunk whose
bytes changed fails the first, a whole chunk file swapped for another (a neighbour's, an
older step's) the second.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
import uuid
import zipfile
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from zarr.codecs import Crc32cCodec

from daskstyle.core.errors import DamagedStateError, InputError
from daskstyle.core.geometry import TilePlan
from daskstyle.optimise.adam import AdamSettings, Update, should_stop
from daskstyle.optimise.chunks import CHECKSUMS, checksum, keep_checksums, update_in_place


def read_zarr(array: zarr.Array, *token, chunks: tuple[int, ...] | None = None) -> da.Array:
    """``array`` as a Dask array whose key derives from ``token`` (e.g. run id and step), in
    its own chunks or in ``chunks``: each task then reads its window from the stored chunks it
    overlaps, where a Dask rechunk would hold whole rows of stored chunks at once."""
    name = f"read-{array.basename}-{tokenize(str(array.store_path), *token, chunks)}"
    return da.from_zarr(array, chunks=chunks or array.chunks, name=name)


#: The bytes that zarr's crc32c codec adds to each chunk file.
CRC_BYTES = 4


def create_array(path, shape, chunks, dtype) -> zarr.Array:
    """A new array at ``path``, uncompressed but each chunk with its crc32c, whose missing
    chunks read as NaN."""
    return zarr.create_array(str(Path(path).absolute()), shape=shape, chunks=chunks, dtype=dtype,
                             compressors=[Crc32cCodec()], fill_value=math.nan)  # fmt: skip


def store_with_checksums(sources: list[da.Array], targets: list[zarr.Array], *others) -> list:
    """Store each of ``sources`` into the zarr array beside it in ``targets`` and compute
    ``others`` (Dask collections or None) in the same pass; then keep in each target's
    ``zarr.json`` the checksums of the chunks written (:data:`CHECKSUMS`). Return the values
    of ``others``."""
    sources = [x.astype(t.dtype).rechunk(t.chunks) for x, t in zip(sources, targets)]
    stores = da.store(sources, targets, lock=False, compute=False)
    sums = [x.map_blocks(_checksum_block, chunks=(1,) * x.ndim, dtype=np.uint32) for x in sources]
    _, sums, *values = dask.compute(stores, sums, *others)
    for target, chunk_sums in zip(targets, sums):
        keep_checksums(target, chunk_sums.ravel().tolist())
    return values


def _checksum_block(block: np.ndarray) -> np.ndarray:
    return np.full((1,) * block.ndim, checksum(block), dtype=np.uint32)


def check_whole(array: zarr.Array, *, read: bool = True) -> None:
    """Raise a :class:`DamagedStateError` naming the first chunk file of ``array`` (an
    uncompressed array on a local disk, edge chunks stored whole) that is missing or of the
    wrong size; with ``read``, also one that fails its crc32c or holds other data than was
    written there (each chunk is read once)."""
    folder = Path(array.store.root) / array.path
    checked = any(isinstance(codec, Crc32cCodec) for codec in array.compressors)
    expected = math.prod(array.chunks) * array.dtype.itemsize + CRC_BYTES * checked
    written = array.attrs.get(CHECKSUMS)
    for number, index in enumerate(itertools.product(*map(range, array.cdata_shape))):
        chunk = folder / array.metadata.encode_chunk_key(index)
        try:
            size = chunk.stat().st_size
        except FileNotFoundError:
            raise DamagedStateError(f"{chunk} is missing") from None
        if size != expected:
            what = "is truncated" if size < expected else "is longer than a chunk"
            raise DamagedStateError(f"{chunk} {what} ({size} of {expected} bytes)")
        if read:
            _check_chunk(array, index, chunk, None if written is None else written[number])


def _check_chunk(array: zarr.Array, index: tuple, chunk: Path, written: int | None) -> None:
    try:
        block = array.blocks[index]
    except ValueError:  # the crc32c codec: the bytes differ from those it summed
        raise DamagedStateError(f"{chunk} fails its checksum (its bytes changed)") from None
    if written is not None and checksum(block) != written:
        raise DamagedStateError(
            f"{chunk} holds other data than was written there (another chunk's, or an older step's)"
        )


def open_array(path) -> zarr.Array:
    """The zarr array at ``path`` for reading, or a :class:`DamagedStateError`."""
    try:
        return zarr.open_array(str(Path(path).absolute()), mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError) as err:
        raise DamagedStateError(f"{path}/zarr.json is missing or damaged ({_kind(err)})") from None


def _kind(err: Exception) -> str:
    return "not valid JSON" if isinstance(err, json.JSONDecodeError) else type(err).__name__


class StepAttributes:
    """What a level's attributes (``attrs``: step, current buffer, rate, history, Adam
    settings) say, for the states on disk and held in memory alike."""

    @property
    def attrs(self) -> dict:
        raise NotImplementedError

    @property
    def step(self) -> int:
        return self.attrs["step"]

    @property
    def lr(self) -> float | None:
        return self.attrs["lr"]

    @property
    def settings(self) -> AdamSettings:
        return AdamSettings(**self.attrs["settings"])

    @property
    def done(self) -> bool:
        """Whether the stop test holds after the last step."""
        attrs, s = self.attrs, self.settings
        mean = attrs["history"][-1][1] if attrs["history"] else float("inf")
        return should_stop(mean, attrs["step"], s.stop, s.max_iters)


class LevelState(StepAttributes):
    """One level's zarr group: arrays ``content``, ``canvas0/1``, ``m0/1``, ``v0/1``.

    Attributes: ``step`` (steps done), ``current`` (buffer holding p, m, v of that step),
    ``lr``, ``pending`` (``{"loss": ...}`` while the first step's moments wait in the other
    buffer), ``history`` ([max change, mean change, loss, seconds] per step), ``settings``,
    ``run_id``.
    """

    BUFFERS = ("canvas", "m", "v")

    def __init__(self, group: zarr.Group):
        self.group = group
        self.path = Path(group.store.root)
        if "step" not in group.attrs:
            raise InputError(f"{group.store} holds no complete level state: create it again")

    @classmethod
    def create(
        cls,
        path,
        content: da.Array,
        canvas: da.Array,
        plan: TilePlan,
        settings: AdamSettings = AdamSettings(),
        dtype=np.float32,
    ) -> LevelState:
        """A new level at ``path`` (replacing any there) starting from ``canvas``; all
        per-pixel state is stored as ``dtype``."""
        shape = (*plan.shape, 3)
        for name, image in (("content", content), ("canvas", canvas)):
            if tuple(image.shape) != shape:
                raise InputError(f"{name} has shape {tuple(image.shape)}, the plan needs {shape}")
        path = Path(path).absolute()  # the same for every worker
        group = zarr.open_group(path, mode="w")
        chunks = (plan.tile, plan.tile, 3)
        for name in ("content", *(f"{b}{i}" for b in cls.BUFFERS for i in (0, 1))):
            create_array(path / name, shape, chunks, dtype)
        store_with_checksums([content, canvas], [group["content"], group["canvas0"]])
        group.attrs.put(
            {
                "step": 0,
                "current": 0,
                "lr": settings.lr,
                "pending": None,
                "history": [],
                "settings": dataclasses.asdict(settings),
                "run_id": uuid.uuid4().hex,
            }
        )
        return cls(group)

    @classmethod
    def nbytes(cls, plan: TilePlan, dtype=np.float32, *, released: bool = False) -> int:
        """Bytes on disk of a level state for ``plan`` (uncompressed, edge chunks whole, each
        with its checksum): the most it holds, both buffers of canvas, m and v after
        :meth:`drop_content` (before it, only the content and one canvas), or its final canvas
        alone after :meth:`release`."""
        arrays = 1 if released else 2 * len(cls.BUFFERS)
        return arrays * len(plan) * (plan.tile**2 * 3 * np.dtype(dtype).itemsize + CRC_BYTES)

    @classmethod
    def open(cls, path) -> LevelState:
        """The level state saved at ``path``; a :class:`DamagedStateError` if its
        ``zarr.json`` cannot be read."""
        try:
            group = zarr.open_group(Path(path).absolute(), mode="r+")
        except FileNotFoundError as err:
            raise InputError(f"no level state at {path}") from err
        except (ValueError, KeyError, TypeError) as err:
            raise DamagedStateError(f"{path}/zarr.json is damaged ({_kind(err)})") from None
        return cls(group)

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    @property
    def saved_step(self) -> int:
        """The step whose state is on disk: this state's own step."""
        return self.step

    def check(self, *, read: bool = True) -> None:
        """Raise a :class:`DamagedStateError` naming the first file of what the next step
        reads (or, once done, of the final canvas) that is missing, truncated or unreadable;
        with ``read``, also a chunk that fails its checksums (:func:`check_whole`)."""
        attrs = self.attrs
        cur = attrs["current"]
        names = [f"canvas{cur}"]
        if not self.done:
            if attrs["pending"] is not None:
                names += [f"m{1 - cur}", f"v{1 - cur}"]
            elif attrs["step"] > 0:
                names += [f"m{cur}", f"v{cur}"]
            names += [name for name in ("content", CONTENT_TARGET)
                      if (self.path / name).is_dir()]  # fmt: skip
        for name in names:
            check_whole(open_array(self.path / name), read=read)

    def read(self, name: str, buffer: int) -> da.Array:
        """Array ``name`` (canvas, m, v) of ``buffer`` as a Dask array keyed by this step."""
        attrs = self.attrs
        return read_zarr(self.group[f"{name}{buffer}"], attrs["run_id"], attrs["step"])

    def store(self, name: str, buffer: int) -> zarr.Array:
        """Array ``name`` of ``buffer`` as the zarr array a step writes into."""
        return self.group[f"{name}{buffer}"]

    def write(self, buffer: int, arrays: dict[str, da.Array], *others):
        """Store ``arrays`` (name: canvas, m, v) into ``buffer`` and compute ``others`` (Dask
        arrays or None) in the same pass; return the values of ``others``."""
        names = list(arrays)
        stores = [self.store(n, buffer) for n in names]
        values = store_with_checksums([arrays[n] for n in names], stores, *others)
        return tuple(None if x is None else float(x) for x in values)

    def update(self, buffer: int, update: Update, grad: da.Array | None = None, *others):
        """Run ``update`` with ``grad`` chunk by chunk in place, writing into ``buffer``
        (:func:`daskstyle.optimise.chunks.update_in_place`), and compute ``others`` (Dask
        arrays or None) in the same pass; return its figures and the values of ``others``."""
        attrs = self.attrs
        sources = {name: None if b is None else self.store(name, b)
                   for name, b in update.buffers(attrs["current"], attrs["step"]).items()}  # fmt: skip
        writes = {name: self.store(name, buffer) for name in update.outputs}
        figures, *values = update_in_place(sources, writes, update, grad, *others)
        return figures, *(None if x is None else float(x) for x in values)

    def content(self) -> da.Array:
        """The level's content image."""
        return read_zarr(self.group["content"], self.attrs["run_id"])

    def canvas(self) -> da.Array:
        """p_t, the current canvas (same keys on every call for the same step)."""
        return self.read("canvas", self.attrs["current"])

    def canvas_store(self) -> zarr.Array:
        """p_t as its zarr array, for tasks that read their own windows of it."""
        return self.group[f"canvas{self.attrs['current']}"]

    def content_store(self) -> zarr.Array:
        """The content image as its zarr array, for tasks that read their own windows of it."""
        return self.group["content"]

    def drop_content(self) -> None:
        """Delete the content image, once what is computed from it (the content target) is on
        disk and nothing reads it any more; :meth:`content` fails afterwards."""
        shutil.rmtree(self.path / "content", ignore_errors=True)

    def release(self) -> None:
        """Delete all but the current canvas, its overview and the attributes (also anything
        stored beside the arrays, such as a content target): what a finished level keeps.
        Works on files, so that a repeat after a kill also removes arrays that were half
        deleted."""
        keep = {"zarr.json", f"canvas{self.attrs['current']}", OVERVIEW}
        for entry in self.path.iterdir():
            if entry.is_dir() and entry.name not in keep:
                shutil.rmtree(entry)

    def lagged_grams(self, step: int) -> dict[str, np.ndarray]:
        """The raw Grams of canvas p_``step`` that a lagged step kept (:func:`keep_grams`),
        or a :class:`DamagedStateError` (the zip's crc32 of each array is verified)."""
        path = self.path / LAGGED_GRAMS / f"{step}.npz"
        try:
            with np.load(path, allow_pickle=False) as saved:
                grams = {name: saved[name] for name in saved.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DamagedStateError(
                f"{path} is missing or damaged ({type(err).__name__})"
            ) from None
        kept = grams.pop(GRAMS_STEP, None)  # none in files kept before it was written
        if kept is not None and int(kept) != step:
            raise DamagedStateError(f"{path} holds the Grams of canvas p_{int(kept)}, not p_{step}")
        return grams

    def commit(self, **changes) -> None:
        """Write the attributes in one atomic store write (zarr writes ``zarr.json`` via rename)."""
        self.group.attrs.put({**self.attrs, **changes})


#: The folder of a level state where ``--gram lagged`` keeps the raw Grams of recent canvases.
LAGGED_GRAMS = "lagged_grams"

#: The entry of a kept Grams file that names its canvas's step.
GRAMS_STEP = "step"

#: The array of a level state that holds the level's content target.
CONTENT_TARGET = "content_target"

#: The group of a level state that holds its canvas halved for viewers
#: (:mod:`daskstyle.optimise.overview`), kept with the final canvas.
OVERVIEW = "overview"


def keep_grams(path: Path, step: int, grams: dict[str, np.ndarray], saved_step: int) -> None:
    """Keep the raw Grams of canvas p_``step`` in the level state at ``path`` (written whole
    under a temporary name, then renamed), and delete those of canvases before p_``k-2``,
    where k is ``step`` or the earlier ``saved_step`` on disk (a state held in memory since):
    a repeat of step k after a kill still needs p_``k-2``'s and p_``k-1``'s, whose drift
    decides whether it lags."""
    folder = Path(path) / LAGGED_GRAMS
    folder.mkdir(exist_ok=True)
    tmp = folder / f"{step}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as file:
        np.savez(file, **grams, **{GRAMS_STEP: np.int64(step)})
    os.replace(tmp, folder / f"{step}.npz")
    for entry in folder.iterdir():
        if entry.suffix == ".npz" and int(entry.stem) < min(step, saved_step) - 2:
            entry.unlink()

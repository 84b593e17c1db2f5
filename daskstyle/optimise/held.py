"""A level's state held in memory between checkpoints (``--checkpoint-every N`` steps, or
``--checkpoint-every Mmin`` minutes).

Each step of a :class:`daskstyle.optimise.state.LevelState` reads the canvas and Adam's moments from
zarr and writes the next ones back: 72 bytes per pixel in float32. :class:`HeldState` keeps
them instead as persisted Dask arrays (in the workers' memory, on a cluster) and writes them
to the level state on disk every N steps and when the level ends, in the same atomic commit
as a step on disk. A killed run resumes from the last checkpoint and, steps being
deterministic, still ends with the uninterrupted run's picture.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import zarr

from daskstyle.compute.executor import MEMORY_SHARE
from daskstyle.core.errors import InputError
from daskstyle.core.text import readable
from daskstyle.optimise.adam import Update
from daskstyle.optimise.chunks import update_held
from daskstyle.optimise.state import LevelState, StepAttributes

#: ``--checkpoint-every`` in minutes: ``15min``, ``0.5 min`` (the number is the group).
MINUTES = r"([0-9]*\.?[0-9]+) ?min"


@dataclass(frozen=True)
class Checkpoints:
    """How often a level's state goes to disk: every ``steps`` steps (1: at every step, the
    state is not held), or at the first step that ends ``minutes`` after the last
    checkpoint; and always at the level's end. ``with_target``: while the state is held, the
    content target's windows that the tiles read are held too (read once a level, not at
    every step)."""

    steps: int | None = None
    minutes: float | None = None
    with_target: bool = True

    @classmethod
    def of(cls, value: int | str | Checkpoints) -> Checkpoints:
        """``value`` as given to ``--checkpoint-every``: ``N`` steps (a whole number, 1 or
        more) or ``Mmin`` minutes (``15min``, ``0.5min``); an :class:`InputError` else."""
        if isinstance(value, Checkpoints):
            return value
        text = str(value).strip() if not isinstance(value, bool) else ""
        if re.fullmatch(r"[0-9]+", text) and int(text) >= 1:
            return cls(steps=int(text))
        if (found := re.fullmatch(MINUTES, text)) and float(found[1]) > 0:
            return cls(minutes=float(found[1]))
        raise InputError(f"--checkpoint-every must be a whole number of steps, 1 or more, or "
                         f"minutes such as 15min, not {value!r}")  # fmt: skip

    @property
    def held(self) -> bool:
        """Whether the state stays in memory between checkpoints."""
        return self.steps != 1

    def due(self, steps: int, seconds: float) -> bool:
        """Whether a checkpoint is due ``steps`` steps and ``seconds`` after the last."""
        return steps >= self.steps if self.steps else seconds >= 60 * self.minutes

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps else f"{self.minutes:g} min"


class HeldState(StepAttributes):
    """The state of ``saved`` (a level state on disk) held in memory from its current step
    on, and written back to it as ``every`` (:class:`Checkpoints`, or what
    :meth:`Checkpoints.of` takes) says and once the stop test holds. It reads, writes and
    commits as a :class:`LevelState` does, for :func:`daskstyle.optimise.adam.advance` and
    :class:`daskstyle.optimise.level.Level`; a commit changes the attributes in memory only.
    ``clock``: seconds, for checkpoints every so many minutes."""

    def __init__(self, saved: LevelState, every: int | str | Checkpoints,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.saved, self.every, self.path = saved, Checkpoints.of(every), saved.path
        self.clock, self.saved_at = clock, clock()
        self._attrs = saved.attrs
        self._arrays: dict[tuple[str, int], da.Array] = {}  # (name, buffer): persisted

    @property
    def attrs(self) -> dict:
        return {**self._attrs, "history": list(self._attrs["history"])}

    @property
    def saved_step(self) -> int:
        """The step whose state is on disk: the last checkpoint."""
        return self.saved.step

    def check(self, *, read: bool = True) -> None:
        """Check what the next step reads from disk (:meth:`LevelState.check`): nothing once
        the state is in memory."""
        if not self._arrays:
            self.saved.check(read=read)

    def read(self, name: str, buffer: int) -> da.Array:
        """Array ``name`` of ``buffer``: held, or before the first write the one on disk."""
        held = self._arrays.get((name, buffer))
        return self.saved.read(name, buffer) if held is None else held

    def canvas(self) -> da.Array:
        return self.read("canvas", self._attrs["current"])

    def canvas_store(self) -> da.Array | zarr.Array:
        """p_t where tile tasks read their windows: held, or before the first write on disk."""
        return self._source("canvas", self._attrs["current"])

    def lagged_grams(self, step: int) -> dict[str, np.ndarray]:
        return self.saved.lagged_grams(step)

    def update(self, buffer: int, update: Update, grad: da.Array | None = None, *others):
        """Run ``update`` with ``grad`` chunk by chunk (:func:`daskstyle.optimise.chunks.update_held`)
        into ``buffer``, persisted, and compute ``others`` in the same pass; return its figures
        and the values of ``others``. Before the first write each task reads its own chunks
        from disk."""
        attrs = self._attrs
        sources = {name: None if b is None else self._source(name, b)
                   for name, b in update.buffers(attrs["current"], attrs["step"]).items()}  # fmt: skip
        new, figures = update_held(sources, update, grad, like=self.canvas())
        values = self.write(buffer, new, *figures, *others)
        return values[: len(figures)], *values[len(figures) :]

    def _source(self, name: str, buffer: int) -> da.Array | zarr.Array:
        """Array ``name`` of ``buffer`` where tasks read their chunks: held, or on disk."""
        held = self._arrays.get((name, buffer))
        return self.saved.store(name, buffer) if held is None else held

    def write(self, buffer: int, arrays: dict[str, da.Array], *others):
        """Persist ``arrays`` (name: canvas, m, v) as ``buffer`` and compute ``others`` (Dask
        arrays or None) in the same pass; return the values of ``others``."""
        names, wanted = list(arrays), [x for x in others if x is not None]
        persisted = dask.persist(*arrays.values(), *wanted)  # one kind: results stay in order
        for name, array in zip(names, persisted):
            self._arrays[(name, buffer)] = array
        values = iter(dask.compute(*persisted[len(names) :]))
        return tuple(None if x is None else float(next(values)) for x in others)

    def commit(self, **changes) -> None:
        """Change the attributes in memory; once a step is committed, let go of the other
        buffer and write a checkpoint when ``every`` steps have passed or the level is done."""
        self._attrs.update(changes)
        if "step" not in changes or self._attrs["pending"] is not None:
            return
        current = self._attrs["current"]
        self._arrays = {key: a for key, a in self._arrays.items() if key[1] == current}
        if self.every.due(self.step - self.saved_step, self.clock() - self.saved_at) or self.done:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the held canvas and moments into the disk state's other buffer, with their
        checksums (:meth:`LevelState.write`), then commit its attributes in one atomic write:
        after a kill at any moment the disk state is the last checkpoint's or this one's."""
        if self.step == self.saved_step:
            return
        current, buffer = self._attrs["current"], 1 - self.saved.attrs["current"]
        self.saved.write(
            buffer, {name: self._arrays[(name, current)] for name in LevelState.BUFFERS}
        )
        attrs = self._attrs
        self.saved.commit(step=attrs["step"], current=buffer, lr=attrs["lr"], pending=None,
                          history=attrs["history"])  # fmt: skip
        self.saved_at = self.clock()


def held_in_memory(shape: tuple[int, int], dtype, every: Checkpoints, memory: float | None,
                   target_bytes: int) -> tuple[str, Checkpoints]:  # fmt: skip
    """The plan's line for holding the state of the largest level, of ``shape``, in memory
    with checkpoints ``every``, and ``every`` as the run takes it: with the content target's
    windows (``target_bytes`` at that level) held too where the state and they fit in the part
    of ``memory`` that the tiles leave (None: memory on other machines, not known here: both
    held). An :class:`InputError` when the state alone (both buffers, as while a step writes
    the next) would not fit."""
    nbytes = 2 * len(LevelState.BUFFERS) * 3 * np.dtype(dtype).itemsize * shape[0] * shape[1]
    room = None if memory is None else (1 - MEMORY_SHARE) * memory
    if room is not None and nbytes > room:
        raise InputError(
            f"holding the state of a {shape[1]}x{shape[0]} level in memory needs "
            f"{readable(nbytes)}, more than the {readable(room)} the "
            "tiles leave of this machine's memory: use --checkpoint-every 1 (state on disk)"
        )
    line = (f"state in memory, on disk every {every} and at each level's end: "
            f"{readable(nbytes)} at the last level")  # fmt: skip
    if room is None or nbytes + target_bytes <= room:
        return f"{line}, and the content target the tiles read, {readable(target_bytes)}", every
    return (f"{line}; the content target is read from disk at each step (holding it too would "
            f"need {readable(target_bytes)} more)"), dataclasses.replace(every, with_target=False)  # fmt: skip

"""What a run reports while it paints: typed events that the front ends render (the library
never prints)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LevelStarted:
    level: int
    levels: int
    shape: tuple[int, int]
    tiles: int
    step: int
    max_iters: int


@dataclass(frozen=True)
class Stepped:
    level: int
    step: int
    loss: float
    max_change: float
    mean_change: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class LevelFinished:
    level: int
    preview: Path


@dataclass(frozen=True)
class Finished:
    output: Path
    workdir: Path


@dataclass(frozen=True)
class Staged:
    """A stage of a level besides its steps took ``seconds``: its state made (content resized,
    the previous canvas upsampled), the style Grams, the content target, the overview, the
    preview, or (after the last level) the output."""

    level: int
    stage: str
    seconds: float


Event = LevelStarted | Stepped | LevelFinished | Finished | Staged


@contextlib.contextmanager
def timed(on_event: Callable[[Event], None], level: int, stage: str) -> Iterator[None]:
    """Tell ``on_event`` how long the block took, as the ``stage`` of ``level``."""
    began = time.perf_counter()
    yield
    on_event(Staged(level, stage, time.perf_counter() - began))


def timed_when(on_event: Callable[[Event], None], level: int, stage: str,
               action: Callable[[], bool]) -> None:  # fmt: skip
    """Run ``action``; when it did something (returned True), tell ``on_event`` how long it
    took, as the ``stage`` of ``level``."""
    began = time.perf_counter()
    if action():
        on_event(Staged(level, stage, time.perf_counter() - began))

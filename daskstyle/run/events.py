"""What a run reports while it paints: typed events that the front ends render (the library
never prints)."""

from __future__ import annotations

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


Event = LevelStarted | Stepped | LevelFinished | Finished

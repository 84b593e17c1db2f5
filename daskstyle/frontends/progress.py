"""A run's events in words: the command line's bars and a pipeline's lines say the same.

A terminal gets a bar per level. Elsewhere (a SLURM log, CI, a file) every event is a plain
line with no carriage returns: a step's line says its level, step, loss, seconds and the most
time the level still takes; when steps are fast, at most one step line every
:data:`BATCH_EVERY` seconds, besides each level's first step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from daskstyle.core.text import counted, duration
from daskstyle.run.events import Event, Finished, LevelFinished, LevelStarted, Staged, Stepped

BATCH_EVERY = 10.0  # seconds: the fewest between two step lines where there is no terminal


def describe(event: Event) -> str:
    """One line for ``event``."""
    if isinstance(event, LevelStarted):
        (h, w), tiles = event.shape, counted(event.tiles, "tile")
        return (f"level {event.level + 1}/{event.levels}: {w}x{h} px, {tiles}, from step "
                f"{event.step} to at most {event.max_iters}")  # fmt: skip
    if isinstance(event, Stepped):
        return (f"level {event.level + 1} step {event.step}: loss {event.loss:.5g}, mean change "
                f"{event.mean_change:.3f}, {event.seconds:.2f} s")  # fmt: skip
    if isinstance(event, LevelFinished):
        return f"level {event.level + 1} done: preview {event.preview}"
    if isinstance(event, Finished):
        return f"wrote {event.output} (run directory {event.workdir}, loss history in loss.csv)"
    if isinstance(event, Staged):
        return f"level {event.level + 1}: {event.stage} in {event.seconds:.2f} s"
    raise TypeError(f"not a run event: {event!r}")


class Progress:
    """Renders a run's events through ``echo``, one line each; with ``bars`` a level's steps
    go to a tqdm bar instead. ``every``: the fewest seconds between two step lines (0: a line
    per step). Remembers the previews written."""

    def __init__(self, echo: Callable[[str], None] = print, bars: bool = False,
                 every: float = 0.0, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.echo, self.bars, self.every, self.clock = echo, bars, every, clock
        self.bar = None
        self.previews: list[Path] = []
        self.level: LevelStarted | None = None
        self.seconds: list[float] = []  # of the level's steps so far
        self.said_at = -float("inf")

    def __call__(self, event: Event) -> None:
        if isinstance(event, LevelStarted):
            self.level, self.seconds = event, []
        if self.bars and isinstance(event, LevelStarted):
            from tqdm import tqdm

            (h, w), tiles = event.shape, counted(event.tiles, "tile")
            self.bar = tqdm(total=event.max_iters, initial=event.step, unit="step",
                            desc=f"level {event.level + 1}/{event.levels} {w}x{h}, {tiles}")  # fmt: skip
        elif self.bars and isinstance(event, Stepped):
            self.bar.set_postfix(loss=f"{event.loss:.4g}", change=f"{event.mean_change:.3f}")
            self.bar.update(1)
        elif isinstance(event, Stepped):
            self.seconds.append(event.seconds)
            now = self.clock()
            if len(self.seconds) == 1 or now - self.said_at >= self.every:
                self.said_at = now
                self.echo(f"{describe(event)}{self._left(event)}")
        elif self.bar is not None and isinstance(event, Staged):
            self.bar.write(describe(event))  # above the bar, which stays
        else:
            if isinstance(event, LevelFinished):
                self.close()
                self.previews.append(event.preview)
            self.echo(describe(event))

    def _left(self, event: Stepped) -> str:
        """The most time the level still takes at the mean pace of its steps so far (its stop
        test may end it sooner)."""
        if self.level is None or self.level.level != event.level:
            return ""
        left = max(0, self.level.max_iters - event.step) * sum(self.seconds) / len(self.seconds)
        return f", level done in at most {duration(left)}"

    def close(self) -> None:
        """End the bar that runs, if any (before an error line)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

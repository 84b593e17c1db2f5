"""A run's events in words: the command line's bars and a pipeline's lines say the same."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from daskstyle.core.text import counted
from daskstyle.run.events import Event, Finished, LevelFinished, LevelStarted, Stepped


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
    raise TypeError(f"not a run event: {event!r}")


class Progress:
    """Renders a run's events through ``echo``, one line each; with ``bars`` a level's steps
    go to a tqdm bar instead. Remembers the previews written."""

    def __init__(self, echo: Callable[[str], None] = print, bars: bool = False):
        self.echo, self.bars = echo, bars
        self.bar = None
        self.previews: list[Path] = []

    def __call__(self, event: Event) -> None:
        if self.bars and isinstance(event, LevelStarted):
            from tqdm import tqdm

            (h, w), tiles = event.shape, counted(event.tiles, "tile")
            self.bar = tqdm(total=event.max_iters, initial=event.step, unit="step",
                            desc=f"level {event.level + 1}/{event.levels} {w}x{h}, {tiles}")  # fmt: skip
        elif self.bars and isinstance(event, Stepped):
            self.bar.set_postfix(loss=f"{event.loss:.4g}", change=f"{event.mean_change:.3f}")
            self.bar.update(1)
        else:
            if isinstance(event, LevelFinished):
                self.close()
                self.previews.append(event.preview)
            self.echo(describe(event))

    def close(self) -> None:
        """End the bar that runs, if any (before an error line)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

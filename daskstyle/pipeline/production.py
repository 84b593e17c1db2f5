"""A production: one :func:`daskstyle.run.transfer` on the cluster of its ``[cluster]`` table."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import run
from .config import RANDOM, Production


def dry_run_production(config: Production, echo: Callable[[str], None]) -> None:
    """Echo what the production would do (:func:`daskstyle.run.dry_run`); write nothing."""
    with _weights_file(config) as weights:
        for line in run.dry_run(*_pictures(config), **_run_options(config, weights),
                                makes_output_dir=True):  # fmt: skip
            echo(line)


def run_production(config: Production, echo: Callable[[str], None]) -> list[Path]:
    """Run the production; return the files written (the picture, previews, loss.csv)."""
    import dask

    from ..cluster import dashboard_link, has_gpus, open_client

    settings, output, spec = config.settings, config.output, config.cluster.spec
    cluster_options = config.cluster.model_dump(exclude={"spec"}, exclude_none=True)
    progress = _Progress(echo)
    with _weights_file(config) as weights:
        options = _run_options(config, weights)
        run.check_run(*_pictures(config), **options, makes_output_dir=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        with (
            dask.config.set({"scheduler": "synchronous"} if spec == "sync" else {}),
            open_client(spec, max_tasks=run.tiles_in_memory(settings), **cluster_options) as client,
        ):
            link = dashboard_link(client)
            echo(f"cluster {spec}" + (f": Dask dashboard {link}" if link else ""))
            resources = {"GPU": 1} if has_gpus(client) else None
            run.transfer(*_pictures(config), **options, resources=resources, on_event=progress)
    workdir = config.workdir or run.default_workdir(output)
    return [output, *progress.previews, workdir / "loss.csv"]


def _pictures(config: Production) -> tuple[Path, Path, Path]:
    return config.content, config.style, config.output


def _run_options(config: Production, weights) -> dict:
    return {"settings": config.settings, "weights": weights, "workdir": config.workdir,
            "resume": config.resume}  # fmt: skip


@contextlib.contextmanager
def _weights_file(config: Production) -> Iterator[Path | None]:
    """The weights to pass by path: ``"random"`` becomes a temporary file of seeded weights."""
    if config.weights != RANDOM:
        yield config.weights
        return
    import torch

    from ..networks import random_weights

    with tempfile.TemporaryDirectory(prefix="daskstyle-weights-") as folder:
        path = Path(folder) / f"{config.network}-random-seed{config.seed}.pth"
        torch.save(random_weights(config.network, config.seed), path)
        yield path


class _Progress:
    """A run's events as one line each; remembers the previews written."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo = echo
        self.previews: list[Path] = []

    def __call__(self, event: run.Event) -> None:
        if isinstance(event, run.LevelStarted):
            (h, w), tiles = event.shape, run.counted(event.tiles, "tile")
            self.echo(f"level {event.level + 1}/{event.levels}: {w}x{h} px, {tiles}, "
                      f"from step {event.step} to at most {event.max_iters}")  # fmt: skip
        elif isinstance(event, run.Stepped):
            self.echo(f"level {event.level + 1} step {event.step}: loss {event.loss:.5g}, "
                      f"mean change {event.mean_change:.3f}, {event.seconds:.2f} s")  # fmt: skip
        elif isinstance(event, run.LevelFinished):
            self.previews.append(event.preview)
            self.echo(f"level {event.level + 1} done: preview {event.preview}")
        elif isinstance(event, run.Finished):
            self.echo(f"wrote {event.output} (run directory {event.workdir})")

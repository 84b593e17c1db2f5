"""A production: one run, planned and checked, then executed on the cluster of its ``[cluster]``
table."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from daskstyle.frontends.progress import Progress
from daskstyle.run import painting

from .keys import RANDOM, Production


def dry_run_production(config: Production, echo: Callable[[str], None]) -> None:
    """Echo what the production would do (:meth:`daskstyle.run.painting.RunPlan.dry_run`); write
    nothing."""
    with weights_file(config) as weights:
        for line in _plan(config, weights, dry_run=True).dry_run():
            echo(line)


def run_production(config: Production, echo: Callable[[str], None]) -> list[Path]:
    """Run the production; return the files written (the picture, previews, loss.csv)."""
    from daskstyle.compute.executor import Executor

    settings, output = config.settings, config.output
    progress = Progress(echo)
    with weights_file(config) as weights:
        plan = _plan(config, weights)
        plan.check()  # before a cluster starts
        output.parent.mkdir(parents=True, exist_ok=True)
        if plan.arithmetic is not None:
            echo(plan.arithmetic)
        options = config.cluster.model_dump(exclude_none=True)
        executor = Executor(**options, tile=plan.tile, dtype=settings.dtype)
        with executor.open() as session:
            echo(f"cluster {executor.spec}")
            for line in session.lines:
                echo(line)
            plan.execute(session.resources, on_event=progress)
    return [output, *progress.previews, plan.workdir / "loss.csv"]


def _plan(config: Production, weights, dry_run: bool = False) -> painting.RunPlan:
    return painting.plan(config.content, config.style, config.output, settings=config.settings,
                         weights=weights, workdir=config.workdir, resume=config.resume,
                         cluster=config.cluster.spec, checkpoint_every=config.checkpoint_every,
                         makes_output_dir=True, dry_run=dry_run)  # fmt: skip


@contextlib.contextmanager
def weights_file(config: Production) -> Iterator[Path | None]:
    """The weights to pass by path: ``"random"`` becomes a temporary file of seeded weights."""
    if config.weights != RANDOM:
        yield config.weights
        return
    import torch

    from daskstyle.networks.catalog import random_weights

    with tempfile.TemporaryDirectory(prefix="daskstyle-weights-") as folder:
        path = Path(folder) / f"{config.network}-random-seed{config.seed}.pth"
        torch.save(random_weights(config.network, config.seed), path)
        yield path

"""Scripted productions and experiments described by TOML files (``daskstyle pipeline FILE``).

A pipeline file names its ``kind``; every key is checked before any work starts (an unknown,
missing or mistyped key, or a value that breaks its rule, ends in one :class:`InputError`
line naming the file and the key: :mod:`.config`). Relative paths resolve against the TOML
file's directory; ``content``/``style`` may say ``"example"`` (the built-in pictures) and
``weights`` may say ``"random"`` (seeded random weights of ``network``, from ``seed``; for
experiments and tests, the picture is noise).

- ``kind = "production"`` (:mod:`.production`): one :func:`daskstyle.run.painting.transfer` on the
  cluster of ``[cluster]`` (:func:`daskstyle.compute.cluster.open_client`); every field of
  :class:`daskstyle.settings.Settings` is a key. Writes ``output`` and the run directory
  (previews, ``loss.csv``).
- ``kind = "scaling"`` (:mod:`.scaling`): strong scaling (a fixed ``canvas``² for every
  worker count) and weak scaling (side ``canvas * sqrt(workers)``, rounded to 16 px) over
  ``workers`` and ``tiles``. Writes ``OUTPUT.csv`` and ``OUTPUT.png`` (:mod:`.plot`).
- ``kind = "comparison"`` (:mod:`.comparison`): the content painted once per ``[[variant]]``
  (the file's settings with the variant's keys instead, including the ablation switches of
  ``experiment``). Writes each painting, ``OUTPUT.csv``, ``OUTPUT-steps.csv`` and the
  side-by-side figure ``OUTPUT.png`` (:mod:`.sheet`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from daskstyle.core.errors import DaskstyleError, InputError
from daskstyle.run.rundir import default_workdir

from .comparison import dry_run_comparison, run_comparison
from .config import load
from .keys import Comparison, Production, Scaling, painting_path
from .production import dry_run_production, run_production
from .scaling import run_scaling, weak_side

__all__ = ["Comparison", "Production", "Scaling", "load", "painting_path", "run_directories",
           "run_pipeline", "weak_side"]  # fmt: skip
RUNNERS = {Production: run_production, Scaling: run_scaling, Comparison: run_comparison}


def run_pipeline(
    path: str | os.PathLike, echo: Callable[[str], None] = print, dry_run: bool = False
) -> list[Path]:
    """Check the pipeline file ``path``, run it, and return the files it wrote. ``dry_run``:
    echo what a production's run or a comparison's runs would do
    (:meth:`daskstyle.run.painting.RunPlan.dry_run`), write nothing."""
    config = load(path)
    if not dry_run:
        return RUNNERS[type(config)](config, echo)
    if isinstance(config, Scaling):
        raise InputError(
            f"{path}: --dry-run is for productions and comparisons, not scaling studies"
        )
    (dry_run_production if isinstance(config, Production) else dry_run_comparison)(config, echo)
    return []


def run_directories(path: str | os.PathLike) -> list[Path]:
    """The run directories of a production's or a comparison's file ``path`` (none for
    scaling studies, or for a file that does not load)."""
    try:
        config = load(path)
    except DaskstyleError:
        return []
    if isinstance(config, Production):
        return [config.workdir or default_workdir(config.output)]
    if isinstance(config, Comparison):
        return [default_workdir(painting_path(config.output, v.name)) for v in config.variant]
    return []

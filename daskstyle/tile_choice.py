"""Which tile a run paints with: the one it asks for, the one a resumed run began with, or
under ``--tile auto`` the largest that fits the memory of the machine that runs the tiles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from . import hardware, rundir
from .executor import THIS_MACHINE_SPECS
from .graph import StyleGraph
from .settings import Settings

#: ``--tile auto`` where the workers run elsewhere (SLURM, a scheduler): their memory is not
#: this machine's, so auto takes this tile and the plan asks for ``--tile``.
ELSEWHERE_TILE = 512


def run_tile(settings: Settings, graph: StyleGraph, workdir: Path, resume: bool,
             cluster: str) -> tuple[Settings, int, str | None]:  # fmt: skip
    """The run's settings, its largest tile and, under ``--tile auto``, why that tile. A
    resumed run keeps the tile it began with: the fixed tile of its settings (as runs begun
    before auto was the default did, at 512 px), else the tile auto chose then."""
    if settings.tile != "auto":
        return settings, settings.tile, None
    earlier = rundir.read_record(workdir) if resume else None
    if earlier:
        began = earlier.get("settings", {}).get("tile")
        if isinstance(began, int):
            settings = dataclasses.replace(settings, tile=began)
            return settings, began, f"tiles {began} px, as the run began"
        if isinstance(earlier.get("tile_px"), int):
            tile = earlier["tile_px"]
            return settings, tile, f"tiles auto: up to {tile} px, as the run began"
    if cluster not in THIS_MACHINE_SPECS:
        where = f"the workers of --cluster {cluster} run on other machines"
        reason = f"tiles auto: up to {ELSEWHERE_TILE} px ({where}: set --tile for their memory)"
        return settings, ELSEWHERE_TILE, reason
    tile, reason = hardware.auto_tile(graph.halo.align, settings.dtype)
    return settings, tile, f"tiles auto: up to {tile} px, {reason}"

"""What ``auto`` settings become for a run: under ``--tile auto`` the largest tile that fits
the memory of the machine that runs the tiles, under ``--precision auto`` the fastest
arithmetic it runs natively. A resumed run keeps what it began with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from daskstyle.compute import hardware
from daskstyle.compute.executor import THIS_MACHINE_SPECS
from daskstyle.engine.featurenet import PRECISIONS
from daskstyle.engine.graph import StyleGraph
from daskstyle.run import rundir
from daskstyle.settings import Settings

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
    tile, reason = hardware.auto_tile(graph.halo.align, settings.dtype, settings.precision)
    return settings, tile, f"tiles auto: up to {tile} px, {reason}"


def run_precision(settings: Settings, workdir: Path, resume: bool,
                  cluster: str) -> tuple[Settings, str | None]:  # fmt: skip
    """The run's settings with its arithmetic decided and, under ``--precision auto``, why:
    bf16 where the tiles run on this machine and it has bf16 natively (a CUDA GPU with it, a
    CPU with AVX512-BF16 or AMX), else exact; a float64 run stays exact. A resumed run keeps
    the arithmetic it began with (exact for runs begun before auto was the default)."""
    if settings.precision != "auto":
        return settings, None
    earlier = rundir.read_record(workdir) if resume else None
    began = (earlier or {}).get("settings", {}).get("precision")
    if began in PRECISIONS:
        kept = dataclasses.replace(settings, precision=began)
        return kept, f"precision {began}, as the run began"
    where = hardware.native_bf16()
    if settings.dtype != "float32":
        precision, why = "exact", f"{settings.dtype} asks for exact arithmetic"
    elif cluster not in THIS_MACHINE_SPECS:
        precision, why = "exact", (f"the workers of --cluster {cluster} run on other machines; "
                                   "--precision bf16 where they have it natively")  # fmt: skip
    elif where is not None:
        precision, why = "bf16", f"native on this machine ({where}); --precision exact for float32"
    else:
        precision, why = "exact", "this machine has no native bf16 (no CUDA, AVX512-BF16 or AMX)"
    reason = f"precision {precision} (auto): {why}"
    return dataclasses.replace(settings, precision=precision), reason

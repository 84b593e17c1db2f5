"""How a step's cost grows with the pixels of its level: the median seconds per step of each
level of finished runs, and the power law ``seconds = a * megapixels ** b`` fitted to them.

The runs are read from a comparison's ``OUTPUT-steps.csv`` (a level per variant and level) or
from a run directory (its ``loss.csv``, with the level's size read from its state). A level's
first step is left out when it has others: it also finds the learning rate, a pass more.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from daskstyle.core.errors import InputError
from daskstyle.optimise.state import LevelState
from daskstyle.run import rundir

FIELDS = ("source", "level", "width", "height", "megapixels", "steps", "seconds_per_step")


def level_times(path: Path) -> list[dict]:
    """A row per level of the runs at ``path``: a comparison's steps CSV or a run directory."""
    path = Path(path)
    if path.is_dir():
        return _run_directory(path)
    if path.suffix == ".csv":
        steps = defaultdict(list)
        for row in _read(path):
            steps[(row["variant"], int(row["level"]), int(row["width"]), int(row["height"]))].append(
                (int(row["step"]), float(row["seconds"]))
            )  # fmt: skip
        return [_row(variant, level, width, height, times)
                for (variant, level, width, height), times in steps.items()]  # fmt: skip
    raise InputError(f"{path} is neither a comparison's steps CSV nor a run directory")


def _run_directory(workdir: Path) -> list[dict]:
    if not (workdir / rundir.LOSS_CSV).is_file():
        raise InputError(f"{workdir} has no {rundir.LOSS_CSV}: it is not a run directory")
    steps = defaultdict(list)
    for row in _read(workdir / rundir.LOSS_CSV):
        if row.get("seconds"):  # a run begun before loss.csv kept seconds has none
            steps[int(row["level"])].append((int(row["step"]), float(row["seconds"])))
    rows = []
    for level, times in steps.items():
        height, width = LevelState.open(rundir.level_dir(workdir, level - 1)).canvas().shape[:2]
        rows.append(_row(workdir.name, level, width, height, times))
    return rows


def _row(source: str, level: int, width: int, height: int, times: list[tuple[int, float]]):
    later = [seconds for step, seconds in times if step > 1] or [s for _, s in times]
    return {"source": source, "level": level, "width": width, "height": height,
            "megapixels": width * height / 1e6, "steps": len(later),
            "seconds_per_step": statistics.median(later)}  # fmt: skip


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def fit_power_law(rows: list[dict]) -> tuple[float, float]:
    """``(a, b)`` of ``seconds_per_step = a * megapixels ** b``, least squares in log-log."""
    if len({row["megapixels"] for row in rows}) < 2:
        raise InputError("fitting how cost grows needs levels of at least two sizes")
    x = np.log([row["megapixels"] for row in rows])
    y = np.log([row["seconds_per_step"] for row in rows])
    b, log_a = np.polyfit(x, y, 1)
    return math.exp(log_a), float(b)


def csv_bytes(rows: list[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def cost_png(rows: list[dict], fit: tuple[float, float], title: str) -> bytes:
    """Seconds per step against megapixels, log-log, a marker colour per source, and the
    fitted line; as PNG bytes."""
    from matplotlib import ticker
    from matplotlib.figure import Figure

    a, b = fit
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.subplots()
    for source in dict.fromkeys(row["source"] for row in rows):
        mine = [row for row in rows if row["source"] == source]
        ax.plot([r["megapixels"] for r in mine], [r["seconds_per_step"] for r in mine], "o",
                label=source, alpha=0.8)  # fmt: skip
    span = np.geomspace(min(r["megapixels"] for r in rows), max(r["megapixels"] for r in rows))
    ax.plot(span, a * span**b, "k--", lw=1,
            label=f"{a:.3g} s × MP^{b:.2f} (4× the pixels: ×{4**b:.2f})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("megapixels of the level")
    ax.set_ylabel("seconds per step (median)")
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()

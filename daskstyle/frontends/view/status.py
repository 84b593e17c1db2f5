"""A run's progress for the page: each level's size and step, the loss so far, and the ETA.

The ETA is an upper estimate: the current level's remaining steps up to its ``max_iters`` at
the seconds of its recent steps, and each later level's ``max_iters`` at four times the
seconds per step of the level before (a level has at most four times its predecessor's
pixels, and a step's cost grows with them). A level that meets its stop test sooner ends
sooner.
"""

from __future__ import annotations

import csv
import io

from daskstyle.frontends.view.reading import NotServed
from daskstyle.frontends.view.sources import OmeZarrPainting, RunDirectory, TiffPainting
from daskstyle.optimise.adam import should_stop

#: Steps of a level whose seconds the ETA averages (its first step, which also finds the
#: learning rate, left out where there are others).
RECENT_STEPS = 5


def status(source: RunDirectory | TiffPainting | OmeZarrPainting) -> dict:
    """What the page shows of ``source``, as JSON-ready values."""
    if source.kind == "painting":
        h, w = source.pyramid("output")[0].levels[0].shape
        return {"kind": "painting", "images": [{"name": "output", "width": w, "height": h,
                                                "version": source.version}]}  # fmt: skip
    record = source.record()
    if record is None:
        return {"kind": "run", "waiting": True, "images": [], "levels": [], "loss": []}
    levels = [_level(source, number) for number in range(1, record["levels"] + 1)]
    loss = _loss_rows(source)
    finished = bool(record.get("finished"))
    return {
        "kind": "run",
        "waiting": False,
        "finished": finished,
        "levels": levels,
        "images": [
            {
                "name": f"level/{lv['level']}",
                "width": lv["width"],
                "height": lv["height"],
                "version": lv["version"],
            }
            for lv in levels
            if lv["started"]
        ],  # fmt: skip
        "loss": loss,
        "eta_seconds": 0.0 if finished else eta_seconds(levels, loss),
    }


def _level(source: RunDirectory, number: int) -> dict:
    attrs = source.level_attrs(number)
    if attrs is None:
        return {"level": number, "started": False, "preview": False}
    try:
        h, w = source.pyramid(f"level/{number}")[0].levels[0].shape
    except NotServed:  # between a commit and the read of its canvas
        return {"level": number, "started": False, "preview": False}
    settings, history = attrs["settings"], attrs["history"]
    mean = history[-1][1] if history else float("inf")
    return {
        "level": number,
        "started": True,
        "width": w,
        "height": h,
        "step": attrs["step"],
        "max_iters": settings["max_iters"],
        "done": should_stop(mean, attrs["step"], settings["stop"], settings["max_iters"]),
        "version": f"{attrs['step']}.{attrs['current']}",
        "preview": source.folder.exists(f"level{number}.png"),
    }


def _loss_rows(source: RunDirectory) -> list[list]:
    """[level, step, loss, seconds] of each step in ``loss.csv`` (None where not a number)."""
    try:
        text = source.loss_csv().decode("utf-8")
    except (NotServed, UnicodeDecodeError):
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            rows.append([int(row["level"]), int(row["step"]), _number(row.get("loss")),
                         _number(row.get("seconds"))])  # fmt: skip
        except (KeyError, TypeError, ValueError):
            continue
    return rows


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def eta_seconds(levels: list[dict], loss: list[list]) -> float | None:
    """Seconds left at most (see the module's note), or None before any step was timed."""
    running = [lv for lv in levels if lv["started"] and not lv["done"]]
    later = [lv for lv in levels if not lv["started"]]
    current = running[0] if running else None
    timed = {}
    for level, _, _, seconds in loss:
        if seconds is not None:
            timed.setdefault(level, []).append(seconds)
    known = [n for n in timed if current is None or n <= current["level"]]
    if not known:
        return None
    last = max(known)
    recent = timed[last][1:][-RECENT_STEPS:] or timed[last]
    per_step = sum(recent) / len(recent)
    left = 0.0
    if current is not None:
        per_step *= 4 ** (current["level"] - last)
        left += (current["max_iters"] - current["step"]) * per_step
    max_iters = current["max_iters"] if current else max(lv.get("max_iters", 0) for lv in levels)
    for _ in later:
        per_step *= 4
        left += max_iters * per_step
    return left

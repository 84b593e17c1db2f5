"""A comparison: the same content painted once per ``[[variant]]``, side by side and measured.

Each variant is a whole run (:func:`daskstyle.run.painting.plan`) with the file's settings, the
variant's keys instead (any run setting, ``style``, ``init``, and ``experiment``: the
ablation switches ``halo`` and ``gram_scope`` of docs/design.md), painting
``OUTPUT-NAME.png`` with its run directory beside it. Every run is planned and checked
before the cluster starts; then they run one after the other on one cluster, and the
comparison writes

- ``OUTPUT.csv``: a row per variant: its settings that differ, levels, steps, seconds,
  final loss, with ``seam_tile`` the seam score and (on pictures of at least 3 tiles per
  side) the per-tile colour spread of what it painted (:mod:`daskstyle.controls.seams`, on
  painting - content), and with ``float64_losses`` its
  content and style losses re-evaluated in float64 (:mod:`.evaluate`);
- ``OUTPUT-steps.csv``: a row per step of every run: its level's size and tiles, loss,
  mean change and seconds (what :mod:`.cost` fits);
- ``OUTPUT.png``: the paintings side by side with their numbers, and with ``crop`` a 1:1
  crop of each (:mod:`.sheet`).

With ``resume = true`` a variant whose painting, finished run and step rows are there is
kept, and an unfinished run continues where it stopped.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from daskstyle.controls import seams
from daskstyle.frontends.progress import Progress
from daskstyle.io import files
from daskstyle.io.images import read_image
from daskstyle.run import painting, rundir
from daskstyle.run.events import LevelStarted, Stepped
from daskstyle.run.rundir import default_workdir

from .evaluate import float64_losses
from .keys import Comparison, painting_path
from .production import weights_file
from .sheet import Panel, comparison_png

SUMMARY_FIELDS = ("variant", "painting", "changes", "levels", "steps", "seconds",
                  "seconds_per_step_last_level", "final_loss", "seam_score", "colour_spread",
                  "content_loss_float64", "style_loss_float64")  # fmt: skip
STEP_FIELDS = ("variant", "level", "width", "height", "megapixels", "tiles", "step", "loss",
               "mean_change", "seconds")  # fmt: skip


def run_comparison(config: Comparison, echo: Callable[[str], None]) -> list[Path]:
    """Paint every variant, measure them; write and return the CSVs, the figure and the
    paintings."""
    from daskstyle.compute.executor import Executor

    stem = config.output
    steps_csv = stem.with_name(f"{stem.name}-steps.csv")
    earlier = _read_rows(steps_csv) if config.resume else []
    with weights_file(config) as weights:
        plans, kept = {}, set()
        for variant in config.variant:
            plan, done = _plan(config, variant, weights, earlier)
            if done:
                kept.add(variant.name)
            else:
                plan.check()  # every run, before the cluster starts
            plans[variant.name] = plan
        stem.parent.mkdir(parents=True, exist_ok=True)
        rows = [row for row in earlier if row["variant"] in kept]
        options = config.cluster.model_dump(exclude_none=True)
        largest_tile = max(plan.tile for plan in plans.values())
        executor = Executor(**options, tile=largest_tile, dtype=config.settings.dtype)
        with executor.open() as session:
            echo(f"cluster {executor.spec}")
            for line in session.lines:
                echo(line)
            for number, (name, plan) in enumerate(plans.items(), start=1):
                what = "kept from before" if name in kept else "painting"
                echo(f"variant {number}/{len(plans)}: {name} ({what})")
                if name not in kept:
                    if plan.arithmetic is not None:
                        echo(f"  {plan.arithmetic}")
                    recorder = _StepRecorder(name, Progress(echo))
                    plan.execute(session.resources, on_event=recorder)
                    rows += recorder.rows
                    files.write_atomically(steps_csv, _csv_bytes(STEP_FIELDS, rows))
        summary = [_summary(config, variant, rows) for variant in config.variant]
        if config.float64_losses:
            for row in summary:
                echo(f"{row['variant']}: losses in float64")
                painting = stem.with_name(row["painting"])
                content_loss, style_loss = float64_losses(plans[row["variant"]], painting, weights)
                row |= {"content_loss_float64": content_loss, "style_loss_float64": style_loss}
    for row in summary:
        echo(_summary_line(row))
    paintings = [painting_path(stem, variant.name) for variant in config.variant]
    figure = stem.with_suffix(".png")
    files.write_atomically(stem.with_suffix(".csv"), _csv_bytes(SUMMARY_FIELDS, summary))
    files.write_atomically(figure, comparison_png(_panels(config, summary), config.crop,
                                                  config.column))  # fmt: skip
    return [figure, stem.with_suffix(".csv"), steps_csv, *paintings]


def dry_run_comparison(config: Comparison, echo: Callable[[str], None]) -> None:
    """Echo each variant's run as :meth:`daskstyle.run.painting.RunPlan.dry_run` says it; write
    nothing."""
    steps_csv = config.output.with_name(f"{config.output.name}-steps.csv")
    earlier = _read_rows(steps_csv) if config.resume else []
    with weights_file(config) as weights:
        for number, variant in enumerate(config.variant, start=1):
            plan, done = _plan(config, variant, weights, earlier, dry_run=True)
            what = "kept from before" if done else _changes(variant) or "as the file says"
            echo(f"variant {number}/{len(config.variant)}: {variant.name} ({what})")
            for line in () if done else plan.dry_run():
                echo(f"  {line}")


def _plan(config: Comparison, variant, weights, earlier: list[dict],
          dry_run: bool = False) -> tuple[painting.RunPlan, bool]:  # fmt: skip
    """The run of ``variant`` (planned for a dry run: downloading nothing), and whether
    ``resume`` keeps its finished painting."""
    output = painting_path(config.output, variant.name)
    workdir = default_workdir(output)
    record = rundir.read_record(workdir) if config.resume else None
    finished = record is not None and record.get("finished")
    kept = finished and output.is_file() and any(row["variant"] == variant.name for row in earlier)
    plan = painting.plan(config.content, config.styles_of(variant), output,
                    settings=config.settings_of(variant), weights=weights,
                    resume=record is not None and (kept or not finished),  # kept: planned as it ran
                    cluster=config.cluster.spec, makes_output_dir=True,
                    experiment=variant.experiment.model_dump(exclude_none=True),
                    dry_run=dry_run)  # fmt: skip
    if kept:
        rundir.check(workdir, plan.record, resume=True)  # the same run, or say what differs
        return plan, True
    return plan, False


class _StepRecorder:
    """A run's events: echoed, and each step kept as a row of ``OUTPUT-steps.csv``."""

    def __init__(self, variant: str, progress: Progress):
        self.variant, self.progress = variant, progress
        self.rows: list[dict] = []
        self.level: LevelStarted | None = None

    def __call__(self, event) -> None:
        self.progress(event)
        if isinstance(event, LevelStarted):
            self.level = event
        elif isinstance(event, Stepped):
            (height, width), level = self.level.shape, self.level
            self.rows.append({
                "variant": self.variant, "level": event.level + 1, "width": width,
                "height": height, "megapixels": width * height / 1e6, "tiles": level.tiles,
                "step": event.step, "loss": event.loss, "mean_change": event.mean_change,
                "seconds": event.seconds,
            })  # fmt: skip


def _summary(config: Comparison, variant, rows: list[dict]) -> dict:
    """The summary row of ``variant`` from its step rows and its painting."""
    mine = [row for row in rows if row["variant"] == variant.name]
    last_level = max(row["level"] for row in mine)
    painting = painting_path(config.output, variant.name)
    row = {
        "variant": variant.name, "painting": painting.name, "changes": _changes(variant),
        "levels": last_level, "steps": len(mine),
        "seconds": round(sum(row["seconds"] for row in mine), 2),
        "seconds_per_step_last_level": round(
            statistics.median(row["seconds"] for row in mine if row["level"] == last_level), 3
        ),
        "final_loss": mine[-1]["loss"], "seam_score": "", "colour_spread": "",
        "content_loss_float64": "", "style_loss_float64": "",
    }  # fmt: skip
    if config.seam_tile is not None:
        painted = read_image(painting).astype(np.float64) - read_image(config.content)
        row["seam_score"] = round(seams.seam_score(painted, config.seam_tile), 4)
        if min(painted.shape[:2]) >= 3 * config.seam_tile:  # room for the shifted grid
            row["colour_spread"] = round(seams.tile_colour_spread(painted, config.seam_tile), 4)
    return row


def _changes(variant) -> str:
    """What a variant changes, as ``key=value`` words."""
    keys = variant.model_dump(exclude_none=True, exclude={"name", "experiment"})
    keys |= variant.experiment.model_dump(exclude_none=True)
    return " ".join(f"{key}={_word(value)}" for key, value in keys.items())


def _word(value) -> str:
    if isinstance(value, list):
        return ",".join(_word(item) for item in value)
    return value.name if isinstance(value, Path) else str(value)


def _summary_line(row: dict) -> str:
    seam = f", seam score {row['seam_score']}, colour spread {row['colour_spread'] or '-'}"
    return (f"{row['variant']}: {row['steps']} steps in {row['seconds']:.0f} s, final loss "
            f"{row['final_loss']:.5g}{seam if row['seam_score'] != '' else ''}")  # fmt: skip


def _panels(config: Comparison, summary: list[dict]) -> list[Panel]:
    panels = []
    for row in summary:
        numbers = [f"{row['seconds'] / 60:.1f} min, {row['steps']} steps"]
        if row["seam_score"] != "":
            spread = row["colour_spread"]
            numbers.append(f"seam {row['seam_score']:.2f}"
                           + (f", spread {spread:.2f}" if spread != "" else ""))  # fmt: skip
        if row["content_loss_float64"] != "":
            numbers.append(f"float64: content {row['content_loss_float64']:.4g}, "
                           f"style {row['style_loss_float64']:.4g}")  # fmt: skip
        path = config.output.with_name(row["painting"])
        panels.append(Panel(path, row["variant"], tuple(numbers)))
    return panels


def _csv_bytes(fields: tuple[str, ...], rows: list[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fields)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def _read_rows(path: Path) -> list[dict]:
    """The step rows of an earlier comparison, numbers as numbers (none: no file)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("level", "width", "height", "tiles", "step"):
            row[key] = int(row[key])
        for key in ("megapixels", "loss", "mean_change", "seconds"):
            row[key] = float(row[key])
    return rows

"""Paint a production pipeline and measure it: wall time, steps and seconds per step of each
level, peak RSS (this process and its workers together) and peak disk use of the run
directory. Runs that stop (Ctrl-C, a session's end) continue where they stopped when the same
command is given again: it resumes an unfinished run directory, and the figures of every
part are kept.

    python pipelines/measured.py pipelines/paper_4k.toml

Beside the output (``results/paper_4k.tif``) it writes ``paper_4k-log.csv`` (each line of the
run with its time and part), ``paper_4k-samples.csv`` (RSS and disk every few seconds) and
``paper_4k-levels.csv``, the table of the README (also printed), from those two and the run's
loss.csv, and ``paper_4k-stages.csv``: each level's stages besides the steps (its state made,
style Grams, content target, overview, preview, output) and its median step, in seconds and
seconds per megapixel. Give ``--table`` to write and print the tables only.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

from daskstyle.frontends import terminal
from daskstyle.frontends.pipeline import load
from daskstyle.frontends.pipeline.production import run_production
from daskstyle.run import rundir

EVERY = 5.0  # seconds between samples of RSS and disk use


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and all its descendants (the cluster's workers)."""
    total = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            total += each.memory_info().rss
        except psutil.Error:
            pass
    return total


def disk_use(folder: Path) -> int:
    """Bytes of the files under ``folder`` (as allocated on disk)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _append(path: Path, header: list[str], row: list) -> None:
    new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(header)
        writer.writerow(row)


def paint(config, stem: Path) -> None:
    """Run the production (resumed when its run directory holds an unfinished run), logging
    its lines and sampling RSS and disk use; the part's number is one more than the last."""
    log, samples = Path(f"{stem}-log.csv"), Path(f"{stem}-samples.csv")
    stem.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no results/ yet
    workdir = config.workdir or rundir.default_workdir(config.output)
    unfinished = rundir.read_record(workdir) is not None and not config.output.exists()
    config = config.model_copy(update={"resume": unfinished or config.resume})
    part = 1 + max((int(r["part"]) for r in _rows(log)), default=0)
    me, done = psutil.Process(), threading.Event()

    def sample() -> None:
        while not done.wait(EVERY):
            _append(samples, ["time", "part", "rss_bytes", "disk_bytes"],
                    [f"{time.time():.1f}", part, tree_rss(me), disk_use(workdir)])  # fmt: skip

    def echo(line: str) -> None:
        print(line, flush=True)
        _append(log, ["time", "part", "line"], [f"{time.time():.1f}", part, line])

    echo(f"part {part}: {'resuming' if config.resume else 'starting'} {workdir}")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with terminal.signals_stop():  # Ctrl-C, SIGTERM: the part ends, its figures are kept
            run_production(config, echo)
    finally:
        done.set()
        sampler.join()
        echo(f"part {part}: ended")


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def level_walls(log: list[dict]) -> dict[int, float]:
    """Wall seconds of each level (1-based) over all parts: from its "level N/M" line to its
    "level N done" line, or to the end of the part it was stopped in."""
    walls: dict[int, float] = {}
    current: tuple[int, float] | None = None
    previous = None
    for row in log:
        at, line = float(row["time"]), row["line"]
        if current and row["part"] != previous["part"]:  # killed: its last line ends it
            walls[current[0]] = walls.get(current[0], 0.0) + float(previous["time"]) - current[1]
            current = None
        previous = row
        if current and (line.startswith(f"level {current[0]} done") or line.endswith("ended")):
            walls[current[0]] = walls.get(current[0], 0.0) + at - current[1]
            current = None
        if line.startswith("level ") and "/" in line.split(":")[0]:
            current = (int(line.split()[1].split("/")[0]), at)
    if current:  # the last part was killed, or still runs: its last line so far ends it
        walls[current[0]] = walls.get(current[0], 0.0) + float(previous["time"]) - current[1]
    return walls


def table(config, stem: Path) -> list[dict]:
    """Per level: size, steps, wall time, median seconds per step (leaving out each level's
    first, which also sets the learning rate); the peaks over the whole run on the last row."""
    workdir = config.workdir or rundir.default_workdir(config.output)
    steps: dict[int, list[float]] = {}
    for row in _rows(workdir / "loss.csv"):
        steps.setdefault(int(row["level"]), []).append(float(row["seconds"]))  # 1-based
    log, samples = _rows(Path(f"{stem}-log.csv")), _rows(Path(f"{stem}-samples.csv"))
    walls = level_walls(log)
    sizes = {}
    for row in log:
        words = row["line"].split()
        if row["line"].startswith("level ") and "/" in words[1]:
            sizes[int(words[1].split("/")[0])] = words[2]
    rows = []
    for level in sorted(steps):
        seconds = steps[level]
        rows.append({"level": level, "size": sizes.get(level, ""), "steps": len(seconds),
                     "wall_s": round(walls.get(level, sum(seconds)), 1),
                     "s_per_step": round(statistics.median(seconds[1:] or seconds), 2)})  # fmt: skip
    gib = 2**30
    rows.append({"level": "all", "size": "", "steps": sum(len(s) for s in steps.values()),
                 "wall_s": round(sum(row["wall_s"] for row in rows), 1), "s_per_step": "",
                 "peak_rss_gib": round(max((int(r["rss_bytes"]) for r in samples), default=0) / gib, 2),
                 "peak_disk_gib": round(max((int(r["disk_bytes"]) for r in samples), default=0) / gib, 2),
                 "parts": len({r["part"] for r in log})})  # fmt: skip
    return rows


STAGE = re.compile(r"^level (\d+): (.+) in ([\d.]+) s$")


def stage_table(config, stem: Path) -> list[dict]:
    """Per level and stage (its state made, style Grams, content target, steps, overview,
    preview, output): seconds and seconds per megapixel of the level; for the steps, the
    median step's. A stage that ran in several parts (resumed) adds up."""
    log = _rows(Path(f"{stem}-log.csv"))
    workdir = config.workdir or rundir.default_workdir(config.output)
    pixels, seconds = {}, {}
    for row in log:
        words = row["line"].split()
        if row["line"].startswith("level ") and "/" in words[1]:
            width, height = words[2].split("x")
            pixels[int(words[1].split("/")[0])] = int(width) * int(height)
        elif found := STAGE.match(row["line"]):
            key = (int(found[1]), found[2])
            seconds[key] = seconds.get(key, 0.0) + float(found[3])
    steps: dict[int, list[float]] = {}
    for row in _rows(workdir / "loss.csv"):
        steps.setdefault(int(row["level"]), []).append(float(row["seconds"]))
    for level, times in steps.items():
        seconds[(level, "step (median)")] = statistics.median(times[1:] or times)
    rows = []
    for (level, stage), spent in sorted(seconds.items()):
        megapixels = pixels.get(level, 0) / 1e6
        rows.append({"level": level, "megapixels": round(megapixels, 2), "stage": stage,
                     "seconds": round(spent, 2),
                     "s_per_mp": round(spent / megapixels, 3) if megapixels else ""})  # fmt: skip
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fields)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(", ".join(f"{k} {v}" for k, v in row.items() if v != ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a production pipeline (.toml)")
    parser.add_argument("--table", action="store_true", help="write and print the table only")
    args = parser.parse_args()
    config = load(args.file)
    stem = config.output.with_suffix("").with_suffix("")
    if not args.table:
        try:
            paint(config, stem)
        except terminal.Stopped:
            print(f"stopped; `python {' '.join(sys.argv)}` continues it")
    write_table(table(config, stem), Path(f"{stem}-levels.csv"))
    write_table(stage_table(config, stem), Path(f"{stem}-stages.csv"))


if __name__ == "__main__":
    main()

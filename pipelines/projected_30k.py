"""The projected wall time of ``pipelines/production_30k.toml`` on 8 and on 64 H100s, level by
level, from the cluster simulation (``daskstyle bench cluster --simulate``) and from figures
measured here.

    python pipelines/projected_30k.py        # about 20 minutes on 2 cores
    python pipelines/projected_30k.py --tile 4096 --csv OTHER.csv  # another tile

Each level of the production (r0 doubling to 30,000 px, its tile and checkpoint settings) is
simulated for one step with the state held in the workers' memory, as the file sets it. A
level's time is its steps times that step, plus its start: the content target (a forward to
the content layer over the level, on the GPUs, written to the run directory and its tiles'
windows read back into the workers' memory) and the level's state written (canvas and
moments, 36 bytes per pixel), at the filesystem's bandwidth. The run ends with the output,
written by one process; its seconds per megapixel are the ones measured here for a 16,384²
canvas (``docs/results/canvas_16k-stages.csv``).

Steps per level: expected, the mean of the finished levels of the paper's 4K painting here
(``docs/results/paper_4k-levels.csv``), whose levels the stop rule ended, each step as
projected; at most, ``max_iters`` steps, each as long as if nothing in it overlapped
(``at_most_step_s``). Writes ``docs/results/projected_30k.csv`` and prints it.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tomllib
from pathlib import Path

import numpy as np

from daskstyle.core import geometry
from daskstyle.frontends.cluster_simulation import Configuration, build, simulate
from daskstyle.frontends.simulated_gpus import Machines, forward_flops_per_pixel
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER, get_network
from daskstyle.run import footprint

HERE = Path(__file__).parent
RESULTS = HERE.parent / "docs" / "results"
SIDE = 30000
STATE_BYTES_PER_PIXEL = 36  # canvas and Adam's two moments, float32 RGB


def expected_steps(levels_csv: Path) -> float:
    """The mean steps of the finished levels of a painting measured here."""
    with levels_csv.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["level"] != "all"]
    finished = rows[:-1] if len(rows) > 1 else rows  # the last may still have been running
    return statistics.mean(int(row["steps"]) for row in finished)


def output_seconds_per_mp(stages_csv: Path) -> float:
    """Seconds per megapixel of writing the output, as measured on the largest level here."""
    with stages_csv.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["stage"] == "output"]
    return float(max(rows, key=lambda row: float(row["megapixels"]))["s_per_mp"])


def target_bytes(side: int, tile: int, workers: int) -> int:
    """Bytes of a level's content target written to the run directory, and of its tiles'
    windows read back to be held (float32), for a ``side``² level in ``tile``-px tiles."""
    graph, plan = build(Configuration(side, tile, workers, held=True), Machines())
    channels = graph.network.channels(DEFAULT_CONTENT_LAYER)
    cells = geometry.feature_size(side, graph.network.scale(DEFAULT_CONTENT_LAYER)) ** 2
    return cells * channels * 4 + footprint.held_target_bytes(plan, np.float32, graph)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--csv", type=Path, default=RESULTS / "projected_30k.csv")
    parser.add_argument("--tile", type=int, help="another tile than the production file's")
    args = parser.parse_args()
    production = tomllib.loads((HERE / "production_30k.toml").read_text())
    r0, tile = production["r0"], args.tile or production["tile"]
    every, at_most = production["checkpoint_every"], production["max_iters"]
    network = get_network(production["network"])
    machines = Machines()
    steps = expected_steps(RESULTS / "paper_4k-levels.csv")
    output_rate = output_seconds_per_mp(RESULTS / "canvas_16k-stages.csv")
    sides = [max(shape) for shape in geometry.level_shapes((SIDE, SIDE), r0)]
    target_flops = forward_flops_per_pixel(network, DEFAULT_CONTENT_LAYER)
    rows = []
    for workers in args.workers:
        simulated = simulate(sides, [tile], [workers], machines, network.name, every,
                             echo=lambda line: print(line, flush=True), states=(True,))  # fmt: skip
        totals = {"expected": 0.0, "at_most": 0.0}
        for figures in simulated:
            pixels = figures["size"] ** 2
            written = STATE_BYTES_PER_PIXEL * pixels + target_bytes(figures["size"], tile, workers)
            start = (machines.seconds(target_flops * pixels) / workers
                     + written / (machines.disk_gbps * 1e9))  # fmt: skip
            step, longest = figures["projected_step_s"], figures["at_most_step_s"]
            row = {"workers": workers, "tile": tile, "level_side": figures["size"],
                   "tiles": figures["tiles"],
                   "step_s": step, "step_at_most_s": longest, "bottleneck": figures["bottleneck"],
                   "start_s": round(start, 1),
                   "expected_steps": round(steps, 1), "expected_s": round(start + steps * step, 1),
                   "at_most_steps": at_most, "at_most_s": round(start + at_most * longest, 1)}  # fmt: skip
            totals["expected"] += row["expected_s"]
            totals["at_most"] += row["at_most_s"]
            rows.append(row)
        output = output_rate * SIDE**2 / 1e6
        rows.append({"workers": workers, "tile": tile, "level_side": "output",
                     "start_s": round(output, 1), "expected_s": round(output, 1),
                     "at_most_s": round(output, 1)})  # fmt: skip
        rows.append({"workers": workers, "tile": tile, "level_side": "all",
                     "expected_s": round(totals["expected"] + output, 1),
                     "at_most_s": round(totals["at_most"] + output, 1)})  # fmt: skip
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with args.csv.open("w", newline="") as file:
        writer = csv.DictWriter(file, fields)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(", ".join(f"{key} {value}" for key, value in row.items()))
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()

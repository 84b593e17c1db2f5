"""daskstyle's tiled iteration against the peers' whole-image float32 PyTorch iteration, in one
run on this machine: seconds per step and peak RSS of each way, per network and size.

    python pipelines/speed_table.py                   # docs/performance.md's table (about 30 min here)
    python pipelines/speed_table.py --sizes 64 --rss-size 0 --steps 2   # a quick check

Each measurement runs in a fresh process (its own peak RSS) with seeded random pictures and
weights (time does not depend on them). A step's seconds are the median of the steps after the
first (which also sets the learning rate, and under ``--gram lagged`` runs the level's one Gram
pass). The whole-image way runs twice: as the peers run it, the reference of every ratio, and
with the malloc settings of daskstyle's workers (daskstyle/compute/allocator.py); the tiled ways run
as daskstyle runs them, at ``--tile`` and, for bf16 and bf16 + lagged, at the tile ``--tile
auto`` chooses here where it differs. Writes ``pipelines/results/speed.csv`` and prints the table as
Markdown; the last row shows that the peak RSS of a tiled step does not grow with the canvas.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import whole_image_pytorch

from daskstyle.compute import allocator
from daskstyle.frontends.bench import iteration_figures, level_tile

RESULTS = Path(__file__).parent / "results"
#: (label, precision, gram) of the tiled ways measured.
TILED = (
    ("exact", "exact", "exact"),
    ("bf16", "bf16", "exact"),
    ("bf16 + lagged", "bf16", "lagged"),
)
#: (label, with daskstyle's malloc settings) of the whole-image ways; the first is the peers'.
WHOLE = (
    ("whole-image PyTorch float32", False),
    ("whole-image, daskstyle's malloc", True),
)
FIELDS = ("network", "size", "way", "tile", "seconds_per_step", "vs_whole_image", "peak_mib")


def _whole_image(size: int, network: str, steps: int, reuse_freed_memory: bool) -> dict:
    context = multiprocessing.get_context("spawn")
    environment = allocator.starting_workers() if reuse_freed_memory else contextlib.nullcontext()
    with environment, ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(
            whole_image_pytorch.measure, size, network, steps, "exact", True
        ).result()


def _median_after_first(seconds: list[float]) -> float:
    return statistics.median(seconds[1:] or seconds)


def measure(networks, sizes, tile: int, steps: int, rss_size: int, echo=print) -> list[dict]:
    rows = []
    for size in sizes:
        for network in networks:
            first = len(rows)
            for way, reuse in WHOLE:
                whole = _whole_image(size, network, steps, reuse)
                rows.append(dict(network=network, size=size, way=way, tile="",
                                 seconds_per_step=_median_after_first(whole["seconds"]),
                                 peak_mib=whole["peak"]))  # fmt: skip
                echo(_line(rows[-1], rows[first]["seconds_per_step"]))
            auto = level_tile(size, "auto")
            at_auto = [(way, auto) for way in TILED[1:]] if auto != tile else []
            ways = [*((way, tile) for way in TILED), *at_auto]
            for (label, precision, gram), side in ways:
                done = iteration_figures(size, side, network, steps, precision, gram)
                seconds = _median_after_first([s["seconds"] for s in done])
                rows.append(dict(network=network, size=size, way=f"daskstyle {label}", tile=side,
                                 seconds_per_step=seconds, peak_mib=max(s["peak"] for s in done)))  # fmt: skip
                echo(_line(rows[-1], rows[first]["seconds_per_step"]))
            for row in rows[first:]:
                row["vs_whole_image"] = row["seconds_per_step"] / rows[first]["seconds_per_step"]
    if rss_size:
        network = networks[0]
        steps_done = iteration_figures(rss_size, tile, network, 2, "bf16", "lagged")
        rows.append(dict(network=network, size=rss_size, way="daskstyle bf16 + lagged", tile=tile,
                         seconds_per_step=steps_done[-1]["seconds"], vs_whole_image="",
                         peak_mib=max(s["peak"] for s in steps_done)))  # fmt: skip
        echo(_line(rows[-1], None))
    return rows


def _line(row: dict, reference: float | None) -> str:
    ratio = f"{row['seconds_per_step'] / reference:.2f}x" if reference else ""
    return (f"{row['network']:>10} {row['size']:>5}² {row['way']:<28} "
            f"{row['seconds_per_step']:7.1f} s {ratio:>6}  peak RSS {row['peak_mib']:7,.0f} MiB")  # fmt: skip


def markdown(rows: list[dict]) -> str:
    lines = [
        "| network | canvas | way | s/step | vs whole image | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['vs_whole_image']:.2f}×" if r["vs_whole_image"] != "" else ""
        lines.append(f"| {r['network']} | {r['size']}² | {r['way']} | {r['seconds_per_step']:.1f} "
                     f"| {ratio} | {r['peak_mib'] / 1024:.2f} GiB |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["hed-vgg16", "vgg19"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024, 2048])
    parser.add_argument("--tile", type=int, default=512, help="core tile side in px (512)")
    parser.add_argument("--steps", type=int, default=3, help="steps per measurement (3)")
    parser.add_argument("--rss-size", type=int, default=4096,
                        help="canvas side of the last row's peak RSS (0: none)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "speed.csv")
    args = parser.parse_args()
    rows = measure(args.networks, args.sizes, args.tile, args.steps, args.rss_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(markdown(rows))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Seconds per step against megapixels per level, from finished runs, with the fitted power
law (the seed paper reports 4.47 times the time for 4 times the pixels, 4K to 8K).

    python pipelines/cost_vs_pixels.py pipelines/results/*-steps.csv RUN_DIRECTORY ... \
        --out pipelines/results/cost

Each path is a comparison's OUTPUT-steps.csv or a run directory (OUTPUT.daskstyle). Writes
OUT.csv (a row per level) and OUT.png (log-log, the fit), and prints the fit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daskstyle.frontends.pipeline import cost
from daskstyle.io.files import write_atomically


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="steps CSVs and run directories")
    parser.add_argument("--out", type=Path, required=True, help="stem of OUT.csv and OUT.png")
    parser.add_argument("--title", default="cost of a step against the pixels of its level")
    args = parser.parse_args()
    rows = [row for path in args.paths for row in cost.level_times(path)]
    a, b = cost.fit_power_law(rows)
    for row in rows:
        print(f"{row['source']} level {row['level']}: {row['width']}x{row['height']} px, "
              f"{row['seconds_per_step']:.2f} s per step (median of {row['steps']})")  # fmt: skip
    print(
        f"seconds per step = {a:.3g} * megapixels^{b:.3f}: 4 times the pixels cost {4**b:.2f} times"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(args.out.with_suffix(".csv"), cost.csv_bytes(rows))
    write_atomically(args.out.with_suffix(".png"), cost.cost_png(rows, (a, b), args.title))
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

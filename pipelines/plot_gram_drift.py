"""The figure of docs/results/gram_drift.csv: how far each style layer's Gram error moved per
step, relative to its size (``daskstyle.optimise.level.gram_drift``), against the threshold below which
``--gram lagged`` lags. The CSV was logged from a run of `pipelines/lagged.toml`'s photograph
(1024 x 640 px in one level, 512-px tiles, hed-vgg16) under ``--gram lagged`` with a threshold of 0,
so that every step was exact and kept its Grams (stopped after 31 steps).

    python pipelines/plot_gram_drift.py docs/results/gram_drift.csv docs/results/gram_drift.png
"""

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from daskstyle.optimise.level import LAG_BELOW  # noqa: E402

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    args = parser.parse_args()
    rows = list(csv.DictReader(open(args.csv)))
    steps = [int(row["step"]) for row in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    for layer in LAYERS:
        ax.plot(steps, [float(row[layer]) for row in rows], lw=1, label=layer)
    ax.plot(steps, [float(row["drift"]) for row in rows], "k", lw=2, label="drift (largest)")
    ax.axhline(LAG_BELOW, color="r", ls="--", lw=1, label=f"LAG_BELOW = {LAG_BELOW:.0%}")
    ax.set_yscale("log")
    ax.set_xlabel("step (its move of the canvas)")
    ax.set_ylabel("‖ΔĜ‖ / ‖Ĝ(s) − Ĝ(p)‖")
    ax.set_title("Gram error drift per step, 1024×640 photograph, hed-vgg16, exact steps",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(args.png)


if __name__ == "__main__":
    main()

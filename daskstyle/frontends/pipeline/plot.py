"""The figure of a scaling study: time per iteration, tiles per second and efficiency against
workers, a line per tile size (colour) and mode (solid strong, dashed weak)."""

from __future__ import annotations

import importlib.util
import io

from daskstyle.core.errors import DaskstyleError

from .keys import MODES

PANELS = (("seconds_per_iteration", "seconds per iteration"),
          ("tiles_per_second", "tiles per second"), ("efficiency", "efficiency"))  # fmt: skip
LINE_STYLES = {"strong": ("-", "o"), "weak": ("--", "s")}  # line and marker


def require_matplotlib() -> None:
    """Raise before a study starts when matplotlib, which draws its figure, is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise DaskstyleError("a scaling study plots with matplotlib: pip install matplotlib")


def scaling_png(rows: list[dict], title: str) -> bytes:
    """The figure of a study's CSV ``rows`` (with efficiency), as PNG bytes."""
    from matplotlib.figure import Figure  # no pyplot: the backend of the process is left alone

    figure = Figure(figsize=(15, 5.2), layout="constrained")
    for ax, (field, label) in zip(figure.subplots(1, 3), PANELS):
        _draw_panel(ax, rows, field, label)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6),
                  fontsize="small")  # fmt: skip
    figure.suptitle(title, fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _draw_panel(ax, rows: list[dict], field: str, label: str) -> None:
    import matplotlib
    from matplotlib import ticker

    colours = matplotlib.colormaps["tab10"]
    for mode in MODES:
        for i, tile in enumerate(sorted({r["tile"] for r in rows})):
            line = sorted((r for r in rows if r["mode"] == mode and r["tile"] == tile),
                          key=lambda r: r["workers"])  # fmt: skip
            if line:
                style, marker = LINE_STYLES[mode]
                ax.plot([r["workers"] for r in line], [r[field] for r in line], style,
                        marker=marker, color=colours(i % 10), label=f"{mode}, tile {tile}")  # fmt: skip
    values = [r[field] for r in rows]
    if field == "efficiency":
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, max(1.2, max(values) * 1.05))
    elif max(values) > 10 * min(values):  # a wide range: log scale, plain labels
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.LogFormatter())
        ax.yaxis.set_minor_formatter(ticker.LogFormatter(minor_thresholds=(2, 0.5)))
    else:
        ax.set_ylim(0, max(values) * 1.1)
    workers = sorted({r["workers"] for r in rows})
    if len(workers) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(workers, [str(w) for w in workers])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("workers")
    ax.set_title(label)
    ax.grid(True, alpha=0.3)

"""Scripted productions and experiments described by TOML files (``daskstyle pipeline FILE``).

A pipeline file names its ``kind``; every key is checked before any work starts (unknown,
missing or mistyped keys end in one :class:`InputError` line naming the key and the file).
Relative paths resolve against the TOML file's directory; ``content``/``style`` may say
``"example"`` (the built-in pictures) and ``weights`` may say ``"random"`` (seeded random
weights of ``network``, from ``seed``; for experiments and tests, the picture is noise).

- ``kind = "production"``: one :func:`daskstyle.run.transfer` on the cluster of ``[cluster]``
  (:func:`daskstyle.cluster.open_client`); every field of :class:`daskstyle.run.Settings` is a
  key. Writes ``output`` and the run directory (previews, ``loss.csv``).
- ``kind = "scaling"``: strong scaling (a fixed ``canvas``² for every worker count) and weak
  scaling (side ``canvas * sqrt(workers)``, rounded to 16 px) over ``workers`` and ``tiles``.
  Each configuration runs ``warmup`` + ``iterations`` real iterations (Gram pass, gradient
  pass, chunked Adam on a temporary zarr level: what :mod:`daskstyle.run` does per step) on a
  ``LocalCluster`` of that many worker processes, on synthetic seeded content and style.
  Writes ``OUTPUT.csv`` and ``OUTPUT.png`` (time per iteration, tiles per second, efficiency).

Efficiency is measured against the smallest worker count ``n0`` (1 in the shipped files):
strong ``n0 * T(n0) / (n * T(n))``, weak ``T(n0) / T(n)``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.util
import io as _io
import math
import os
import shutil
import statistics
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from . import footprint, run
from .errors import DaskstyleError, InputError
from .kernels import PRECISIONS

EXAMPLE = "example"
RANDOM = "random"
MODES = ("strong", "weak")
DTYPES = ("float32", "float64")
CLUSTER_SPECS = ("local", "slurm", "threads", "sync")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
WEAK_ROUNDING = 16  # weak-scaling canvas sides are rounded to this many px
_REQUIRED = object()

Echo = Callable[[str], None]


def run_pipeline(path: str | os.PathLike, echo: Echo = print, dry_run: bool = False) -> list[Path]:
    """Check the pipeline file ``path``, run it, and return the files it wrote. ``dry_run``:
    echo what a production would do (:func:`daskstyle.run.dry_run`), write nothing."""
    config = load(path)
    kind = config.pop("kind")
    if dry_run:
        if kind != "production":
            raise InputError(f"{path}: --dry-run is for productions, this is a {kind} study")
        with _weights_file(config) as weights:
            settings = _settings(config)
            for line in run.dry_run(config["content"], config["style"], config["output"],
                                    settings=settings, weights=weights, workdir=config["workdir"],
                                    resume=config["resume"], makes_output_dir=True):  # fmt: skip
                echo(line)
        return []
    return {"production": run_production, "scaling": run_scaling}[kind](config, echo)


# --- the file and its keys ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Key:
    what: str  # "a whole number", for the message
    check: Callable[[object], bool]
    default: object = _REQUIRED
    resolve: bool = False  # a path, relative to the TOML file's directory


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive(v) -> bool:
    return _is_int(v) and v > 0


def _positive_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(_positive(x) for x in v)


def _text_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


def _text(v) -> bool:
    return isinstance(v, str) and bool(v)


def _bool(v) -> bool:
    return isinstance(v, bool)


def _key(kind: str, default=_REQUIRED, resolve: bool = False) -> _Key:
    check, what = {
        "int": (_positive, "a positive whole number"),
        "number": (_number, "a number"),
        "bool": (_bool, "true or false"),
        "text": (_text, "a string"),
        "ints": (_positive_list, "a non-empty list of positive whole numbers"),
        "texts": (_text_list, "a non-empty list of strings"),
        "memory": (lambda v: _text(v) or _positive(v), 'a size such as "8GB", or bytes'),
    }[kind]
    return _Key(what, check, default, resolve)


def _settings_keys() -> dict[str, _Key]:
    """One key per field of :class:`run.Settings`, typed by its default (one source of truth)."""
    kinds = {bool: "bool", int: "int", float: "number", str: "text", type(None): "text"}
    return {
        f.name: _key(kinds[type(f.default)], f.default) for f in dataclasses.fields(run.Settings)
    }


CLUSTER_KEYS = {
    "spec": _key("text", "local"),
    "workers": _key("int", None),
    "threads_per_worker": _key("int", None),
    "memory_limit": _key("memory", None),
    "jobs": _key("int", None),
    "config": _key("text", None, resolve=True),
    "tls": _key("bool", False),
    "dashboard": _key("bool", True),
}

PRODUCTION_KEYS = {
    "kind": _key("text"),
    "content": _key("text", resolve=True),
    "style": _key("text", resolve=True),
    "output": _key("text", resolve=True),
    "workdir": _key("text", None, resolve=True),
    "resume": _key("bool", False),
    "weights": _key("text", None, resolve=True),
    "seed": _Key("a whole number", _is_int, 0),
    **_settings_keys(),
    "cluster": _Key("a table", lambda v: isinstance(v, dict), {}),
}

SCALING_KEYS = {
    "kind": _key("text"),
    "output": _key("text", resolve=True),
    "canvas": _key("int"),
    "workers": _key("ints"),
    "tiles": _key("ints"),
    "modes": _key("texts", list(MODES)),
    "iterations": _key("int", 3),
    "warmup": _key("int", 1),
    "threads_per_worker": _key("int", 1),
    "memory_limit": _key("memory", None),
    "network": _key("text", "vgg19"),
    "weights": _key("text", RANDOM, resolve=True),
    "seed": _Key("a whole number", _is_int, 0),
    "content_layer": _key("text", None),
    "style_layers": _key("texts", None),
    "style_side": _key("int", 256),
    "dtype": _key("text", "float32"),
    "precision": _key("text", "exact"),
    "workdir": _key("text", None, resolve=True),
}

KINDS = {"production": PRODUCTION_KEYS, "scaling": SCALING_KEYS}


def load(path: str | os.PathLike) -> dict:
    """The checked contents of a pipeline file, defaults filled in and paths resolved."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read pipeline file {path}: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid TOML: {_one_line(err)}") from None
    kind = raw.get("kind")
    if kind not in KINDS:
        what = "has no 'kind'" if kind is None else f"has kind = {kind!r}"
        raise InputError(f'{path} {what}: say kind = "production" or kind = "scaling"')
    config = _typed(raw, KINDS[kind], path, path.resolve().parent)
    if kind == "production":
        config["cluster"] = _typed(
            config["cluster"], CLUSTER_KEYS, path, path.resolve().parent, "cluster."
        )
        _check_production(config, path)
    else:
        _check_scaling(config, path)
    return config


def _typed(raw: dict, keys: dict[str, _Key], path: Path, base: Path, prefix: str = "") -> dict:
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise InputError(
            f"{path}: unknown key '{prefix}{unknown[0]}' (known keys: {', '.join(keys)})"
        )
    config = {}
    for name, key in keys.items():
        if name not in raw:
            if key.default is _REQUIRED:
                raise InputError(f"{path}: missing key '{prefix}{name}' ({key.what})")
            config[name] = key.default
            continue
        value = raw[name]
        if not key.check(value):
            raise InputError(f"{path}: {prefix}{name} must be {key.what}, not {value!r}")
        if key.check is _number:
            value = float(value)
        config[name] = _resolve(value, base) if key.resolve else value
    return config


def _resolve(value: str, base: Path) -> Path | str:
    if value in (EXAMPLE, RANDOM):
        return value
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _fail(path: Path, key: str, message: str):
    raise InputError(f"{path}: {key} {message}")


def _check_common(config: dict, path: Path) -> None:
    from .networks import NETWORKS

    network = config["network"]
    if network is not None and network not in NETWORKS:
        _fail(path, "network", f"must be one of {', '.join(NETWORKS)}, not {network!r}")
    if config["weights"] == RANDOM and network is None:
        _fail(path, "weights", '= "random" needs a network (say network = "vgg19")')
    if isinstance(config["weights"], Path) and not config["weights"].is_file():
        _fail(path, "weights", f"names {config['weights']}, which does not exist")
    if config["dtype"] not in DTYPES:
        _fail(path, "dtype", f"must be float32 or float64, not {config['dtype']!r}")
    if config.get("precision", "exact") not in PRECISIONS:
        _fail(
            path,
            "precision",
            f"must be one of {', '.join(PRECISIONS)}, not {config['precision']!r}",
        )


def _check_tile(path: Path, key: str, tile: int) -> None:
    from .geometry import TILE_MULTIPLE

    if tile % TILE_MULTIPLE:
        _fail(path, key, f"must be multiples of {TILE_MULTIPLE} px, not {tile}")


def _check_production(config: dict, path: Path) -> None:
    _check_common(config, path)
    spec = config["cluster"]["spec"]
    if spec.endswith(".json"):
        config["cluster"]["spec"] = str(_resolve(spec, path.resolve().parent))
    elif spec not in CLUSTER_SPECS and not spec.startswith(("tcp://", "tls://")):
        _fail(path, "cluster.spec", f"must be {', '.join(CLUSTER_SPECS)}, tcp://HOST:PORT, "
                                    f"tls://HOST:PORT or a scheduler file .json, not {spec!r}")  # fmt: skip
    slurm_config = config["cluster"]["config"]
    if slurm_config is not None and not slurm_config.is_file():
        _fail(path, "cluster.config", f"names {slurm_config}, which does not exist")
    _check_tile(path, "tile", config["tile"])
    for name in ("content", "style"):
        if config[name] == EXAMPLE:
            config[name] = run.EXAMPLE_CONTENT if name == "content" else run.EXAMPLE_STYLE
        elif not Path(config[name]).is_file():
            _fail(path, name, f'names {config[name]}, which does not exist (or say "example")')
    output = config["output"]
    if not isinstance(output, Path) or output.suffix.lower() not in IMAGE_SUFFIXES:
        _fail(path, "output", f"must end in {', '.join(IMAGE_SUFFIXES)}, not {str(output)!r}")
    if config["pyramid"] and output.suffix.lower() not in (".tif", ".tiff"):
        _fail(path, "pyramid", "= true needs a .tif output")


def _check_scaling(config: dict, path: Path) -> None:
    from .networks import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, get_network

    _check_common(config, path)
    for tile in config["tiles"]:
        _check_tile(path, "tiles", tile)
    bad = [m for m in config["modes"] if m not in MODES]
    if bad:
        _fail(path, "modes", f"may hold only {' and '.join(MODES)}, not {bad[0]!r}")
    if config["network"] is None:
        _fail(path, "network", "must name a network")
    config["content_layer"] = config["content_layer"] or DEFAULT_CONTENT_LAYER
    config["style_layers"] = config["style_layers"] or list(DEFAULT_STYLE_LAYERS)
    network = get_network(config["network"])
    for name in (config["content_layer"], *config["style_layers"]):
        if name not in network.layer_names:
            _fail(
                path, "content_layer/style_layers", f"name {name!r}, not a layer of {network.name}"
            )
    if importlib.util.find_spec("matplotlib") is None:
        raise DaskstyleError(
            f"{path}: a scaling study plots with matplotlib: pip install matplotlib"
        )
    config["workers"] = sorted(set(config["workers"]))
    config["tiles"] = sorted(set(config["tiles"]))
    output = Path(config["output"])
    config["output"] = output.with_suffix("") if output.suffix in (".csv", ".png") else output


# --- production -----------------------------------------------------------------------------------


def run_production(config: dict, echo: Echo = print) -> list[Path]:
    """Run the checked production ``config`` (see :func:`load`); return the files written."""
    import dask

    from .cluster import dashboard_link, has_gpus, open_client

    settings = _settings(config)
    output = config["output"]
    output.parent.mkdir(parents=True, exist_ok=True)
    cluster = dict(config["cluster"])
    spec = cluster.pop("spec")
    cluster = {k: v for k, v in cluster.items() if v is not None}
    scheduler = {"scheduler": "synchronous"} if spec == "sync" else {}
    progress = _Progress(echo)
    pictures = config["content"], config["style"], output
    with _weights_file(config) as weights:
        run.check_run(*pictures, settings=settings, weights=weights, workdir=config["workdir"],
                      resume=config["resume"])  # fmt: skip
        with (
            dask.config.set(scheduler),
            open_client(spec, max_tasks=run.tiles_in_memory(settings), **cluster) as client,
        ):
            link = dashboard_link(client)
            echo(f"cluster {spec}" + (f": Dask dashboard {link}" if link else ""))
            resources = {"GPU": 1} if has_gpus(client) else None
            run.transfer(*pictures, settings=settings, weights=weights,
                         workdir=config["workdir"], resume=config["resume"],
                         resources=resources, on_event=progress)  # fmt: skip
    workdir = config["workdir"] or run.default_workdir(output)
    return [output, *progress.previews, workdir / "loss.csv"]


def _settings(config: dict) -> run.Settings:
    return run.Settings(**{f.name: config[f.name] for f in dataclasses.fields(run.Settings)})


@contextlib.contextmanager
def _weights_file(config: dict):
    """The weights to pass by path: ``"random"`` becomes a temporary file of seeded weights."""
    if config["weights"] != RANDOM:
        yield config["weights"]
        return
    import torch

    from .networks import random_weights

    with tempfile.TemporaryDirectory(prefix="daskstyle-weights-") as folder:
        path = Path(folder) / f"{config['network']}-random-seed{config['seed']}.pth"
        torch.save(random_weights(config["network"], config["seed"]), path)
        yield path


class _Progress:
    """A run's events as one line each."""

    def __init__(self, echo: Echo):
        self.echo = echo
        self.previews: list[Path] = []

    def __call__(self, event) -> None:
        if isinstance(event, run.LevelStarted):
            (h, w), tiles = event.shape, run.counted(event.tiles, "tile")
            self.echo(f"level {event.level + 1}/{event.levels}: {w}x{h} px, {tiles}, "
                      f"from step {event.step} to at most {event.max_iters}")  # fmt: skip
        elif isinstance(event, run.Stepped):
            self.echo(f"level {event.level + 1} step {event.step}: loss {event.loss:.5g}, "
                      f"mean change {event.mean_change:.3f}, {event.seconds:.2f} s")  # fmt: skip
        elif isinstance(event, run.LevelFinished):
            self.previews.append(event.preview)
            self.echo(f"level {event.level + 1} done: preview {event.preview}")
        elif isinstance(event, run.Finished):
            self.echo(f"wrote {event.output} (run directory {event.workdir})")


# --- scaling --------------------------------------------------------------------------------------

CSV_FIELDS = (
    "mode", "workers", "threads_per_worker", "tile", "canvas", "tiles_per_iteration",
    "iterations", "seconds_per_iteration", "tiles_per_second", "efficiency",
)  # fmt: skip


def weak_side(canvas: int, workers: int) -> int:
    """Canvas side for weak scaling: area proportional to ``workers``, rounded to 16 px."""
    return max(WEAK_ROUNDING, round(canvas * math.sqrt(workers) / WEAK_ROUNDING) * WEAK_ROUNDING)


def run_scaling(config: dict, echo: Echo = print) -> list[Path]:
    """Run the checked scaling ``config`` (see :func:`load`); write and return CSV and PNG."""
    if config["weights"] == RANDOM:
        from .networks import random_weights

        config = {**config, "weights": random_weights(config["network"], config["seed"])}
    graph = _scaling_graph(config)
    echo(f"scaling: {graph.network.name} {', '.join(graph.spec.layers)}, halo {graph.halo.total} px, "
         f"{config['iterations']} timed iterations after {config['warmup']} warm-up")  # fmt: skip
    output, root = config["output"], config["workdir"]
    footprint.require_free(Path(root or tempfile.gettempdir()), _largest_state(graph, config),
                     option=" (workdir)")  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="daskstyle-scaling-", dir=root) as folder:
        for workers in config["workers"]:
            rows += _scaling_at(workers, config, Path(folder), echo)
    rows = _with_efficiency(rows)
    csv_path, png_path = (
        output.with_name(output.name + ".csv"),
        output.with_name(output.name + ".png"),
    )
    _write_atomic(csv_path, _csv_text(rows).encode())
    _write_atomic(png_path, _plot_png(rows, _plot_title(graph, config)))
    echo(f"wrote {csv_path} and {png_path}")
    return [csv_path, png_path]


def _largest_state(graph, config: dict) -> int:
    """Bytes on disk of the largest synthetic level of a study (one exists at a time)."""
    from .api import make_plan

    sides = {config["canvas"]}
    if "weak" in config["modes"]:
        sides |= {weak_side(config["canvas"], workers) for workers in config["workers"]}
    plans = [make_plan((s, s), t, graph.halo.align) for s in sides for t in config["tiles"]]
    return max(footprint.running_bytes(plan, config["dtype"], graph) for plan in plans)


def _scaling_graph(config: dict, resources: dict | None = None):
    """The StyleGraph of a scaling study; built under a client, its weights go to the workers
    once (as in a production)."""
    from .api import style_graph

    return style_graph(
        network=config["network"], weights=config["weights"], content_layer=config["content_layer"],
        style_layers=config["style_layers"], dtype=config["dtype"], precision=config["precision"],
        resources=resources,
    )  # fmt: skip


def _scaling_at(workers: int, config: dict, folder: Path, echo: Echo) -> list[dict]:
    """Every (mode, tile) configuration on one LocalCluster of ``workers`` processes."""
    import dask

    from .cluster import has_gpus, open_client

    with open_client(
        "local",
        workers=workers,
        threads_per_worker=config["threads_per_worker"],
        memory_limit=config["memory_limit"],
        dashboard=False,
    ) as client:
        resources = {"GPU": 1} if has_gpus(client) else None
        graph = _scaling_graph(config, resources)
        with dask.config.set({"optimization.fuse.active": False} if resources else {}):
            return [
                row
                for tile in config["tiles"]
                for row in _tile_rows(graph, workers, tile, config, folder, echo)
            ]


def _tile_rows(graph, workers: int, tile: int, config: dict, folder: Path, echo: Echo):
    """A row per mode at one worker count and tile size (strong and weak are the same
    configuration at one worker: it runs once)."""
    timed: dict[int, list[float]] = {}  # canvas side -> seconds of each timed iteration
    rows = []
    for mode in config["modes"]:
        side = config["canvas"] if mode == "strong" else weak_side(config["canvas"], workers)
        if side not in timed:
            timed[side] = _time_iterations(graph, side, tile, config, folder)
        seconds, tiles = statistics.median(timed[side]), _tile_count(side, tile)
        rows.append({
            "mode": mode, "workers": workers, "threads_per_worker": config["threads_per_worker"],
            "tile": tile, "canvas": side, "tiles_per_iteration": tiles,
            "iterations": len(timed[side]), "seconds_per_iteration": seconds,
            "tiles_per_second": tiles / seconds,
        })  # fmt: skip
        count = run.counted(tiles, "tile")
        echo(f"{mode:>6} {workers:3d} workers x {config['threads_per_worker']} threads, "
             f"tile {tile:5d}, {side}x{side} px, {count:>10}: {seconds:8.3f} s/iteration, "
             f"{tiles / seconds:8.2f} tiles/s")  # fmt: skip
    return rows


def _tile_count(side: int, tile: int) -> int:
    return math.ceil(side / tile) ** 2


def _time_iterations(graph, side: int, tile: int, config: dict, folder: Path) -> list[float]:
    """Seconds of each timed iteration of the real engine on a fresh synthetic level."""
    import dask
    import dask.array as da
    import numpy as np

    from .api import make_plan
    from .graph import as_tiled
    from .optim import AdamSettings, LevelState

    plan = make_plan((side, side), tile, graph.halo.align)
    rng = np.random.default_rng(config["seed"])
    style = rng.uniform(0, 255, (config["style_side"], config["style_side"], 3)).astype(np.float32)
    style_tile = tile if tile < config["style_side"] else None
    style_plan = make_plan(style.shape[:2], style_tile, graph.halo.align)
    (targets,) = dask.compute(graph.normalised_grams(as_tiled(style, style_plan), style_plan))
    content = da.random.default_rng(config["seed"]).uniform(
        0, 255, (side, side, 3), chunks=(*plan.chunks, 3)
    )
    steps = config["warmup"] + config["iterations"]
    adam = AdamSettings(max_iters=steps + 1, stop_condition=0.0)
    path = folder / f"level-{side}-{tile}"
    state = LevelState.create(path, content, content, plan, adam, dtype=config["dtype"])
    seconds = []
    try:
        target = run.content_target(path / "content_target", graph, state, plan)  # as run does
        for _ in range(steps):
            start = time.perf_counter()
            loss, grad = graph.loss_and_grad(state.canvas_store(), target, plan, targets)
            state.advance(grad, loss)
            seconds.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return seconds[config["warmup"] :]


def _with_efficiency(rows: list[dict]) -> list[dict]:
    """Add efficiency against the smallest worker count of the same mode and tile size."""
    base = {}
    for row in sorted(rows, key=lambda r: r["workers"]):
        base.setdefault((row["mode"], row["tile"]), row)
    for row in rows:
        first = base[(row["mode"], row["tile"])]
        ratio = first["seconds_per_iteration"] / row["seconds_per_iteration"]
        if row["mode"] == "strong":
            ratio *= first["workers"] / row["workers"]
        row["efficiency"] = ratio
    return rows


def _csv_text(rows: list[dict]) -> str:
    text = _io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return text.getvalue()


def _plot_title(graph, config: dict) -> str:
    layers = ", ".join(graph.spec.layers)
    return (f"{graph.network.name} ({layers}), {config['dtype']}; strong: {config['canvas']}² canvas, "
            f"weak: {config['canvas']}² per worker; {config['threads_per_worker']} thread(s) per "
            f"worker, {os.cpu_count()} CPUs")  # fmt: skip


def _plot_png(rows: list[dict], title: str) -> bytes:
    """Time per iteration, tiles per second and efficiency against workers, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import ticker
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 5.2), layout="constrained")
    axes = figure.subplots(1, 3)
    panels = (("seconds_per_iteration", "seconds per iteration"),
              ("tiles_per_second", "tiles per second"), ("efficiency", "efficiency"))  # fmt: skip
    tiles = sorted({r["tile"] for r in rows})
    workers = sorted({r["workers"] for r in rows})
    colours = matplotlib.colormaps["tab10"]
    styles = {"strong": ("-", "o"), "weak": ("--", "s")}
    for ax, (field, label) in zip(axes, panels):
        for mode in MODES:
            for i, tile in enumerate(tiles):
                line = sorted((r for r in rows if r["mode"] == mode and r["tile"] == tile),
                              key=lambda r: r["workers"])  # fmt: skip
                if line:
                    ls, marker = styles[mode]
                    ax.plot([r["workers"] for r in line], [r[field] for r in line], ls,
                            marker=marker, color=colours(i % 10), label=f"{mode}, tile {tile}")  # fmt: skip
        if field == "efficiency":
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.set_ylim(0, max(1.2, max(r["efficiency"] for r in rows) * 1.05))
        else:
            values = [r[field] for r in rows]
            if max(values) > 10 * min(values):  # a wide range: log scale, plain labels
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ticker.LogFormatter())
                ax.yaxis.set_minor_formatter(ticker.LogFormatter(minor_thresholds=(2, 0.5)))
            else:
                ax.set_ylim(0, max(values) * 1.1)
        if len(workers) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(workers, [str(w) for w in workers])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_xlabel("workers")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6),
                  fontsize="small")  # fmt: skip
    figure.suptitle(title, fontsize="medium")
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DaskstyleError(f"could not write {path}: {err.strerror or err}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())

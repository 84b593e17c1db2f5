"""A whole style-transfer run: resolution levels, on-disk state, resume, progress events.

The run directory (:mod:`daskstyle.rundir`) holds one zarr level state per level
(:class:`daskstyle.state.LevelState`, with the level's content target φ_O computed once beside
it; a finished level keeps only its final canvas), a preview PNG of each finished level,
``loss.csv`` and ``run.json`` (settings, network, weights checksum, the inputs' checksums).
A run that would not fit on its disks, would replace an input or a file daskstyle did not
write, or finds its state damaged stops in one line before the step that would use it
(:func:`daskstyle.footprint.check_disk`, :func:`daskstyle.rundir.check`,
:meth:`daskstyle.state.LevelState.check`). Every step is committed atomically once its loss
and update are finite, so a run killed at any moment continues with ``resume=True`` and ends
with the same image. The library never prints: it reports :class:`Event` objects to
``on_event``.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from . import footprint, geometry, io, resize, rundir
from .api import level_plan, share, style_graph
from .errors import DamagedStateError, InputError, NotFiniteError
from .graph import StyleGraph, as_tiled
from .networks import (
    DEFAULT_CONTENT_LAYER,
    DEFAULT_STYLE_LAYERS,
    NETWORKS,
    get_network,
    resolve_weights,
)
from .optim import AdamSettings
from .rundir import default_workdir
from .settings import Settings
from .state import LevelState, check_whole, create_array, open_array

EXAMPLE_CONTENT = Path(__file__).parent / "data" / "example_content.png"
EXAMPLE_STYLE = Path(__file__).parent / "data" / "example_style.png"
PREVIEW_SIDE = 1024


@dataclass(frozen=True)
class LevelStarted:
    level: int
    levels: int
    shape: tuple[int, int]
    tiles: int
    step: int
    max_iters: int


@dataclass(frozen=True)
class Stepped:
    level: int
    step: int
    loss: float
    max_change: float
    mean_change: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class LevelFinished:
    level: int
    preview: Path


@dataclass(frozen=True)
class Finished:
    output: Path
    workdir: Path


Event = LevelStarted | Stepped | LevelFinished | Finished


def transfer(
    content: str | os.PathLike,
    style: str | os.PathLike,
    output: str | os.PathLike,
    *,
    settings: Settings = Settings(),
    weights: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    resources: dict | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
) -> Path:
    """Paint ``content`` in the manner of ``style`` into ``output`` (.tif, .png or .jpg).

    ``resources`` (e.g. ``{"GPU": 1}``) is what each network task asks of a distributed
    scheduler.
    """
    output = Path(output)
    plan = _plan(content, style, output, settings, weights, workdir, resources)
    graph, workdir, record = plan.graph, plan.workdir, plan.record
    footprint.check_disk(workdir, output, plan.sizes, settings.pyramid)
    rundir.prepare(workdir, record, resume)
    state = None
    with dask.config.set({"optimization.fuse.active": False} if resources else {}):
        for level, size in enumerate(plan.sizes):
            state = _run_level(level, len(plan.sizes), size.shape, plan.content, plan.style,
                               state, graph, settings, workdir, on_event)  # fmt: skip
    _checked(state, len(plan.sizes) - 1)
    record["finished"] = True
    io.write_image(output, state.canvas(), pyramid=settings.pyramid, description=json.dumps(record))
    rundir.write_record(workdir, record)
    on_event(Finished(output, workdir))
    return output


def dry_run(
    content: str | os.PathLike,
    style: str | os.PathLike,
    output: str | os.PathLike,
    *,
    settings: Settings = Settings(),
    weights: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    makes_output_dir: bool = False,
) -> Iterator[str]:
    """What :func:`transfer` would do, as lines to print: the network and halo, each level's
    pixels, tiles and disk space, and the tiles this machine's memory holds at once. Raises,
    after the lines, the errors the run would raise before starting (inputs, weights, sizes,
    too little disk, a run directory that cannot be used as ``resume`` asks).
    ``makes_output_dir``: the caller creates the output's directory (a pipeline does)."""
    output = Path(output)
    where = io.nearest_existing(output.parent) / output.name if makes_output_dir else output
    plan = _plan(content, style, output, settings, weights, workdir, output_check=where)
    graph, sizes, workdir = plan.graph, plan.sizes, plan.workdir
    halo = graph.halo
    yield (f"network {graph.network.name}, {settings.dtype}: halo {halo.total} px "
           f"({halo.forward} forward + {halo.backward} backward), tile origins on {halo.align} px")  # fmt: skip
    for level, size in enumerate(sizes):
        (h, w), tile = size.shape, min(settings.tile, max(size.shape))
        yield (f"level {level + 1}/{len(sizes)}: {w}x{h} px, {counted(size.tiles, 'tile')} of "
               f"{tile} px, {footprint.readable(size.running_bytes)} on disk while it runs")  # fmt: skip
    most = footprint.readable(footprint.disk_needed(sizes))
    yield f"run directory {workdir}: at most {most} at once"
    yield (f"memory of this machine holds {counted(tiles_in_memory(settings), 'tile')} of "
           f"{settings.tile} px at once")  # fmt: skip
    footprint.check_disk(workdir, output, sizes, settings.pyramid)
    rundir.check(workdir, plan.record, resume)
    if resume:
        _check_levels(workdir, len(sizes))
    yield "the disks are large enough; nothing was written"


def check_run(*args, **kwargs) -> None:
    """Every check of :func:`dry_run` (same arguments) without its lines: for callers that
    start a cluster first, so that a bad input ends in one error before any work."""
    for _ in dry_run(*args, **kwargs):
        pass


@dataclass(frozen=True)
class _RunPlan:
    content: da.Array
    style: da.Array
    graph: StyleGraph
    sizes: list[footprint.LevelSize]
    workdir: Path
    record: dict  # what run.json says of the run


def _plan(content, style, output: Path, settings: Settings, weights, workdir, resources=None,
          output_check: Path | None = None) -> _RunPlan:  # fmt: skip
    """Read and check the inputs, load the weights, size the levels."""
    content_image, style_image = check_inputs(content, style, output_check or output)
    graph = style_graph(
        network=settings.network, weights=weights,
        content_weight=settings.content_weight, style_weight=settings.style_weight,
        dtype=settings.dtype, precision=settings.precision, resources=resources,
    )  # fmt: skip
    shape = tuple(content_image.shape[:2])
    first = geometry.level_shapes(shape, settings.r0)[0]
    for name, (h, w) in (("content", first), ("style", style_image.shape[:2])):
        if min(h, w) < graph.halo.align:
            raise InputError(
                f"{name} of {h}x{w} px (at r0={settings.r0}) is too small: "
                f"{graph.network.name} needs at least {graph.halo.align} px per side"
            )
    sizes = footprint.level_sizes(
        shape, graph, r0=settings.r0, tile=settings.tile, dtype=settings.dtype
    )
    workdir = Path(workdir) if workdir else default_workdir(output)
    sources = {"content": Path(content), "style": Path(style)}
    record = {
        "daskstyle": rundir.FORMAT,
        "settings": dataclasses.asdict(settings),
        "network": graph.network.name,
        "weights_digest": graph.spec.weights_token,
        "layers": list(graph.spec.layers),
        **{name: str(path.resolve()) for name, path in sources.items()},
        "inputs": {name: rundir.fingerprint(path) for name, path in sources.items()},
        "levels": len(sizes),
        "finished": False,
    }
    weights_file = resolve_weights(graph.network, weights)[1]
    if isinstance(weights_file, (str, os.PathLike)):
        sources["weights"] = Path(weights_file)
    rundir.check_paths(output, workdir, sources)
    return _RunPlan(content_image, style_image, graph, sizes, workdir, record)


def counted(number: int, noun: str) -> str:
    """``"1 tile"``, ``"2 tiles"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def tiles_in_memory(settings: Settings, memory: float | None = None) -> int:
    """How many of a run's gradient tiles fit in 80 % of ``memory`` (this machine's) at once,
    with the largest halo of the known networks: the tasks to run at the same time on CPUs."""
    from distributed.system import MEMORY_LIMIT

    layers = (DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS)
    depth = max(get_network(name).halo(layers).total for name in NETWORKS)
    itemsize = np.dtype(settings.dtype).itemsize
    return geometry.concurrent_tiles(0.8 * (memory or MEMORY_LIMIT), settings.tile, depth, itemsize)


def check_inputs(content, style, output: Path) -> tuple[da.Array, da.Array]:
    """The content and style images (read lazily), or one clear error before any work starts:
    an unreadable picture, or an output of an unknown format or in a missing directory."""
    io.check_output(output)
    return io.read_image(content), io.read_image(style)


def _run_level(level, levels, shape, content_image, style_image, previous, graph, settings,
               workdir, on_event) -> LevelState:  # fmt: skip
    """Run one level to its stop test; keep only its final canvas; return its state."""
    plan = level_plan(shape, settings.tile, graph.halo.align)
    path = rundir.level_dir(workdir, level)
    state = _open_or_create_level(path, level, shape, plan, content_image, previous, settings)
    on_event(LevelStarted(level, levels, shape, len(plan), state.step, settings.max_iters))
    if not state.done:
        style_shape = _style_shape(tuple(style_image.shape[:2]), max(shape), graph.halo.align)
        style_plan = level_plan(style_shape, settings.tile, graph.halo.align)
        style_level = resize.resize(style_image, style_shape, chunks=style_plan.tile)
        (targets,) = dask.compute(
            graph.normalised_grams(as_tiled(style_level, style_plan), style_plan)
        )
        targets = share(targets, f"daskstyle-style-targets-{tokenize(targets)}")  # once per level
        target = content_target(path / "content_target", graph, _checked(state, level), plan)
    while not state.done:
        start = time.perf_counter()
        _checked(state, level)
        check_whole(target)
        loss, grad = graph.loss_and_grad(state.canvas_store(), target, plan, targets)
        try:
            max_change, mean_change, loss = state.advance(grad, loss)
        except NotFiniteError as err:
            where = f"level {level + 1}/{levels}, "
            raise NotFiniteError(err.step, err.what, err.value, where) from None
        on_event(Stepped(level, state.step, loss, max_change, mean_change, state.lr,
                         time.perf_counter() - start))  # fmt: skip
        _write_loss_csv(workdir, level)
    preview = rundir.preview_path(workdir, level)
    if not preview.is_file():
        io.write_image(preview, _preview(_checked(state, level).canvas(), shape))
    state.release()
    on_event(LevelFinished(level, preview))
    return state


def _checked(state: LevelState, level: int) -> LevelState:
    """``state``, once what its next step (or its final canvas) reads is whole; else one line
    that names the damaged file and what to do."""
    try:
        state.check()
    except DamagedStateError as err:
        raise DamagedStateError(_damaged(err, state.path, level)) from None
    return state


def _damaged(err: DamagedStateError, path: Path, level: int) -> str:
    return (f"the run directory is damaged: {err}; delete {path} and continue with --resume to "
            f"paint level {level + 1} again from its start, or start again in a new run "
            "directory")  # fmt: skip


def _check_levels(workdir: Path, levels: int) -> None:
    """Before a resumed run starts: the state that it will read first is whole."""
    last = None
    for level in range(levels):
        path = rundir.level_dir(workdir, level)
        try:
            state = LevelState.open(path)
        except DamagedStateError as err:
            raise DamagedStateError(_damaged(err, path, level)) from None
        except InputError:  # not created yet, or killed while it was created: made anew
            break
        last = (state, level)
        if not state.done:
            break
    if last is not None:
        _checked(*last)


def _open_or_create_level(path, level, shape, plan, content_image, previous, settings):
    if (path / "zarr.json").is_file():
        try:
            return LevelState.open(path)
        except DamagedStateError as err:
            raise DamagedStateError(_damaged(err, path, level)) from None
        except InputError:
            pass  # killed while it was being created: create it again
    content_level = resize.resize(content_image, shape, chunks=plan.tile)
    start = content_level
    if previous is not None:
        start = resize.resize(_checked(previous, level - 1).canvas(), shape, chunks=plan.tile)
    adam = AdamSettings(
        tpc=settings.tpc, stop_condition=settings.stop, max_iters=settings.max_iters
    )
    return LevelState.create(path, content_level, start, plan, adam, dtype=settings.dtype)


def content_target(path: Path, graph, state: LevelState, plan) -> zarr.Array:
    """φ_O of the level's content, computed once per level and kept on disk (written under a
    temporary name and renamed when complete); tile tasks read their windows of it. The
    level's content image is deleted then: nothing else reads it."""
    if not path.is_dir():
        features = graph.content_features(state.content(), plan)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        array = create_array(tmp, features.shape, features.chunksize, features.dtype)
        da.store(features, array, lock=False)
        os.replace(tmp, path)
    state.drop_content()
    return open_array(path)


def _style_shape(style: tuple[int, int], level_side: int, minimum: int) -> tuple[int, int]:
    """The style's size at a level whose long side is ``level_side``: scaled like the
    content, never above its own size, never below ``minimum`` per side."""
    scale = min(1.0, level_side / max(style))
    scale = max(scale, min(1.0, minimum / min(style)))
    return max(1, round(style[0] * scale)), max(1, round(style[1] * scale))


def _preview(canvas, shape):
    scale = min(1.0, PREVIEW_SIDE / max(shape))
    small = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
    return canvas if scale == 1.0 else resize.resize(canvas, small)


def _write_loss_csv(workdir: Path, upto_level: int) -> None:
    """loss.csv from the committed histories of levels 0..``upto_level`` (written atomically;
    levels numbered from 1, as the progress lines count)."""
    text = _io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["level", "step", "loss", "max_change", "mean_change", "lr"])
    for level in range(upto_level + 1):
        state = LevelState.open(rundir.level_dir(workdir, level))
        for step, (max_change, mean_change, loss) in enumerate(state.attrs["history"], start=1):
            writer.writerow([level + 1, step, loss, max_change, mean_change, state.lr])
    io.write_atomically(workdir / rundir.LOSS_CSV, text.getvalue().encode())


def final_canvas(workdir: str | os.PathLike) -> np.ndarray:
    """The last committed canvas of the last level in ``workdir`` (for checks and tests)."""
    levels = sorted(Path(workdir).glob("level*/zarr.json"), key=lambda p: int(p.parent.name[5:]))
    return LevelState.open(levels[-1].parent).canvas().compute()

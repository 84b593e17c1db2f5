"""A whole style-transfer run: resolution levels, on-disk state, resume, progress events.

A run is planned once (:func:`plan`: inputs read and checked, weights loaded and hashed,
levels and disks sized), and the :class:`RunPlan` describes itself (the dry run's lines),
checks itself (disks, run directory, resumed state) and executes on the current Dask
scheduler (an :class:`daskstyle.compute.executor.Executor`'s session). The run directory
(:mod:`daskstyle.run.rundir`) holds one zarr level state per level
(:class:`daskstyle.optimise.state.LevelState`, with the level's content target φ_O computed once
beside it; a finished level keeps only its final canvas), a preview PNG of each finished level,
``loss.csv`` and ``run.json`` (settings, network, weights checksum, the inputs' checksums).
A run that would not fit on its disks, would replace an input or a file daskstyle did not
write, or finds its state damaged stops in one line before the step that would use it
(:func:`daskstyle.run.footprint.check_disk`, :func:`daskstyle.run.rundir.check`,
:meth:`daskstyle.optimise.state.LevelState.check`). Every step is committed atomically once its loss
and update are finite, so a run killed at any moment continues with ``resume=True`` and ends
with the same image. The library never prints: it reports :class:`Event` objects to
``on_event``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dask.array as da

from daskstyle.api import level_plan, style_graph
from daskstyle.compute import executor, hardware
from daskstyle.controls import colors, start
from daskstyle.core import geometry
from daskstyle.core.data import DATA_DIR
from daskstyle.core.errors import DamagedStateError, InputError, NotFiniteError
from daskstyle.engine.graph import StyleGraph
from daskstyle.io import files, images, resize
from daskstyle.networks.catalog import random_weights, resolve_weights
from daskstyle.networks.weights import planned_network
from daskstyle.optimise import overview
from daskstyle.optimise.adam import AdamSettings
from daskstyle.optimise.held import Checkpoints, held_in_memory
from daskstyle.optimise.level import open_level
from daskstyle.optimise.state import LevelState
from daskstyle.run import describe, footprint, regional, rundir
from daskstyle.run.auto_settings import run_precision, run_tile
from daskstyle.run.events import (
    Event,
    Finished,
    LevelFinished,
    LevelStarted,
    Staged,
    Stepped,
    timed,
    timed_when,
)
from daskstyle.run.record import FORMAT
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings, blend_weights, check_style_scale

EXAMPLE_CONTENT = DATA_DIR / "example_content.png"
EXAMPLE_STYLE = DATA_DIR / "example_style.png"
PREVIEW_SIDE = 1024


@dataclass(frozen=True)
class RunPlan:
    """A run, planned: its inputs (read lazily), graph (weights loaded), levels and run
    record. Made by :func:`plan`; nothing is written until :meth:`execute`."""

    output: Path
    workdir: Path
    settings: Settings
    resume: bool
    content: da.Array
    styles: list[da.Array]
    blend: tuple[float, ...]  # the styles' weights, summing to 1
    graph: StyleGraph
    sizes: list[footprint.LevelSize]
    record: dict  # what run.json says of the run
    tile: int  # the largest tile side of its levels, in px (a level in one tile: its long side)
    tile_reason: str | None = None  # under --tile auto: how the tile was chosen
    memory_line: str | None = None  # under --checkpoint-every N > 1: the state held
    checkpoint_every: Checkpoints = Checkpoints(steps=1)  # how often state goes to disk
    arithmetic: str | None = None  # the network's arithmetic and, under auto, why (first line)
    download: str | None = None  # a dry run's plan: the weights a run would download first
    regions: regional.RunRegions | None = None  # the labels of a run with regions

    def describe(self) -> Iterator[str]:
        """The plan as lines to print (:func:`daskstyle.run.describe.plan_lines`)."""
        return describe.plan_lines(self)

    def check(self) -> None:
        """Raise, before any work, what would stop the run: too little disk, a run directory
        that cannot be used as ``resume`` asks, or resumed state that is damaged."""
        footprint.check_disk(self.workdir, self.output, self.sizes, self.settings.pyramid)
        rundir.check(self.workdir, self.record, self.resume)
        if self.resume:
            _check_levels(self.workdir, self.sizes)

    def dry_run(self) -> Iterator[str]:
        """:meth:`describe`, then :meth:`check` (raising after the lines), then a last line."""
        yield from self.describe()
        self.check()
        yield "the disks are large enough; nothing was written"

    def execute(self, resources: dict | None = None,
                on_event: Callable[[Event], None] = lambda event: None) -> Path:  # fmt: skip
        """Paint the picture on the current Dask scheduler, whose network tasks ask for
        ``resources`` (e.g. ``{"GPU": 1}``); return the output's path."""
        if self.download:  # its graph holds stand-in weights
            raise InputError("a dry run's plan cannot paint: plan the run without dry_run")
        run = rundir.prepare(self.workdir, self.record, self.resume)["run"]
        graph = self.graph.on_current_scheduler(resources)
        state = None
        with executor.compute_settings(resources):
            inputs = self.network_inputs()
            for level in range(len(self.sizes)):
                state = self._run_level(level, state, graph, inputs, on_event, run)
        with _about_level(len(self.sizes) - 1, len(self.sizes), state.path):
            state.check()
        record = rundir.finish(self.workdir)  # with each of its files' size and SHA-256
        with timed(on_event, len(self.sizes) - 1, "output"):
            images.write_image(self.output, self._picture(state.canvas()),
                               pyramid=self.settings.pyramid, description=json.dumps(record),
                               bit_depth=self.settings.bit_depth, dpi=self.settings.dpi)  # fmt: skip
        rundir.write_record(self.workdir, record)
        on_event(Finished(self.output, self.workdir))
        return self.output

    def network_inputs(self) -> tuple[da.Array, list[da.Array]]:
        """The content and styles as the network sees them, after the colour control."""
        if self.settings.colors == "content":
            return colors.luminance_only(self.content, self.styles)
        if self.settings.colors == "match":
            return self.content, [colors.match_colors(s, self.content) for s in self.styles]
        return self.content, self.styles

    def _picture(self, canvas: da.Array) -> da.Array:
        """A canvas as it is shown: with the content's chroma under ``colors = "content"``."""
        if self.settings.colors != "content":
            return canvas
        shape = tuple(canvas.shape[:2])
        content = self.content
        if shape != tuple(content.shape[:2]):
            content = resize.resize(content, shape, chunks=canvas.chunksize[:2])
        return colors.with_chroma(canvas, content)

    def _run_level(self, level: int, previous: LevelState | None, graph: StyleGraph,
                   inputs: tuple[da.Array, list[da.Array]], on_event,
                   run: str) -> LevelState:  # fmt: skip
        """Run one level of the run ``run`` (its id) to its stop test; keep only its final
        canvas; return its state."""
        settings, levels, shape = self.settings, len(self.sizes), self.sizes[level].shape
        plan = level_plan(shape, self.sizes[level].tile, graph.halo.align)
        path = rundir.level_dir(self.workdir, level)
        with timed(on_event, level, "state"):
            state = self._open_or_create_level(level, path, plan, previous, inputs[0], run)
        on_event(LevelStarted(level, levels, shape, len(plan), state.step, settings.max_iters))
        with _about_level(level, levels, path):
            if not state.done:
                if self.regions is not None:
                    graph = self.regions.level_graph(graph, settings, shape, plan.tile, path)
                styles = [self.level_style(style, shape, graph, number)
                          for number, style in enumerate(inputs[1])]  # fmt: skip
                level_loop = open_level(graph, state, plan, styles, self.blend, settings.gram,
                                        checkpoint_every=self.checkpoint_every)  # fmt: skip
                for stage, seconds in level_loop.seconds.items():
                    on_event(Staged(level, stage, seconds))
                for step in level_loop.steps():
                    on_event(Stepped(level, step.step, step.loss, step.max_change,
                                     step.mean_change, step.lr, step.seconds))  # fmt: skip
                    rundir.write_loss_csv(self.workdir, level)
                    # for viewers: the canvas halved, at checkpoints
                    timed_when(on_event, level, "overview", lambda: overview.keep_up(state))
                # the tiles' memory, not needed by what follows; its holes fit no other size
                executor.give_back_freed_memory()
            # the level's last canvas (a resumed run's too)
            timed_when(on_event, level, "overview", lambda: overview.keep_up(state))
            preview = rundir.preview_path(self.workdir, level)
            if not preview.is_file():
                state.check()
                with timed(on_event, level, "preview"):
                    images.write_image(preview, overview.shrunk(state, self._picture, PREVIEW_SIDE))
                rundir.record_file(self.workdir, preview.name)
        state.release()
        on_event(LevelFinished(level, preview))
        return state

    def level_style(self, style: da.Array, shape: tuple[int, int], graph: StyleGraph,
                    number: int = 0):  # fmt: skip
        """A style at a level of ``shape``, with its tile plan (resized chunk by chunk), and
        under regions the part of it that region ``number`` takes, where not the whole."""
        side = geometry.style_shape(tuple(style.shape[:2]), max(shape), graph.halo.align,
                                    self.settings.style_scale)  # fmt: skip
        tile = next(size.tile for size in self.sizes if size.shape == shape)
        style_plan = level_plan(side, tile, graph.halo.align)
        part = self.regions and self.regions.style_part(number, side, self.settings.dtype)
        resized = resize.resize(style, side, chunks=style_plan.tile)
        return (resized, style_plan) if part is None else (resized, style_plan, part)

    def _open_or_create_level(self, level, path, plan, previous, content, run) -> LevelState:
        """The level's state as the run ``run`` (its id) left it, else made anew; marked as
        the run's (:func:`daskstyle.run.rundir.mark_level`)."""
        if (path / "zarr.json").is_file():
            try:
                with _about_level(level, len(self.sizes), path):
                    state = LevelState.open(path)
                    rundir.check_level_shape(path, plan.shape, level)
                rundir.mark_level(state, run)
                return state
            except InputError:
                pass  # killed while it was being created: create it again
        shape, settings = self.sizes[level].shape, self.settings
        content = resize.resize(content, shape, chunks=plan.tile)
        if previous is None:
            start_image = start.start_image(settings.init, content, settings.seed)
        else:
            with _about_level(level - 1, len(self.sizes), previous.path):
                previous.check()
            start_image = resize.resize(previous.canvas(), shape, chunks=plan.tile)
        adam = AdamSettings(tpc=settings.tpc, stop=settings.stop, max_iters=settings.max_iters)
        state = LevelState.create(path, content, start_image, plan, adam, dtype=settings.dtype)
        rundir.mark_level(state, run)
        return state


def plan(
    content: str | os.PathLike,
    style: str | os.PathLike | list[str | os.PathLike],
    output: str | os.PathLike,
    *,
    settings: Settings = Settings(),
    weights: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    cluster: str = "local",
    checkpoint_every: int | str = 1,
    makes_output_dir: bool = False,
    experiment: Mapping | None = None,
    dry_run: bool = False,
) -> RunPlan:
    """Plan painting ``content`` in the manner of ``style`` (a picture, or a list of them
    blended by ``settings.style_blend``) into ``output`` (.tif, .png or .jpg): read and check
    the inputs, load the weights, size the levels. Raises one clear error for an unreadable
    picture, an output of an unknown format, in a missing directory (unless
    ``makes_output_dir``: the caller creates it) or that would replace an input, and for
    settings that do not fit the inputs. ``workdir``: the run directory (default
    ``OUTPUT.daskstyle``); ``resume``: continue the unfinished run there, with the tile it
    began with when ``settings.tile`` is ``auto``. ``cluster``: where the tiles will run, an
    :class:`daskstyle.compute.executor.Executor` spec: under ``tile = "auto"`` ``local``,
    ``threads`` and ``sync`` size the tiles to this machine's memory (or its GPU's), any other spec
    (``slurm``, a scheduler) takes :data:`daskstyle.run.auto_settings.ELSEWHERE_TILE` px;
    under ``precision = "auto"`` only ``local``, ``threads`` and ``sync`` may take bf16.
    ``checkpoint_every``: other than 1, each level's state stays in memory and goes to disk
    every so many steps (``5``) or minutes (``"15min"``;
    :class:`daskstyle.optimise.held.Checkpoints`), if it fits this machine's memory where the tiles run here.
    ``experiment``: switches for the ablations of docs/design.md, not for paintings: ``halo``
    and ``gram_scope`` of :func:`daskstyle.api.style_graph`, kept in run.json. ``dry_run``:
    download nothing; where the run would download weights, the plan says so (``download``),
    is sized with stand-in weights, and cannot execute."""
    every = Checkpoints.of(checkpoint_every)
    output = Path(output)
    images.check_output(
        files.nearest_existing(output.parent) / output.name if makes_output_dir else output,
        bit_depth=settings.bit_depth,
    )
    style_paths = [style] if isinstance(style, (str, os.PathLike)) else list(style)
    if not style_paths:
        raise InputError("give at least one style picture")
    blend = blend_weights("style_blend", settings.style_blend, len(style_paths))
    start.check_init(settings.init)
    experiment = dict(experiment or {})
    if set(experiment) - {"halo", "gram_scope"}:
        raise InputError(f"experiment switches are halo and gram_scope, not {sorted(experiment)}")
    workdir = Path(workdir) if workdir else default_workdir(output)
    settings = regional.resolved(settings)
    settings, precision_reason = run_precision(settings, workdir, resume, cluster)
    content_image = images.read_image(content)
    style_images = [images.read_image(path) for path in style_paths]
    network, download = (planned_network(settings.network, weights) if dry_run
                         else (settings.network, None))  # fmt: skip
    graph = style_graph(
        network=network, weights=random_weights(network) if download else weights,
        content_weight=settings.content_weight, style_weight=settings.style_weight,
        content_layer=settings.content_layer, style_layers=settings.style_layers,
        style_layer_weights=settings.style_layer_weights, pooling=settings.pooling,
        tv_weight=settings.tv_weight, dtype=settings.dtype, precision=settings.precision,
        **experiment,
    )  # fmt: skip
    shape = tuple(content_image.shape[:2])
    first = geometry.level_shapes(shape, settings.r0)[0]
    sources = {"content": Path(content)}
    for number, path in enumerate(style_paths, start=1):
        sources["style" if len(style_paths) == 1 else f"style {number}"] = Path(path)
    run_regions = regional.plan_regions(settings, shape, style_images, sources)
    pictures = zip(sources, (first, *(image.shape[:2] for image in style_images)))
    for name, (h, w) in pictures:
        if min(h, w) < graph.halo.align:
            raise InputError(
                f"{name} of {h}x{w} px (at r0={settings.r0}) is too small: "
                f"{graph.network.name} needs at least {graph.halo.align} px per side"
            )
    settings, tile, tile_reason = run_tile(settings, graph, workdir, resume, cluster)
    sizes = footprint.level_sizes(shape, graph, r0=settings.r0, tile=tile, dtype=settings.dtype,
                                  balanced=settings.tile == "auto")  # fmt: skip
    for name, image in zip(list(sources)[1:], style_images):  # largest beside the first level
        check_style_scale(settings.style_scale, image.shape[:2], sizes[0].shape, name)
    styles_named = [str(Path(path).resolve()) for path in style_paths]
    record = {
        "daskstyle": FORMAT,
        "settings": dataclasses.asdict(settings),
        "network": graph.network.name,
        "weights_digest": graph.spec.weights_token,
        "layers": list(graph.spec.layers),
        "content": str(Path(content).resolve()),
        "style": styles_named[0] if len(styles_named) == 1 else styles_named,
        "inputs": {name: rundir.fingerprint(path) for name, path in sources.items()},
        "levels": len(sizes),
        "tile_px": tile,
        "finished": False,
        **({"experiment": experiment} if experiment else {}),
    }
    record = json.loads(json.dumps(record))  # as run.json will hold it: lists, not tuples
    weights_file = None if download else resolve_weights(graph.network, weights)[1]
    if isinstance(weights_file, (str, os.PathLike)):
        sources["weights"] = Path(weights_file)
    if settings.init not in start.INITS:
        sources["init picture"] = Path(settings.init)
    rundir.check_paths(output, workdir, sources)
    largest = max(min(size.tile, max(size.shape)) for size in sizes)
    memory = hardware.host_memory() if cluster in executor.THIS_MACHINE_SPECS else None
    held_line = None
    if every.held:
        last = level_plan(sizes[-1].shape, sizes[-1].tile, graph.halo.align)
        target = footprint.held_target_bytes(last, settings.dtype, graph)
        held_line, every = held_in_memory(sizes[-1].shape, settings.dtype, every, memory, target)
    arithmetic = precision_reason or hardware.precision_line(settings.precision)
    return RunPlan(output, workdir, settings, resume, content_image, style_images, blend, graph,
                   sizes, record, largest, tile_reason, held_line, every,
                   arithmetic, download, run_regions)  # fmt: skip


def transfer(
    content: str | os.PathLike,
    style: str | os.PathLike,
    output: str | os.PathLike,
    *,
    resources: dict | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    **options,
) -> Path:
    """Plan, check and execute a run on the current Dask scheduler (:func:`plan` with
    ``options``, :meth:`RunPlan.check`, :meth:`RunPlan.execute` with ``resources`` and
    ``on_event``); return the output's path."""
    run_plan = plan(content, style, output, **options)
    run_plan.check()
    return run_plan.execute(resources, on_event)


@contextlib.contextmanager
def _about_level(level: int, levels: int, path: Path):
    """Errors of a level's state, said as the user can act on them: a damaged file with what
    to do, a step that is not finite with the level it belongs to."""
    try:
        yield
    except DamagedStateError as err:
        raise DamagedStateError(
            f"the run directory is damaged: {err}; delete {path} and continue with --resume to "
            f"paint level {level + 1} again from its start, or start again in a new run "
            "directory"
        ) from None
    except NotFiniteError as err:
        where = f"level {level + 1}/{levels}, "
        raise NotFiniteError(err.step, err.what, err.value, where) from None


def _check_levels(workdir: Path, sizes: list[footprint.LevelSize]) -> None:
    """Before a resumed run starts: the state that it will read first is whole, and each
    level it opens has the level's shape."""
    last, levels = None, len(sizes)
    for level in range(levels):
        path = rundir.level_dir(workdir, level)
        try:
            with _about_level(level, levels, path):
                state = LevelState.open(path)
                rundir.check_level_shape(path, sizes[level].shape, level)
        except InputError:  # not created yet, or killed while it was created: made anew
            break
        last = (level, state)
        if not state.done:
            break
    if last is not None:
        level, state = last
        with _about_level(level, levels, state.path):
            state.check()

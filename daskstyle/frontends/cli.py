"""The ``daskstyle`` command line. Errors end in one line on stderr (tracebacks with --debug)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daskstyle.core.errors import DaskstyleError, InputError, SettingError
from daskstyle.frontends import terminal


def _run(args: argparse.Namespace) -> None:
    from daskstyle.compute.cluster import check_sizes
    from daskstyle.compute.executor import Executor
    from daskstyle.frontends.progress import BATCH_EVERY, Progress
    from daskstyle.run import painting
    from daskstyle.settings import Settings

    if args.example and args.content:
        raise InputError("--example paints the built-in pictures: give CONTENT and STYLE, or "
                         "--example without them")  # fmt: skip
    if args.example:
        content, style = painting.EXAMPLE_CONTENT, painting.EXAMPLE_STYLE
    elif args.content and args.style:
        content, style = args.content, args.style
    else:
        raise InputError("give CONTENT and STYLE images (one or more styles), or --example")
    try:
        check_sizes(workers=args.workers, jobs=args.jobs)
        settings = Settings(**{f: getattr(args, f) for f in Settings.__dataclass_fields__})
        plan = painting.plan(content, style, args.output, settings=settings, weights=args.weights,
                        workdir=args.workdir, resume=args.resume, cluster=args.cluster,
                        checkpoint_every=args.checkpoint_every,
                        dry_run=args.dry_run)  # fmt: skip
    except SettingError as err:
        if err.name not in (*Settings.__dataclass_fields__, "workers", "jobs"):
            raise
        raise InputError(err.spelled("--" + err.name.replace("_", "-"))) from None
    if args.dry_run:
        for line in plan.dry_run():
            print(line)
        return
    plan.check()  # before a cluster starts
    if plan.arithmetic is not None:
        print(plan.arithmetic)
    executor = Executor(args.cluster, workers=args.workers, jobs=args.jobs,
                        config=args.slurm_config, tls=args.tls, dashboard=args.dashboard,
                        tile=plan.tile, dtype=settings.dtype)  # fmt: skip
    with executor.open() as session:
        for line in session.lines:
            print(line)
        batch = not sys.stderr.isatty()  # a SLURM log, CI: plain lines, no bar
        progress = Progress(bars=not batch, every=BATCH_EVERY if batch else 0.0)
        try:
            plan.execute(session.resources, on_event=progress)
        finally:
            progress.close()  # before any error line


def _bench(args: argparse.Namespace) -> None:
    from daskstyle.frontends import bench

    if args.kind == "gradient":
        bench.print_gradient(args.size, args.tiles, args.dtype, args.network)
    elif args.kind == "networks":
        bench.print_networks(args.size, args.networks)
    elif args.kind == "iteration":
        bench.print_iteration(args.size, args.tile, args.network, args.steps, args.precision,
                              args.gram, args.checkpoint_every)  # fmt: skip
    else:
        bench.print_precision(args.size, args.network)


def _pipeline(args: argparse.Namespace) -> None:
    from daskstyle.frontends.pipeline import run_pipeline

    run_pipeline(args.file, dry_run=args.dry_run)


def _weights_list(args: argparse.Namespace) -> None:
    from daskstyle.networks import weights

    for name, present, path in weights.list_networks():
        print(f"{name:10} {'present' if present else 'missing':8} {path}")


def _weights_download(args: argparse.Namespace) -> None:
    from daskstyle.networks import weights
    from daskstyle.networks.catalog import read_state_dict

    path = weights.download(args.name)
    read_state_dict(path)  # weights kept from before may be damaged: then one line says so
    print(f"{args.name}: {path}")


def parser() -> argparse.ArgumentParser:
    top = terminal.OneLineParser(prog="daskstyle", description=__doc__)
    common = terminal.OneLineParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", parents=[common], help="paint CONTENT in the manner of STYLE")
    _add_run_options(run)
    run.set_defaults(run=_run)

    pipeline = commands.add_parser(
        "pipeline",
        parents=[common],
        help="run a production or scaling study described by a TOML file",
    )
    pipeline.add_argument("file", help="pipeline file (.toml, see pipelines/README.md)")
    pipeline.add_argument(
        "--dry-run",
        action="store_true",
        help="a production: print its levels, tiles and disk space, check the disks, and stop",
    )
    pipeline.set_defaults(run=_pipeline)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    kinds = bench.add_subparsers(dest="kind", required=True)
    options = {"parents": [common], "formatter_class": argparse.ArgumentDefaultsHelpFormatter}
    from daskstyle.networks.catalog import NETWORKS

    names = list(NETWORKS)
    gradient = kinds.add_parser(
        "gradient", help="untiled vs tiled: seconds, ratio, peak RSS", **options
    )
    gradient.add_argument("--size", type=int, default=1024, help="canvas side in px")
    gradient.add_argument(
        "--tiles", type=int, nargs="+", default=[256, 512, 1024], help="core tile sizes"
    )
    gradient.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="arithmetic"
    )
    gradient.add_argument(
        "--network", choices=names, default="vgg19", help="layer list (random weights)"
    )
    networks = kinds.add_parser("networks", help="seconds per iteration of each network", **options)
    networks.add_argument("--size", type=int, default=512, help="canvas side in px (untiled)")
    networks.add_argument(
        "--networks", nargs="+", choices=names, default=names, help="networks to time"
    )
    iteration = kinds.add_parser(
        "iteration", help="whole iterations on disk: seconds, RSS", **options
    )
    iteration.add_argument("--size", type=int, default=2048, help="canvas side in px")
    iteration.add_argument(
        "--steps", type=int, default=2, help="timed iterations (Gram, gradient, Adam)"
    )
    iteration.add_argument(
        "--network", choices=names, default="vgg19", help="layer list (random weights)"
    )
    _add_step_options(iteration, tile=512, precision="exact", gram="exact")
    precision = kinds.add_parser(
        "precision", help="gradient error of float32/TF32/bf16 vs float64", **options
    )
    precision.add_argument("--size", type=int, default=256, help="canvas side in px")
    precision.add_argument(
        "--network", choices=names, default="hed-vgg16", help="network (real weights where present)"
    )
    for kind in (gradient, networks, iteration, precision):
        kind.set_defaults(run=_bench)

    weights = commands.add_parser("weights", help="list or download network weights")
    actions = weights.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", parents=[common], help="each network's weights: present? where?"
    )
    listing.set_defaults(run=_weights_list)
    download = actions.add_parser(
        "download", parents=[common], help="fetch, verify and cache a network's weights"
    )
    download.add_argument("name", help="vgg19, vgg16 or hed-vgg16")
    download.set_defaults(run=_weights_download)
    return top


def _add_run_options(run: argparse.ArgumentParser) -> None:
    from daskstyle.networks.catalog import NETWORKS
    from daskstyle.settings import Settings

    d = Settings()
    run.add_argument("content", nargs="?", help="content image (PNG, JPEG, TIFF/BigTIFF)")
    run.add_argument("style", nargs="*", help="style image(s), any size")
    run.add_argument(
        "-o", "--output", required=True, help="result: .tif (tiled BigTIFF), .png or .jpg"
    )
    run.add_argument("--example", action="store_true", help="use the built-in example pictures")
    numbers = [  # option, type, default, meaning
        ("--r0", int, d.r0, "long side of the first level; each next level doubles it"),
        ("--max-iters", int, d.max_iters, "Adam steps per level at most"),
        ("--tpc", float, d.tpc, "largest pixel change of a level's first step on 0-255; sets "
                                "the learning rate"),
        ("--stop", float, d.stop, "a level ends when a step's mean pixel change falls below this"),
        ("--content-weight", float, d.content_weight, "weight of the content loss"),
        ("--style-weight", float, d.style_weight, "weight of the style loss"),
    ]  # fmt: skip
    for option, kind, default, meaning in numbers:
        run.add_argument(option, type=kind, default=default, help=f"{meaning} (default {default})")
    _add_control_options(run, d)
    run.add_argument(
        "--network",
        default=d.network,
        choices=list(NETWORKS),
        help="network (default: vgg19 if its weights are present, else hed-vgg16)",
    )
    run.add_argument(
        "--weights", help="weights file (.pth state_dict) overriding the network's default"
    )
    run.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=d.dtype,
        help=f"arithmetic and on-disk state (default {d.dtype}; float64 is ~4x slower)",
    )
    run.add_argument(
        "--pyramid",
        action="store_true",
        help="add reduced resolutions to a TIFF output for viewers",
    )
    run.add_argument(
        "--workdir",
        help="run directory for the on-disk state (default: OUTPUT.daskstyle next to the output)",
    )
    run.add_argument(
        "--resume", action="store_true", help="continue the unfinished run in the run directory"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the levels, tiles and disk space the run needs, check the disks, and stop",
    )
    run.add_argument(
        "--cluster",
        "--scheduler",
        default="local",
        help="where tiles run: local (default: a LocalCluster on 127.0.0.1, over TLS, "
        "worker processes sized to the machine, one worker per GPU with dask-cuda), threads, "
        "sync, slurm (dask-jobqueue), or a scheduler address tcp://HOST:PORT / tls://... / "
        "scheduler file .json",
    )
    _add_step_options(run, tile=d.tile, precision=d.precision, gram=d.gram)
    run.add_argument("--workers", type=int, help="worker processes of a local cluster")
    run.add_argument("--jobs", type=int, help="SLURM jobs (default: adapt to the work)")
    run.add_argument(
        "--slurm-config",
        help="dask-jobqueue YAML (default cluster/slurm.yaml or $DASKSTYLE_SLURM_CONFIG)",
    )
    run.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a cluster started here (local, slurm) speaks TLS with credentials only this run "
        "holds (default); --no-tls: plain TCP, which any user who reaches it can run code on: "
        "only on a machine nobody else uses, to attach other Dask clients",
    )
    run.add_argument(
        "--dashboard",
        action="store_true",
        help="start the Dask dashboard of a cluster started here (it has no password: anyone "
        "who can reach its port can open it)",
    )


def _add_step_options(parser: argparse.ArgumentParser, tile, precision: str, gram: str) -> None:
    """How each step runs, for ``daskstyle run`` and ``daskstyle bench iteration`` alike
    (with their own defaults; auto arithmetic for runs only): --tile, --precision, --gram and
    --checkpoint-every."""
    from daskstyle.engine.kernels import PRECISIONS
    from daskstyle.optimise.level import GRAM_SCHEDULES

    auto = precision not in PRECISIONS
    precisions = ("auto", *PRECISIONS) if auto else PRECISIONS
    auto_help = ("auto (bf16 where this machine runs the tiles and has it natively: CUDA, CPUs "
                 "with AVX512-BF16 or AMX; else exact), ") if auto else ""  # fmt: skip

    parser.add_argument("--tile", type=_tile, default=tile,
                        help="auto: the largest tile that fits the memory of this machine (per "
                             "core) or its GPU, cut evenly per level (512 px when --cluster is "
                             "slurm or a scheduler; a resumed run keeps its own); or a core tile "
                             "side in px, a multiple of 16 (larger is faster: 512 px needs "
                             "~1.7 GB) (default %(default)s)")  # fmt: skip
    parser.add_argument("--precision", choices=precisions, default=precision,
                        help=f"network arithmetic: {auto_help}exact, tf32 (CUDA) or bf16 "
                             "autocast; `daskstyle bench precision` measures their gradient "
                             "error (default %(default)s)")  # fmt: skip
    parser.add_argument("--gram", choices=GRAM_SCHEDULES, default=gram,
                        help="exact: each step a Gram pass, then a gradient pass; lagged: one "
                             "pass holding the previous step's Gram errors where they move by "
                             "under 2 %% a step, else exact (default %(default)s)")  # fmt: skip
    parser.add_argument("--checkpoint-every", default="1", metavar="N|Mmin",
                        help="keep each level's canvas and Adam's moments in memory and write "
                             "them to disk every N steps or M minutes (15min) and at its end "
                             "(default %(default)s: on disk at every step)")  # fmt: skip


def _tile(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give auto or a number of px, not {text!r}") from None


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give numbers separated by commas, not {text!r}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(","))


def _add_control_options(run: argparse.ArgumentParser, d) -> None:
    """The artistic controls (see docs/controls.md)."""
    layers = ",".join(d.style_layers)
    controls = [  # option, type, default, meaning
        ("--style-blend", _numbers, None, "weights of several styles, e.g. 3,1 (normalised to "
                                          "sum 1; default equal)"),
        ("--style-scale", float, d.style_scale, "the style's size relative to the default (the "
                                                "style scaled like each level): 2 paints strokes "
                                                "twice as large"),
        ("--colors", str, d.colors, "colours of the output: style (plain transfer), content "
                                    "(luminance-only transfer: the content's colours) or match "
                                    "(the style recoloured to the content's palette first)"),
        ("--init", str, d.init, "the first level's start: content, noise, gray or a picture"),
        ("--seed", int, d.seed, "seed of --init noise (the same for any tiling)"),
        ("--tv-weight", float, d.tv_weight, "weight of the smoothness (total variation) term"),
        ("--content-layer", str, d.content_layer, "the content loss's layer"),
        ("--style-layers", _names, layers, "the style loss's layers, separated by commas; "
                                           "shallower layers mean a smaller halo"),
        ("--style-layer-weights", _numbers, None, "a weight per style layer (default 1 each)"),
        ("--pooling", str, d.pooling, "the network's pooling: max or avg"),
        ("--bit-depth", int, d.bit_depth, "bits per sample of a .tif or .png output: 8 or 16"),
    ]  # fmt: skip
    for option, kind, default, meaning in controls:
        shown = "" if default is None else f" (default {default})"
        run.add_argument(option, type=kind, default=default, help=meaning + shown)


def _resume_hint(args: argparse.Namespace) -> str:
    """How to continue the run that stopped, if it has a run directory to continue from."""
    from daskstyle.frontends.pipeline import run_directories
    from daskstyle.run.rundir import default_workdir, unfinished

    if args.command == "run":
        workdirs = [Path(args.workdir) if args.workdir else default_workdir(Path(args.output))]
        how = "--resume"
    elif args.command == "pipeline":
        workdirs, how = run_directories(args.file), f"resume = true in {args.file}"
    else:
        return ""
    if not any(unfinished(workdir) for workdir in workdirs):
        return ""
    return f" (the run continues from its last step with {how})"


def main(argv: list[str] | None = None) -> int:
    with terminal.signals_stop():  # first: a signal while the modules load ends in one line
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = None
    try:
        args = parser().parse_args(argv)
        with terminal.warnings_as_notes():
            args.run(args)
    except DaskstyleError as err:
        if args.debug:
            raise
        terminal.ignore_signals()
        print(f"daskstyle: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, a vanished directory, no permission
        if args is None or args.debug:
            raise
        terminal.ignore_signals()
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"daskstyle: error: {where}{err.strerror or err}{_resume_hint(args)}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt as err:
        terminal.ignore_signals()
        hint = "" if args is None else _resume_hint(args)
        print(f"daskstyle: interrupted{hint}", file=sys.stderr)
        return err.status if isinstance(err, terminal.Stopped) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

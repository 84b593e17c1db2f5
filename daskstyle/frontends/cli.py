"""The ``daskstyle`` command line. Errors end in one line on stderr (tracebacks with --debug)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daskstyle.core.errors import DaskstyleError, InputError, SettingError
from daskstyle.frontends import options, terminal


def _run(args: argparse.Namespace) -> None:
    from daskstyle.compute.cluster import check_sizes
    from daskstyle.compute.executor import Executor
    from daskstyle.frontends.progress import BATCH_EVERY, Progress
    from daskstyle.frontends.view.server import beside_run
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
    with executor.open() as session, beside_run(plan.workdir, args.view) as viewer:
        for line in session.lines:
            print(line)
        if viewer is not None:
            print(f"view the run at {viewer.url}", flush=True)
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
    elif args.kind == "cluster":
        from daskstyle.frontends import cluster_simulation

        cluster_simulation.run_from_arguments(args)
    elif args.kind == "iteration":
        bench.print_iteration(args.size, args.tile, args.network, args.steps, args.precision,
                              args.gram, args.checkpoint_every)  # fmt: skip
    else:
        bench.print_precision(args.size, args.network)


def _view(args: argparse.Namespace) -> None:
    import webbrowser

    from daskstyle.frontends.view.server import Viewer
    from daskstyle.frontends.view.sources import open_source

    viewer = Viewer(open_source(args.path), port=args.port)
    print(f"daskstyle view: {viewer.url}", flush=True)
    if not args.no_browser:
        webbrowser.open(viewer.url)
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C is how a viewer ends
        pass
    finally:
        viewer.close()


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
    options.add_run_options(run)
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
    shared = {"parents": [common], "formatter_class": argparse.ArgumentDefaultsHelpFormatter}
    from daskstyle.networks.catalog import NETWORKS

    names = list(NETWORKS)
    gradient = kinds.add_parser(
        "gradient", help="untiled vs tiled: seconds, ratio, peak RSS", **shared
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
    networks = kinds.add_parser("networks", help="seconds per iteration of each network", **shared)
    networks.add_argument("--size", type=int, default=512, help="canvas side in px (untiled)")
    networks.add_argument(
        "--networks", nargs="+", choices=names, default=names, help="networks to time"
    )
    iteration = kinds.add_parser(
        "iteration", help="whole iterations on disk: seconds, RSS", **shared
    )
    iteration.add_argument("--size", type=int, default=2048, help="canvas side in px")
    iteration.add_argument(
        "--steps", type=int, default=2, help="timed iterations (Gram, gradient, Adam)"
    )
    iteration.add_argument(
        "--network", choices=names, default="vgg19", help="layer list (random weights)"
    )
    options.add_step_options(iteration, tile=512, precision="exact", gram="exact")
    precision = kinds.add_parser(
        "precision", help="gradient error of float32/TF32/bf16 vs float64", **shared
    )
    precision.add_argument("--size", type=int, default=256, help="canvas side in px")
    precision.add_argument(
        "--network", choices=names, default="hed-vgg16", help="network (real weights where present)"
    )
    cluster = kinds.add_parser(
        "cluster", help="a level's step graphs on simulated GPU workers: scheduler, transfers, "
        "disk, projected step", **shared
    )  # fmt: skip
    options.add_simulation_options(cluster)
    for kind in (gradient, networks, iteration, precision, cluster):
        kind.set_defaults(run=_bench)

    view = commands.add_parser(
        "view", parents=[common], help="watch a run, or look at a painting, in the browser"
    )
    view.add_argument(
        "path", help="a run directory (live while it paints) or a painting: .tif or .ome.zarr"
    )
    view.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)"
    )
    view.add_argument("--no-browser", action="store_true", help="only print the page's URL")
    view.set_defaults(run=_view)

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

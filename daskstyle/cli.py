"""The ``daskstyle`` command line. Errors end in one line on stderr (tracebacks with --debug)."""

from __future__ import annotations

import argparse
import sys

from .errors import DaskstyleError


def _bench(args: argparse.Namespace) -> None:
    from . import bench

    bench.print_gradient(args.size, args.tiles, args.dtype, args.network)


def _weights_list(args: argparse.Namespace) -> None:
    from . import weights

    for name, present, path in weights.list_networks():
        print(f"{name:10} {'present' if present else 'missing':8} {path}")


def _weights_download(args: argparse.Namespace) -> None:
    from . import weights

    print(f"{args.name}: {weights.download(args.name)}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="daskstyle", description=__doc__)
    top.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = top.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    kinds = bench.add_subparsers(dest="kind", required=True)
    gradient = kinds.add_parser("gradient", help="untiled vs tiled gradient: seconds, ratio, peak RSS")
    gradient.add_argument("--size", type=int, default=1024, help="canvas side in px (default 1024)")
    gradient.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 1024], help="core tile sizes")
    gradient.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    gradient.add_argument("--network", default="vgg19")
    gradient.set_defaults(run=_bench)

    weights = commands.add_parser("weights", help="list or download network weights")
    actions = weights.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="each network, whether its weights are present, and where").set_defaults(
        run=_weights_list
    )
    download = actions.add_parser("download", help="fetch, verify and cache a network's weights")
    download.add_argument("name", help="vgg19, vgg16 or hed-vgg16")
    download.set_defaults(run=_weights_download)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except DaskstyleError as err:
        if args.debug:
            raise
        print(f"daskstyle: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("daskstyle: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The options of ``daskstyle run`` (pictures, settings, artistic controls, cluster) and of
how each step runs, which ``daskstyle bench iteration`` shares."""

from __future__ import annotations

import argparse


def add_run_options(run: argparse.ArgumentParser) -> None:
    from daskstyle.networks.catalog import NETWORKS
    from daskstyle.settings import Settings

    d = Settings()
    run.add_argument("content", nargs="?", help="content image (PNG, JPEG, TIFF/BigTIFF)")
    run.add_argument("style", nargs="*", help="style image(s), any size")
    run.add_argument(
        "-o",
        "--output",
        required=True,
        help="result: .tif (tiled BigTIFF), .png, .jpg or .ome.zarr (OME-Zarr, multiscale)",
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
    add_control_options(run, d)
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
        "--dpi",
        type=int,
        default=d.dpi,
        help=f"print resolution the output carries, with its sRGB profile (default {d.dpi})",
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
    add_step_options(run, tile=d.tile, precision=d.precision, gram=d.gram)
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
        "--view",
        action="store_true",
        help="serve a page on 127.0.0.1 that shows the canvas (any zoom), the loss, the "
        "previews and the ETA while the run paints; its URL, printed, holds a token",
    )
    run.add_argument(
        "--dashboard",
        action="store_true",
        help="start the Dask dashboard of a cluster started here (it has no password: anyone "
        "who can reach its port can open it)",
    )


def add_step_options(parser: argparse.ArgumentParser, tile, precision: str, gram: str) -> None:
    """How each step runs, for ``daskstyle run`` and ``daskstyle bench iteration`` alike
    (with their own defaults; auto arithmetic for runs only): --tile, --precision, --gram and
    --checkpoint-every."""
    from daskstyle.engine.featurenet import PRECISIONS
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


def add_control_options(run: argparse.ArgumentParser, d) -> None:
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
        ("--regions", str, None, "a label picture (8-bit gray or palette) with the content's "
                                 "aspect ratio: label k takes the k-th style"),
        ("--region-feather", float, d.region_feather, "softness of the regions' borders: a "
                                                      "Gaussian's standard deviation in px"),
        ("--region-guides", str, d.region_guides, "how the regions reach the network's layers: "
                                                  "resize, all or inside"),
        ("--style-regions", _names, None, "per style, a label picture of the part region k "
                                          "takes from style k, separated by commas (empty: "
                                          "the whole style)"),
    ]  # fmt: skip
    for option, kind, default, meaning in controls:
        shown = "" if default is None else f" (default {default})"
        run.add_argument(option, type=kind, default=default, help=meaning + shown)


def add_simulation_options(parser: argparse.ArgumentParser) -> None:
    """``daskstyle bench cluster``: the configurations and the machines it simulates."""
    parser.add_argument("--simulate", action="store_true",
                        help="simulate GPU workers as threads that sleep for each tile's "
                             "projected time (the only way, for now)")  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=[8], help="GPU workers")
    parser.add_argument("--size", type=int, nargs="+", default=[30000], help="level side in px")
    parser.add_argument("--tile", type=int, nargs="+", default=[2048], help="core tile side in px")
    parser.add_argument("--network", default="vgg19", help="layer list (the paper's layers)")
    numbers = [  # option, default, meaning
        ("--tflops", 989.0, "a GPU's dense bf16 throughput in TFLOP/s (an H100 SXM's)"),
        ("--efficiency", 0.3, "the share of it that the network's convolutions reach"),
        ("--memory-gbps", 3350.0, "a GPU's memory bandwidth in GB/s (Adam on held state)"),
        ("--disk-gbps", 10.0, "the shared filesystem's bandwidth in GB/s, all workers together"),
        ("--link-gbps", 25.0, "each worker's network link in GB/s"),
    ]  # fmt: skip
    for option, default, meaning in numbers:
        parser.add_argument(option, type=float, default=default, help=meaning)
    parser.add_argument("--checkpoint-every", type=int, default=10,
                        help="steps between checkpoints of the state held in memory")  # fmt: skip
    parser.add_argument("--csv", help="also write the table to this CSV file")

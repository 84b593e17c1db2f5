"""Benchmarks that print figures (never timed unit tests).

``gradient``: the untiled gradient against tiled ones of several tile sizes on the same
canvas, each configuration in a fresh process so that its peak RSS is its own.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def _random_weights(network_name: str, seed: int):
    import torch

    from .networks import build_features, get_network

    torch.manual_seed(seed)
    network = get_network(network_name)
    return build_features(network, len(network.layer_names) - 1).state_dict()


def _time_gradient(size: int, tile: int | None, dtype: str, network: str) -> dict:
    """Run in a child process: one warm-up on a small canvas, then the timed evaluation."""
    import torch

    from .api import loss_and_grad

    weights = _random_weights(network, seed=0)
    rng = np.random.default_rng(0)
    canvas, content = rng.uniform(0, 255, (2, size, size, 3))
    style = rng.uniform(0, 255, (size // 2, size // 2, 3))
    kw = dict(weights=weights, dtype=np.dtype(dtype), network=network)
    loss_and_grad(canvas[:64, :64], content[:64, :64], style[:64, :64], tile=None, **kw)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loss_and_grad(canvas, content, style, tile=tile, **kw)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(tile=tile, seconds=seconds, peak_rss_mib=peak / 1024,
                base_rss_mib=rss_before / 1024, torch_threads=torch.get_num_threads())  # fmt: skip


def gradient(size: int = 1024, tiles=(256, 512, 1024), dtype: str = "float32", network: str = "vgg19"):
    """Yield one result dict per configuration: untiled first, then each tile size."""
    context = multiprocessing.get_context("spawn")
    baseline = None
    for tile in (None, *tiles):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result = pool.submit(_time_gradient, size, tile, dtype, network).result()
        baseline = baseline or result["seconds"]
        result["ratio"] = result["seconds"] / baseline
        yield result


def print_gradient(size: int, tiles, dtype: str, network: str, echo=print) -> None:
    """Run :func:`gradient` and print a table."""
    echo(f"gradient of {network} to relu5_1, {size}x{size} canvas, {dtype}, random weights")
    echo(f"{'tiles':>10} {'seconds':>9} {'vs untiled':>11} {'peak RSS MiB':>13} {'(after import)':>15}")
    for r in gradient(size, tiles, dtype, network):
        label = "untiled" if r["tile"] is None else f"{r['tile']}px"
        echo(f"{label:>10} {r['seconds']:9.2f} {r['ratio']:10.2f}x {r['peak_rss_mib']:13.0f} "
             f"{r['base_rss_mib']:15.0f}")  # fmt: skip

"""Benchmark: chunked Adam steps on a synthetic float32 canvas held in zarr on disk.

    python pipelines/bench_adam.py [--size 16384] [--tile 1024] [--steps 2] [--dir /tmp]

Creates a level state (content, canvas A/B, m A/B, v A/B: 7 arrays of size^2 x 3 float32) in a
temporary directory under ``--dir``, runs ``--steps`` fused Adam steps with a cheap synthetic
gradient (computed from the canvas chunk, no extra I/O), and prints per step: seconds, bytes
moved (reads of p, m, v and writes of p, m, v; step 1 reads no m, v: they are unwritten fill),
GB/s, and the process's peak RSS. The page cache may hold part of the data: on a machine with
less free memory than the arrays, the figures are closer to the disk's own speed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import dask
import dask.array as da
import numpy as np

from daskstyle.core.geometry import TilePlan
from daskstyle.optimise.adam import AdamSettings, advance
from daskstyle.optimise.state import LevelState

ARRAYS = 7


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384, help="canvas side in pixels")
    parser.add_argument("--tile", type=int, default=1024, help="chunk side (multiple of 16)")
    parser.add_argument("--steps", type=int, default=2, help="Adam steps to time")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="scheduler threads")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the state goes")
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args()

    plan = TilePlan((args.size, args.size), args.tile)
    nbytes = args.size * args.size * 3 * 4
    need, free = ARRAYS * nbytes, shutil.disk_usage(args.dir).free
    if need * 1.1 > free:  # leave others on the disk some room
        parser.exit(1, f"needs {need / 1e9:.1f} GB in {args.dir}, {free / 1e9:.1f} GB free\n")
    root = tempfile.mkdtemp(prefix="bench-adam-", dir=args.dir)
    print(
        f"canvas {args.size}x{args.size}x3 float32 ({nbytes / 1e9:.2f} GB per array), "
        f"chunks {args.tile}, {len(plan)} chunks, {args.workers} threads, state in {root}, "
        f"RSS after imports {peak_rss_gib():.2f} GiB"
    )
    dask.config.set(scheduler="threads", num_workers=args.workers)
    try:
        start = time.perf_counter()
        chunks = (args.tile, args.tile, 3)
        rng = da.random.default_rng(0)
        shape = (args.size, args.size, 3)
        content = rng.random(shape, dtype=np.float32, chunks=chunks) * np.float32(255)
        state = LevelState.create(f"{root}/level", content, content, plan, AdamSettings(lr=1.0))
        seconds = time.perf_counter() - start
        print(
            f"create: {seconds:.1f} s ({2 * nbytes / 1e9 / seconds:.2f} GB/s written), "
            f"peak RSS {peak_rss_gib():.2f} GiB"
        )
        for step in range(1, args.steps + 1):
            canvas = state.canvas()
            grad = canvas * np.float32(0.01) - np.float32(1.0)
            start = time.perf_counter()
            largest, mean, _ = advance(state, grad)
            seconds = time.perf_counter() - start
            moved = (6 if step > 1 else 4) * nbytes
            print(
                f"step {step}: {seconds:.1f} s, {moved / 1e9:.1f} GB moved, "
                f"{moved / 1e9 / seconds:.2f} GB/s, change max {largest:.3f} mean {mean:.3f}, "
                f"peak RSS {peak_rss_gib():.2f} GiB"
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

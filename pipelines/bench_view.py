"""Benchmark: ``daskstyle view`` serving Deep Zoom tiles of a 16,384² level, at every zoom.

    python pipelines/bench_view.py [--size 16384] [--chunk 2048] [--tiles 6] [--dir /tmp]
                                   [--keep DIR]

Writes a run directory of one level in the run's own layout (a float32 canvas in zarr,
uncompressed, each chunk with its crc32c, as ``level1/canvas0`` holds it), times its overview
(``daskstyle.optimise.overview``: what a run adds at each checkpoint), then, in a fresh
process, serves it with ``daskstyle view`` and fetches ``--tiles`` tiles spread over every
Deep Zoom level over HTTP with the token: first cold (the files dropped from the page cache
with ``posix_fadvise``, the viewer's chunk cache empty), then warm (the same tiles again).
Prints per level the slowest and the median seconds per tile, and the serving process's peak
RSS.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np


def peak_rss_gib() -> float:
    """This process's peak RSS since it began (VmHWM, which a new program image resets, unlike
    ``ru_maxrss``, which keeps what the forking parent had)."""
    with open("/proc/self/status") as status:
        found = next(line for line in status if line.startswith("VmHWM:"))
    return int(found.split()[1]) / 2**20  # kB


def make(workdir: Path, side: int, chunk: int) -> None:
    """A run directory with level 1 of ``side``² px in ``chunk``-px chunks, and its overview."""
    import zarr

    from daskstyle.optimise import overview
    from daskstyle.optimise.state import create_array, store_with_checksums

    workdir.mkdir()
    (workdir / "run.json").write_text(json.dumps({"daskstyle": 1, "levels": 1}))
    group = zarr.open_group(workdir / "level1", mode="w")
    canvas = create_array(workdir / "level1" / "canvas0", (side, side, 3), (chunk, chunk, 3),
                          np.float32)  # fmt: skip
    noise = da.random.default_rng(0).uniform(0, 255, (side, side, 3), chunks=(chunk, chunk, 3))
    start = time.perf_counter()
    store_with_checksums([noise.astype(np.float32)], [canvas])
    print(f"canvas {side}x{side} float32 in {chunk}-px chunks: {time.perf_counter() - start:.0f} s")
    settings = {"tpc": 12.8, "stop": 0.1, "max_iters": 100, "lr": None}
    group.attrs.put({"step": 1, "current": 0, "lr": 1.0, "pending": None, "settings": settings,
                     "history": [[1.0, 1.0, 1.0, 1.0]], "run_id": "bench"})  # fmt: skip
    start = time.perf_counter()
    overview.write(da.from_zarr(canvas), workdir / "level1" / "overview",
                   {"step": 1, "current": 0, "run_id": "bench"})  # fmt: skip
    shapes = overview.overview_shapes((side, side))
    print(f"overview, {len(shapes)} halved levels down to {shapes[-1][1]} px: "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip


def drop_page_cache(folder: Path) -> None:
    """Ask the kernel to forget the cached pages of every file under ``folder``."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def serve_and_fetch(workdir: Path, tiles: int) -> None:
    """Serve ``workdir`` and time tiles at every level, cold and warm."""
    from daskstyle.frontends.view import deepzoom
    from daskstyle.frontends.view.server import Viewer
    from daskstyle.frontends.view.sources import open_source

    viewer = Viewer(open_source(workdir)).start()
    before = peak_rss_gib()
    shape = viewer.source.pyramid("level/1")[0].levels[0].shape
    top = deepzoom.max_level(shape)
    rng = np.random.default_rng(1)
    wanted = {}
    for z in range(top + 1):
        h, w = deepzoom.level_shape(shape, z)
        rows, cols = -(-h // deepzoom.TILE_SIZE), -(-w // deepzoom.TILE_SIZE)
        picks = {(int(rng.integers(cols)), int(rng.integers(rows))) for _ in range(tiles)}
        wanted[z] = sorted(picks)
    connection = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=60)

    def fetch(z, x, y) -> float:
        start = time.perf_counter()
        connection.request("GET", f"/level/1_files/{z}/{x}_{y}.png?token={viewer.token}")
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        return time.perf_counter() - start

    drop_page_cache(workdir)
    cold = {z: [fetch(z, x, y) for x, y in wanted[z]] for z in range(top, -1, -1)}
    warm = {z: [fetch(z, x, y) for x, y in wanted[z]] for z in range(top, -1, -1)}
    print(
        f"tiles of {deepzoom.TILE_SIZE} px, {tiles} per level (fewer where the level has "
        "fewer), cold: files out of the page cache, chunk cache empty; warm: again"
    )
    print("level  side px  tiles  cold max s  cold median s  warm max s")
    for z in range(top, -1, -1):
        side = max(deepzoom.level_shape(shape, z))
        print(f"{z:5}  {side:7}  {len(cold[z]):5}  {max(cold[z]):10.3f}  "
              f"{statistics.median(cold[z]):13.3f}  {max(warm[z]):10.3f}")  # fmt: skip
    slowest = max(max(times) for times in cold.values())
    print(f"slowest tile {slowest:.3f} s; peak RSS {peak_rss_gib():.2f} GiB "
          f"({before:.2f} GiB once started)")  # fmt: skip
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384, help="canvas side in pixels")
    parser.add_argument("--chunk", type=int, default=2048, help="the canvas's chunk (tile) side")
    parser.add_argument("--tiles", type=int, default=6, help="tiles fetched per Deep Zoom level")
    parser.add_argument("--dir", default=None, help="where the temporary run directory goes")
    parser.add_argument("--keep", help="make the run directory here, once, and keep it")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the fresh process's run directory
    args = parser.parse_args()
    if args.serve:
        serve_and_fetch(Path(args.serve), args.tiles)
        return
    serve = [sys.executable, __file__, "--tiles", str(args.tiles), "--serve"]
    if args.keep:  # made once, served as often as asked
        workdir = Path(args.keep)
        if not workdir.exists():
            make(workdir, args.size, args.chunk)
        subprocess.run([*serve, str(workdir)], check=True)
        return
    with tempfile.TemporaryDirectory(prefix="daskstyle-bench-view-", dir=args.dir) as folder:
        workdir = Path(folder) / "run.daskstyle"
        make(workdir, args.size, args.chunk)
        subprocess.run([*serve, str(workdir)], check=True)


if __name__ == "__main__":
    main()

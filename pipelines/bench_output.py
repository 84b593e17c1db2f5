"""Benchmark: the last stage of a production, a zarr canvas written as a pyramid BigTIFF.

    python pipelines/bench_output.py [--size 16384] [--tile 512] [--dir /tmp] [--no-pyramid]

Fills a float32 canvas of size^2 x 3 in zarr (as a run's final level state holds it) with
uniform noise, the worst case for the TIFF's zlib compression, then times
``daskstyle.io.images.write_image`` into a tiled BigTIFF with halved levels, as ``daskstyle run
-o out.tif --pyramid`` does. Prints seconds, megapixels per second, the file's size and the
process's peak RSS: the writer streams one band of tiles at a time, so memory stays bounded
whatever the size.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import dask.array as da
import zarr

from daskstyle.io import images


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384, help="canvas side in pixels")
    parser.add_argument("--tile", type=int, default=512, help="zarr chunk and TIFF tile side")
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    parser.add_argument("--no-pyramid", action="store_true", help="full resolution only")
    args = parser.parse_args()
    side, tile = args.size, args.tile
    with tempfile.TemporaryDirectory(prefix="daskstyle-bench-output-", dir=args.dir) as folder:
        store = zarr.create_array(str(Path(folder) / "canvas"), shape=(side, side, 3),
                                  chunks=(tile, tile, 3), dtype="float32", compressors=None)  # fmt: skip
        noise = da.random.default_rng(0).uniform(0, 255, (side, side, 3), chunks=(tile, tile, 3))
        da.store(noise.astype("float32"), store, lock=False)
        output = Path(folder) / "out.tif"
        start = time.perf_counter()
        images.write_image(output, da.from_zarr(store), pyramid=not args.no_pyramid, tile=tile)
        seconds = time.perf_counter() - start
        levels = len(images.pyramid_shapes((side, side), tile)) if not args.no_pyramid else 1
        print(f"{side}x{side} float32 zarr canvas -> BigTIFF, {tile}-px tiles, zlib, "
              f"{levels} level(s)")  # fmt: skip
        print(f"{seconds:.1f} s ({side * side / 1e6 / seconds:.1f} MP/s), "
              f"{output.stat().st_size / 1e9:.2f} GB, peak RSS {peak_rss_gib():.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()

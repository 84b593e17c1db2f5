"""Every GPU check in one short run, for a lent GPU machine that has torch and CuPy only.

    bash pipelines/gpu_bundle.sh                       # here: the wheels that machine lacks
    pip install --no-index --no-deps .gpu-bundle/*.whl && python pipelines/gpu_check.py --out DIR

1. Exactness on CUDA with seeded random VGG-19 weights and all default layers: tiled ==
   untiled loss and gradient in float64 and float32, and CUDA float64 == CPU float64.
2. Gradient error of float32, TF32 and bf16 autocast against float64 (``bench precision``).
3. Seconds per megapixel of whole iterations (Gram pass, gradient pass, Adam on zarr) with
   512-px tiles for each precision (``bench iteration``), on the threaded scheduler.
4. Adam on CuPy equals Adam on NumPy on one 2048 x 2048 chunk; seconds of each, host
   transfers included as in a run.

Figures go to stdout and to DIR/gpu_check.txt. Exits 1 if a check fails, 2 without CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daskstyle import bench, kernels, optim
from daskstyle.api import loss_and_grad
from daskstyle.networks import random_weights


def relative_error(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_exactness(echo) -> bool:
    weights = random_weights("vgg19")
    rng = np.random.default_rng(0)
    canvas, content = rng.uniform(0, 255, (2, 336, 464, 3))
    style = rng.uniform(0, 255, (200, 144, 3))
    ok = True
    for dtype, bound in ((np.float64, 1e-9), (np.float32, 1e-4)):
        whole_loss, whole = loss_and_grad(canvas, content, style, weights=weights, dtype=dtype)
        loss, tiled = loss_and_grad(canvas, content, style, weights=weights, dtype=dtype, tile=176)
        error = relative_error(tiled, whole)
        ok &= error < bound and abs(loss - whole_loss) <= bound * abs(whole_loss)
        echo(
            f"CUDA {np.dtype(dtype).name}: tiled (176 px, 6 tiles) vs untiled gradient {error:.1e}"
        )
    original = kernels.device
    kernels.device = lambda: torch.device("cpu")
    kernels._models.clear()
    try:
        _, cpu = loss_and_grad(canvas, content, style, weights=weights, dtype=np.float64, tile=176)
    finally:
        kernels.device = original
        kernels._models.clear()
    _, cuda = loss_and_grad(canvas, content, style, weights=weights, dtype=np.float64, tile=176)
    error = relative_error(cuda, cpu)
    echo(f"float64 CUDA vs CPU gradient {error:.1e}")
    return ok and error < 1e-9


def check_cupy_adam(echo) -> bool:
    import cupy

    rng = np.random.default_rng(0)
    param, grad, m, v = rng.standard_normal((4, 2048, 2048, 3)).astype(np.float32)
    param, v = param * 100 + 128, np.abs(v)
    results = {}
    for name, module in (("NumPy", np), ("CuPy", cupy)):
        optim.update_module = lambda module=module: module
        optim._adam_block(param, grad, m, v, 3, 1.5, 0.9, 0.99, 1e-6)  # warm-up
        start = time.perf_counter()
        results[name] = optim._adam_block(param, grad, m, v, 3, 1.5, 0.9, 0.99, 1e-6)
        seconds = time.perf_counter() - start
        echo(f"Adam on one 2048x2048x3 float32 chunk with {name}: {seconds * 1e3:.1f} ms")
    error = float(np.abs(results["CuPy"] - results["NumPy"]).max())
    echo(f"CuPy vs NumPy Adam: max |difference| {error:.1e} (0-255 scale)")
    return error < 1e-3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="directory for gpu_check.txt")
    parser.add_argument(
        "--size", type=int, default=2048, help="canvas side of the iteration timings"
    )
    args = parser.parse_args()
    report = Path(args.out) / "gpu_check.txt"
    lines: list[str] = []

    def echo(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)
        report.write_text("\n".join(lines) + "\n")

    if not torch.cuda.is_available():
        echo("no CUDA device: nothing to check")
        return 2
    echo(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    ok = check_exactness(echo)
    ok &= check_cupy_adam(echo)
    bench.print_precision(512, "vgg19", echo=echo)
    for precision in ("exact", "tf32", "bf16"):
        bench.print_iteration(args.size, 512, "vgg19", 2, precision, echo=echo)
    echo("all checks passed" if ok else "A CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

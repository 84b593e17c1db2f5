"""Every GPU check in one short run, for a lent GPU machine with torch and CuPy, no registry.

Here, with HED's weights (`daskstyle weights download hed-vgg16`), `bash pipelines/gpu_bundle.sh`
fills .gpu-bundle/ (git-ignored: the device tool must carry it, carry [".gpu-bundle"]); there:

    python3 -m pip install --no-index --no-deps --target .deps .gpu-bundle/*.whl;
    PYTHONPATH=.:.deps python3 pipelines/gpu_check.py --out "$OUT"

A preflight first: versions of Python, torch, CUDA, CuPy, dask, distributed, zarr, numcodecs,
NumPy, and where each comes from (the wheels are unpacked into .deps if pip did not install
them). Then each section runs in a process group of its own within a time budget, all within
--deadline; one that raises (traceback), crashes or hangs (its stack) is reported and the next
runs. Lines go to stdout and DIR/gpu_check.txt as made: a killed run leaves what it measured.
Exit status 0 if every section passed, 1 if one did not, 2 without a CUDA device.

- adam: Adam's array module (CuPy only if a tiny update runs; DASKSTYLE_NO_CUPY=1: NumPy);
  CuPy Adam == NumPy Adam on one 2048² chunk, ms of each.
- exactness: random VGG-19, default layers: tiled == untiled in float64 and float32 on CUDA;
  CUDA float64 == CPU float64.
- cluster: `--cluster local`'s cluster (worker processes with the {"GPU": 1} resource): its
  tiled loss_and_grad == the threaded scheduler's.
- precision: gradient and loss errors of float32, TF32, bf16 autocast against float64 with
  HED's trained VGG-16 (the bundle's float16 copy); float32 after TF32 must not change.
- timing-exact, -tf32, -bf16: three whole steps (Gram pass, gradient pass, Adam on zarr) of a
  random VGG-19 computed as `--cluster local` does; s/MP of steps 2 on (step 1 finds the rate).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import functools
import importlib.util
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUNDLE, DEPS = ROOT / ".gpu-bundle", ROOT / ".deps"
HED_FILE = "hed-vgg16-relu5_1-float16.pth"  # written by gpu_bundle.sh
REPORT = "gpu_check.txt"
PRECISIONS = ("exact", "tf32", "bf16")
EXACT_SHAPE, EXACT_TILE = (336, 464), 176  # exactness and cluster: 6 tiles, ragged edges
ADAM_SIDE = 2048  # the chunk of the CuPy vs NumPy Adam comparison
PREFLIGHT = ("cupy", "dask", "distributed", "zarr", "numcodecs", "numpy")


class Report:
    """Each line to stdout and appended to the report file at once."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        with open(self.path, "a") as report:
            report.write(line + "\n")


def one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def use_deps(echo) -> None:
    """.deps first on the import path of this process and every process it starts; the
    bundle's wheels unpacked there first if pip did not install them."""
    wheels = sorted(BUNDLE.glob("*.whl"))
    sys.path.insert(1, str(DEPS))
    if wheels and importlib.util.find_spec("distributed") is None:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(DEPS)
        importlib.invalidate_caches()
        echo(f"unpacked the {len(wheels)} wheels of {BUNDLE.name} into {DEPS.name}")
    paths = [str(ROOT), str(DEPS), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)


def preflight(echo) -> bool:
    """Versions, and where each module comes from (after :func:`use_deps`); whether a CUDA
    device is usable."""
    echo(f"python {platform.python_version()} ({sys.executable})")
    use_deps(echo)
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
        device = torch.cuda.get_device_properties(0) if cuda else "no CUDA device"
        echo(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
             f"cuDNN {torch.backends.cudnn.version()}, {device}")  # fmt: skip
    except Exception as err:  # a broken install raises more than ImportError
        echo(f"torch unusable ({one_line(err)})")
    for name in PREFLIGHT:
        try:
            module = importlib.import_module(name)
            echo(f"{name} {module.__version__} ({Path(module.__file__).parent.parent})")
        except Exception as err:
            echo(f"{name} missing ({one_line(err)})")
    return cuda


def run_sections(sections, command, echo, deadline: float) -> dict[str, str]:
    """Run ``command(name, budget)`` for each (name, budget) in a new process group, killed
    with its children when the budget or the ``deadline`` (a ``time.monotonic()``) is
    reached; say the status and seconds of each. Returns name -> status."""
    statuses = {}
    for name, budget in sections:
        budget = min(budget, int(deadline - time.monotonic()) - 5)
        if budget < 10:
            statuses[name] = "skipped (out of time)"
            echo(f"== {name}: skipped, out of time")
            continue
        echo(f"== {name} (at most {budget} s)")
        start = time.monotonic()
        process = subprocess.Popen(command(name, budget), start_new_session=True)
        try:
            code = process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            code = None
        finally:  # also what it left running (workers, children), and when this one is stopped
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        statuses[name] = _status(code, budget)
        echo(f"== {name}: {statuses[name]} in {time.monotonic() - start:.1f} s")
    return statuses


def _status(code: int | None, budget: int) -> str:
    if code is None:
        return f"TIMED OUT after {budget} s (killed)"
    if code < 0:
        return f"CRASHED ({signal.Signals(-code).name})"
    return {0: "passed", 1: "FAILED", 3: "ERROR"}.get(code, f"CRASHED (exit status {code})")


def run_here(function, echo, *args) -> int:
    """``function(echo, *args)`` in this process: exit status 0 passed (True or None: figures
    only), 1 failed (False), 3 raised (traceback to ``echo``)."""
    try:
        ok = function(echo, *args)
    except Exception:
        for line in traceback.format_exc().rstrip().splitlines():
            echo(line)
        return 3
    return 1 if ok is False else 0


def relative_error(a, b) -> float:
    return float(abs(a - b).max() / abs(b).max())


def check_adam(echo, args) -> bool | None:
    import warnings

    import numpy as np

    from daskstyle.optimise import adam

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = adam.update_module()
    for warning in caught:
        echo(str(warning.message))
    if module is np:
        forced = os.environ.get("DASKSTYLE_NO_CUPY", "0") not in ("", "0")
        echo("Adam runs on NumPy: " + ("DASKSTYLE_NO_CUPY is set" if forced else "no usable CuPy"))
        return None if forced else False
    echo(f"Adam runs on CuPy {module.__version__} (a tiny update ran on the GPU)")
    rng = np.random.default_rng(0)
    param, grad, m, v = rng.standard_normal((4, ADAM_SIDE, ADAM_SIDE, 3)).astype(np.float32)
    param, v = param * 100 + 128, np.abs(v)
    results = {}
    for name, xp in (("NumPy", np), ("CuPy", module)):
        adam.update_module = lambda xp=xp: xp
        seconds = []
        for _ in range(4):  # the first warms up
            start = time.perf_counter()
            results[name] = np.stack(adam.Update("step", 3, 1.5).apply(param, grad, m, v))
            seconds.append(time.perf_counter() - start)
        echo(f"Adam on one {ADAM_SIDE}² x 3 float32 chunk, host transfers included, {name}: "
             f"{min(seconds[1:]) * 1e3:.1f} ms")  # fmt: skip
    error = float(np.abs(results["CuPy"] - results["NumPy"]).max())
    echo(f"CuPy vs NumPy Adam: max |difference| {error:.1e} (0-255 scale)")
    return error < 1e-3


def _noise(height: int, width: int):
    import numpy as np

    rng = np.random.default_rng(0)
    canvas, content = rng.uniform(0, 255, (2, height, width, 3))
    return canvas, content, rng.uniform(0, 255, (height // 2, width // 3, 3))


def check_exactness(echo, args) -> bool:
    import numpy as np
    import torch

    from daskstyle.api import loss_and_grad
    from daskstyle.engine import featurenet
    from daskstyle.networks.catalog import random_weights

    images, weights = _noise(*EXACT_SHAPE), random_weights("vgg19")
    evaluate = functools.partial(loss_and_grad, *images, weights=weights)
    ok = True
    for dtype, bound in ((np.float32, 1e-4), (np.float64, 1e-9)):
        whole_loss, whole = evaluate(dtype=dtype)
        loss, cuda = evaluate(dtype=dtype, tile=EXACT_TILE)
        error = relative_error(cuda, whole)
        ok &= error < bound and abs(loss - whole_loss) <= bound * abs(whole_loss)
        echo(f"CUDA {np.dtype(dtype).name}: {EXACT_TILE}-px tiles vs untiled, gradient {error:.1e}")
    featurenet.device = lambda: torch.device("cpu")
    featurenet._models.clear()
    error = relative_error(cuda, evaluate(dtype=np.float64, tile=EXACT_TILE)[1])
    echo(f"float64 CUDA vs CPU gradient {error:.1e}")
    return ok and error < 1e-9


def _worker_adam_module() -> str:
    from daskstyle.optimise import adam

    return adam.update_module().__name__


def check_cluster(echo, args) -> bool:
    import numpy as np

    from daskstyle.api import loss_and_grad
    from daskstyle.compute.executor import Executor
    from daskstyle.networks.catalog import random_weights

    images, weights = _noise(*EXACT_SHAPE), random_weights("vgg19")
    evaluate = functools.partial(loss_and_grad, *images, weights=weights, tile=EXACT_TILE)
    bounds = {np.float64: 1e-9, np.float32: 1e-5}
    threaded = {dtype: evaluate(dtype=dtype) for dtype in bounds}
    with Executor("local", dashboard=False).open() as session:  # as --cluster local opens it
        client = session.client
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        adam = sorted(set(client.run(_worker_adam_module).values()))
        echo(f"local cluster: resources {[w.get('resources') for w in workers]}, threads "
             f"{[w['nthreads'] for w in workers]}, Adam on {adam}")  # fmt: skip
        ok = session.resources == {"GPU": 1}
        for dtype, bound in bounds.items():
            start = time.perf_counter()
            loss, grad = evaluate(dtype=dtype)
            seconds = time.perf_counter() - start
            error = relative_error(grad, threaded[dtype][1])
            loss_error = abs(loss - threaded[dtype][0]) / abs(threaded[dtype][0])
            ok &= error <= bound and loss_error <= bound
            echo(f"{np.dtype(dtype).name}, {EXACT_TILE}-px tiles, cluster vs threaded: gradient "
                 f"{error:.1e}, loss {loss_error:.1e} (cluster: {seconds:.1f} s)")  # fmt: skip
    return ok


def _example_images(size: int):
    import numpy as np
    from PIL import Image

    def read(name, side):
        with Image.open(ROOT / "daskstyle" / "data" / f"example_{name}.png") as image:
            rgb = image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            return np.asarray(rgb, dtype=np.float64)

    content = read("content", size)
    noise = np.random.default_rng(0).normal(0, 32, content.shape)
    return np.clip(content + noise, 0, 255), content, read("style", size // 2)


def check_precision(echo, args) -> bool:
    import numpy as np

    from daskstyle.api import loss_and_grad
    from daskstyle.networks.catalog import read_state_dict

    state = read_state_dict(Path(args.bundle) / HED_FILE)  # float16, weights_only=True
    images = _example_images(args.precision_size)
    kw = dict(network="hed-vgg16", tile=None)
    exact_loss, exact = loss_and_grad(*images, weights={k: v.double() for k, v in state.items()},
                                      dtype=np.float64, **kw)  # fmt: skip
    weights = {k: v.float() for k, v in state.items()}
    echo(f"error vs float64, HED's VGG-16 (trained, float16 copy) to relu5_1, untiled "
         f"{args.precision_size}², example pictures: max|Δg|/max|g|, |Δloss|/loss")  # fmt: skip
    errors = {}
    for name, precision in (("float32", "exact"), ("tf32", "tf32"),  # the exact model is
                            ("float32 after tf32", "exact"),  # reused: TF32 must be off
                            ("bf16 autocast", "bf16")):  # fmt: skip
        loss, grad = loss_and_grad(*images, weights=weights, dtype=np.float32,
                                   precision=precision, **kw)  # fmt: skip
        errors[name] = relative_error(grad, exact)
        echo(f"{name:>20} {errors[name]:.2e} {abs(loss - exact_loss) / exact_loss:.2e}")
    return errors["float32 after tf32"] <= 2 * errors["float32"] + 1e-7


def time_steps(echo, args, precision: str) -> None:
    import dask.array as da
    import numpy as np

    from daskstyle.api import make_plan, style_graph
    from daskstyle.compute.executor import Executor
    from daskstyle.networks.catalog import random_weights
    from daskstyle.optimise.adam import AdamSettings
    from daskstyle.optimise.level import open_level
    from daskstyle.optimise.state import LevelState

    size, tile = args.size, args.tile
    canvas, content, style = (da.from_array(x.astype(np.float32), chunks=(tile, tile, 3))
                              for x in _noise(size, size))  # fmt: skip
    with (
        Executor("local", dashboard=False, tile=tile).open() as session,  # as --cluster local
        tempfile.TemporaryDirectory(prefix="gpu-check-") as directory,
    ):
        echo(f"{size}x{size} canvas, {tile}-px tiles, random VGG-19, float32 ({precision}), "
             f"local cluster, network tasks ask for {session.resources}")  # fmt: skip
        graph = style_graph(network="vgg19", weights=random_weights("vgg19"),
                            precision=precision, resources=session.resources)  # fmt: skip
        plan = make_plan((size, size), tile, graph.halo.align)
        style_plan = make_plan(style.shape[:2], tile, graph.halo.align)
        adam = AdamSettings(max_iters=args.steps, stop=0.0)
        state = LevelState.create(Path(directory) / "level", content, canvas, plan, adam)
        seconds = []
        for step in open_level(graph, state, plan, [(style, style_plan)], (1.0,)).steps():
            seconds.append(step.seconds)
            note = " (with the learning-rate pass and start-up: not counted)"
            echo(f"step {step.step}: {len(plan)} tiles, {step.seconds:.2f} s"
                 f"{note if step.step == 1 else ''}")  # fmt: skip
    mean = sum(seconds[1:]) / (args.steps - 1)
    echo(f"{precision}: steps 2-{args.steps}: {mean:.2f} s per step, "
         f"{mean / (size * size / 1e6):.3f} s/MP")  # fmt: skip


SECTIONS = {
    "adam": (check_adam, 60),
    "exactness": (check_exactness, 120),
    "cluster": (check_cluster, 120),
    "precision": (check_precision, 90),
    **{f"timing-{p}": (functools.partial(time_steps, precision=p), 120) for p in PRECISIONS},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="directory for gpu_check.txt")
    parser.add_argument("--deadline", type=int, default=450, help="seconds for all sections")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only")
    parser.add_argument("--size", type=int, default=2048, help="canvas side of the timings")
    parser.add_argument("--tile", type=int, default=512, help="core tile side of the timings")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (2 or more)")
    parser.add_argument("--precision-size", type=int, default=1024, help="side, precision")
    parser.add_argument("--bundle", default=str(BUNDLE), help=f"folder holding {HED_FILE}")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # a child's
    parser.add_argument("--budget", type=int, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be 2 or more: step 1 is not counted")
    echo = Report(Path(args.out) / REPORT)
    if args.section:  # in a child: a crash's or a hang's Python stack goes to the report
        report = open(echo.path, "a")  # open until the process ends, as faulthandler needs
        faulthandler.enable(file=report)
        faulthandler.dump_traceback_later(max(1, args.budget - 3), file=report)
        return run_here(SECTIONS[args.section][0], echo, args)
    echo.path.parent.mkdir(parents=True, exist_ok=True)
    echo.path.write_text("")
    deadline = time.monotonic() + args.deadline
    if not preflight(echo):
        echo("no CUDA device: nothing to check")
        return 2
    forwarded = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k in ("out", "size", "tile", "steps", "precision_size", "bundle")]  # fmt: skip

    def command(name: str, budget: int) -> list[str]:
        return [sys.executable, __file__, f"--section={name}", f"--budget={budget}", *forwarded]

    chosen = [(name, SECTIONS[name][1]) for name in (args.only or SECTIONS)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the running section goes too
    statuses = run_sections(chosen, command, echo, deadline)
    failed = [name for name, status in statuses.items() if status != "passed"]
    echo("all checks passed" if not failed else f"NOT PASSED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

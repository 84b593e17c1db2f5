"""pipelines/gpu_check.py as far as a CPU can check it: the CuPy probe behind Adam's array
module, TF32 flags set on every use of a model, the section runner, and each section's code
path at tiny sizes (their figures mean something on a GPU only)."""

import importlib.util
import os
import re
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from daskstyle.engine import featurenet
from daskstyle.networks.catalog import random_weights
from daskstyle.optimise import adam

GPU_CHECK = Path(__file__).resolve().parent.parent / "pipelines" / "gpu_check.py"
NUMBER = r"\d\.\d+e[-+]\d\d"


@pytest.fixture(scope="module")
def gpu_check():
    """The script as a module (not in sys.modules: Dask pickles its functions by value, as
    when it runs as __main__)."""
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_cupy(full=np.full):
    """A CuPy that sees one device and computes with NumPy; ``full`` may fail like a CuPy
    that cannot compile its featurenet."""
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime), full=full,
                                 stack=np.stack, asarray=np.asarray, get_array_module=lambda *a: np,
                                 __version__="fake")  # fmt: skip


@pytest.fixture
def choose(monkeypatch):
    """``adam.update_module()`` with ``cupy`` installed and DASKSTYLE_NO_CUPY=``forced``."""

    def choose(cupy, forced=None):
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        if forced is None:
            monkeypatch.delenv("DASKSTYLE_NO_CUPY", raising=False)
        else:
            monkeypatch.setenv("DASKSTYLE_NO_CUPY", forced)
        adam.update_module.cache_clear()
        try:
            return adam.update_module()
        finally:
            adam.update_module.cache_clear()

    return choose


def test_cupy_is_chosen_when_a_tiny_adam_step_runs_on_it(choose):
    cupy = fake_cupy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose(cupy) is cupy


def test_a_cupy_that_cannot_compile_falls_back_to_numpy_with_one_line(choose):
    def full(*args, **kwargs):
        raise RuntimeError("nvrtc: error: invalid value for --gpu-architecture\n(more)")

    with pytest.warns(RuntimeWarning) as caught:
        assert choose(fake_cupy(full)) is np
    assert [str(w.message) for w in caught] == [
        "Adam runs on NumPy: CuPy fails on this GPU (RuntimeError: nvrtc: error: invalid value "
        "for --gpu-architecture)"
    ]


@pytest.mark.parametrize("forced, numpy", [("1", True), ("0", False), ("", False)])
def test_the_environment_can_force_numpy(choose, forced, numpy):
    cupy = fake_cupy()
    assert choose(cupy, forced) is (np if numpy else cupy)


def test_tf32_flags_follow_the_model_in_use():
    """An exact model reused after a TF32 one has run computes without TF32 (flags are
    process-wide; they used to be set only when a model was built)."""
    state = random_weights("vgg19")
    specs = {p: featurenet.ModelSpec("vgg19", ("relu1_1",), "float32", "tf32-test", p)
             for p in ("exact", "tf32")}  # fmt: skip
    image = torch.zeros(1, 3, 16, 16, device=featurenet.device())
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        exact = featurenet.get_model(specs["exact"], state)
        featurenet.get_model(specs["tf32"], state)(image)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert featurenet.get_model(specs["exact"], state) is exact  # reused, not rebuilt
        exact(image)
        assert not (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
    finally:
        featurenet.set_tf32(False)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        for spec in specs.values():
            featurenet._models.pop(spec, None)


def test_a_section_that_raises_leaves_its_figures_and_traceback(gpu_check, tmp_path):
    echo = gpu_check.Report(tmp_path / "gpu_check.txt")

    def section(echo, args):
        echo("figure 1.5")
        raise ValueError("CuPy cannot compile")

    assert gpu_check.run_here(section, echo, None) == 3
    text = echo.path.read_text()
    assert text.startswith("figure 1.5\nTraceback (most recent call last):\n")
    assert text.endswith("ValueError: CuPy cannot compile\n")
    assert gpu_check.run_here(lambda echo, args: False, echo, None) == 1
    assert gpu_check.run_here(lambda echo, args: None, echo, None) == 0


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sections_run_on_after_failures_crashes_and_timeouts(gpu_check, tmp_path):
    report, child = tmp_path / "gpu_check.txt", tmp_path / "child.pid"
    code = {
        "passes": "print('figure 1.5')",
        "fails": "raise SystemExit(1)",
        "raises": "raise SystemExit(3)",
        "crashes": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        "hangs": "import subprocess, sys, time; sleep = 'import time; time.sleep(60)'; "
                 "pid = subprocess.Popen([sys.executable, '-c', sleep]).pid; "
                 f"open({str(child)!r}, 'w').write(str(pid)); time.sleep(60)",
        "reads": f"assert 'hangs: TIMED OUT' in open({str(report)!r}).read()",  # as it goes
    }  # fmt: skip
    sections = [(name, 10 if name == "hangs" else 60) for name in code]
    command = lambda name, budget: [sys.executable, "-c", code[name]]
    echo, deadline = gpu_check.Report(report), time.monotonic() + 200
    statuses = gpu_check.run_sections(sections, command, echo, deadline)
    assert statuses == {
        "passes": "passed",
        "fails": "FAILED",
        "raises": "ERROR",
        "crashes": "CRASHED (SIGKILL)",
        "hangs": "TIMED OUT after 10 s (killed)",
        "reads": "passed",
    }
    text = report.read_text()
    assert text.startswith("== passes (at most 60 s)\n== passes: passed in ")
    assert re.search(r"\n== hangs: TIMED OUT after 10 s \(killed\) in 1\d\.\d s\n", text)
    deadline = time.monotonic() + 5
    while _alive(int(child.read_text())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(child.read_text())), "the hung section's own child survived"


def test_sections_past_the_deadline_are_skipped(gpu_check, tmp_path):
    echo = gpu_check.Report(tmp_path / "gpu_check.txt")
    statuses = gpu_check.run_sections([("late", 60)], None, echo, time.monotonic() + 12)
    assert statuses == {"late": "skipped (out of time)"}
    assert echo.path.read_text() == "== late: skipped, out of time\n"


@pytest.mark.parametrize("forced, code, line", [
    ("1", 0, "Adam runs on NumPy: DASKSTYLE_NO_CUPY is set"),
    ("0", 1, "Adam runs on NumPy: no usable CuPy"),
])  # fmt: skip
def test_the_adam_section_says_why_numpy(tmp_path, forced, code, line):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    done = subprocess.run(
        [sys.executable, str(GPU_CHECK), "--section=adam", f"--out={tmp_path}"],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "DASKSTYLE_NO_CUPY": forced},
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    assert (tmp_path / "gpu_check.txt").read_text() == line + "\n"


def test_the_adam_comparison_runs(gpu_check, monkeypatch):
    """With a CuPy that computes with NumPy: the comparison's code path, not its figures."""
    monkeypatch.setattr(gpu_check, "ADAM_SIDE", 32)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    monkeypatch.delenv("DASKSTYLE_NO_CUPY", raising=False)
    choose = adam.update_module
    monkeypatch.setattr(adam, "update_module", choose)  # the section replaces it
    choose.cache_clear()
    lines = []
    try:
        assert gpu_check.check_adam(lines.append, None) is True
    finally:
        choose.cache_clear()
    assert lines[0] == "Adam runs on CuPy fake (a tiny update ran on the GPU)"
    assert lines[-1] == "CuPy vs NumPy Adam: max |difference| 0.0e+00 (0-255 scale)"


@pytest.fixture
def tiny(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check, "EXACT_SHAPE", (48, 80))
    monkeypatch.setattr(gpu_check, "EXACT_TILE", 32)
    monkeypatch.setattr(
        featurenet, "device", featurenet.device
    )  # the exactness section replaces it
    return gpu_check


def test_the_exactness_section_runs(tiny):
    lines = []
    assert tiny.check_exactness(lines.append, None) is True
    assert re.fullmatch(rf"CUDA float32: 32-px tiles vs untiled, gradient {NUMBER}", lines[0])
    assert re.fullmatch(rf"float64 CUDA vs CPU gradient {NUMBER}", lines[-1])


def test_the_cluster_section_compares_with_the_threaded_scheduler(tiny):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: pipelines/gpu_check.py checks the cluster for real")
    lines = []
    assert tiny.check_cluster(lines.append, None) is False  # no {"GPU": 1} resource on a CPU
    assert re.fullmatch(r"local cluster: resources \[{}\], threads \[\d+\], Adam on \['numpy'\]",
                        lines[0])  # fmt: skip
    pattern = (
        rf"(float\d\d), 32-px tiles, cluster vs threaded: gradient ({NUMBER}), loss ({NUMBER}) .*"
    )
    found = {
        m[1]: max(float(m[2]), float(m[3])) for m in map(re.compile(pattern).fullmatch, lines[1:])
    }
    assert found.keys() == {"float64", "float32"}
    assert found["float64"] <= 1e-9 and found["float32"] <= 1e-5, lines


def test_the_precision_section_runs_on_hed_float16(gpu_check, hed_weights, tmp_path):
    from daskstyle.networks.catalog import build_features, get_network, load_weights

    network = get_network("hed-vgg16")
    features = build_features(network, network.index("relu5_1"))
    load_weights(features, hed_weights, network, "HED")
    half = {key: value.half() for key, value in features.state_dict().items()}
    torch.save(half, tmp_path / gpu_check.HED_FILE)
    lines = []
    args = types.SimpleNamespace(bundle=tmp_path, precision_size=48)
    assert gpu_check.check_precision(lines.append, args) is True
    rows = [re.fullmatch(rf" *(.+) ({NUMBER}) ({NUMBER})", line) for line in lines[1:]]
    assert [row[1] for row in rows] == ["float32", "tf32", "float32 after tf32", "bf16 autocast"]


def test_the_timing_sections_count_steps_2_on(gpu_check):
    lines = []
    args = types.SimpleNamespace(size=64, tile=32, steps=2)
    assert gpu_check.SECTIONS["timing-bf16"][0](lines.append, args) is None
    assert re.search(r"float32 \(bf16\), local cluster, network tasks ask for (None|{'GPU': 1})$",
                     lines[0])  # fmt: skip
    assert re.fullmatch(
        r"step 1: 4 tiles, \d+\.\d\d s \(with the learning-rate pass .*\)", lines[1]
    )
    assert re.fullmatch(r"step 2: 4 tiles, \d+\.\d\d s", lines[2])
    assert re.fullmatch(r"bf16: steps 2-2: \d+\.\d\d s per step, \d+\.\d+ s/MP", lines[3])

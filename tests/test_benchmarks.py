"""The benchmarks run and print their figures (tiny sizes: these check that they work, not
what they measure)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from daskstyle.frontends import cli

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
NUMBER = r"\d+\.\d+"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["gradient", "--size", "96", "--tiles", "32", "64"],
         [rf"untiled +{NUMBER} +1\.00x", rf"32px +{NUMBER} +{NUMBER}x", rf"64px +{NUMBER}"]),
        (["networks", "--size", "48", "--networks", "vgg16"],
         [rf"vgg16 +{NUMBER} s per iteration +peak RSS +\d+ MiB"]),
        (["iteration", "--size", "96", "--tile", "32", "--steps", "1"],
         [rf"step 1: 9 tiles, +{NUMBER} s \( *{NUMBER} s/MP\), peak RSS"]),
        (["iteration", "--size", "96", "--tile", "48", "--steps", "2", "--precision", "bf16",
          "--gram", "lagged"],
         [r"\(bf16\), Grams lagged", rf"step 2: 4 tiles, +{NUMBER} s"]),
        (["precision", "--size", "48", "--network", "vgg19"],
         [r"float32 \d\.\d\de-\d\d", r"tf32 n/a \(no CUDA here\)", r"bf16 autocast \d\.\d\de-\d\d"]),
    ],
)  # fmt: skip
def test_bench_commands_print_their_figures(argv, expected, capsys):
    if argv[0] == "precision" and torch.cuda.is_available():
        expected = [line for line in expected if "no CUDA" not in line]
    assert cli.main(["bench", *argv]) == 0
    out = capsys.readouterr().out
    for pattern in expected:
        assert re.search(pattern, out), (pattern, out)


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("bench_adam.py", ["--size", "256", "--tile", "128", "--steps", "1"],
         rf"step 1: {NUMBER} s, {NUMBER} GB moved"),
        ("bench_output.py", ["--size", "256", "--tile", "128"],
         rf"{NUMBER} s \({NUMBER} MP/s\), {NUMBER} GB, peak RSS"),
        ("bench_overhead.py", ["--tiles", "4", "--core", "32", "--warmup", "0", "--timed", "1",
                               "--workers", "1"],
         rf"4 +local 1 proc +\d+ +{NUMBER}"),
        pytest.param(
            "speed_table.py", ["--sizes", "64", "--networks", "hed-vgg16", "--rss-size", "96",
                               "--tile", "48", "--steps", "2", "--out", "speed.csv"],
            r"\| hed-vgg16 \| 64² \| daskstyle bf16 \+ lagged \| \d+\.\d \| \d+\.\d\d× \|",
            marks=pytest.mark.slow),
        ("whole_image_pytorch.py", ["--size", "64", "--steps", "2"],
         rf"whole-image PyTorch, hed-vgg16, 64x64, exact, \d+ threads: {NUMBER} s per step"),
    ],
)  # fmt: skip
def test_pipeline_benchmarks_print_their_figures(script, args, expected, tmp_path):
    done = subprocess.run(
        [sys.executable, str(PIPELINES / script), *args],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(expected, done.stdout), done.stdout


def test_gpu_check_says_when_there_is_no_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: pipelines/gpu_check.py runs for real")
    done = subprocess.run(
        [sys.executable, str(PIPELINES / "gpu_check.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    report = (tmp_path / "gpu_check.txt").read_text()
    assert report == done.stdout  # the preflight first, then why nothing more runs
    assert re.match(
        r"python 3\.\d+\.\d+ \(.+\)\ntorch \S+, CUDA \S+, cuDNN \S+, no CUDA device\n", report
    )
    for name in ("cupy", "dask", "distributed", "zarr", "numcodecs", "numpy"):
        assert re.search(rf"^{name} (\S+ \(.+\)|missing \(.+\))$", report, re.MULTILINE), name
    assert report.endswith("\nno CUDA device: nothing to check\n")

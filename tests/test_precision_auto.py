"""``--precision auto``, the default: bf16 where the tiles run on this machine and it has bf16
natively, else exact; the run's first line says which and why; a resumed run keeps the
arithmetic it began with."""

import json

import numpy as np
import pytest

from daskstyle.compute import hardware
from daskstyle.frontends import cli
from daskstyle.run import painting
from daskstyle.run.auto_settings import run_precision
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, SHALLOW_RUN_OPTIONS, final_canvas

SMALL = dict(r0=48, max_iters=3, style_weight=10.0, network="vgg19", tile=48, **SHALLOW_RUN)
NATIVE = "CPU with avx512_bf16"


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda: NATIVE)


@pytest.fixture
def not_native(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda: None)


def _choose(tmp_path, cluster="local", resume=False, **settings):
    return run_precision(Settings(**settings), tmp_path, resume, cluster)


@pytest.mark.parametrize("cluster", ["local", "threads", "sync"])
def test_auto_takes_native_bf16_on_this_machine(native, tmp_path, cluster):
    settings, reason = _choose(tmp_path, cluster)
    assert settings.precision == "bf16"
    assert reason == (f"precision bf16 (auto): native on this machine ({NATIVE}); "
                      "--precision exact for float32")  # fmt: skip


def test_auto_is_exact_without_native_bf16(not_native, tmp_path):
    settings, reason = _choose(tmp_path)
    assert settings.precision == "exact"
    assert reason.startswith("precision exact (auto): this machine has no native bf16")


@pytest.mark.parametrize("cluster", ["slurm", "tcp://10.0.0.1:8786", "scheduler.json"])
def test_auto_is_exact_where_the_workers_run_elsewhere(native, tmp_path, cluster):
    settings, reason = _choose(tmp_path, cluster)
    assert settings.precision == "exact"
    assert f"the workers of --cluster {cluster} run on other machines" in reason


def test_float64_stays_exact_and_asked_precisions_are_kept(native, tmp_path):
    assert _choose(tmp_path, dtype="float64")[0].precision == "exact"
    for precision in ("exact", "tf32", "bf16"):
        assert _choose(tmp_path, precision=precision) == (Settings(precision=precision), None)


def test_auto_is_the_default_and_bench_iteration_stays_exact():
    assert Settings().precision == "auto"
    assert cli.parser().parse_args(["run", "--example", "-o", "o.png"]).precision == "auto"
    assert cli.parser().parse_args(["bench", "iteration"]).precision == "exact"
    with pytest.raises(SystemExit):  # auto is a run's choice, a benchmark names its arithmetic
        cli.parser().parse_args(["bench", "iteration", "--precision", "auto"])


def _argv(pictures, weights_file, out, *extra):
    return ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "3",
            "--network", "vgg19", "--weights", str(weights_file), "--tile", "48",
            "--cluster", "threads", *SHALLOW_RUN_OPTIONS, *extra]  # fmt: skip


def test_the_arithmetic_is_the_first_line_of_the_plan_and_of_the_run(
    native, pictures, weights_file, tmp_path, capsys
):
    out = tmp_path / "out.png"
    assert cli.main(_argv(pictures, weights_file, out, "--dry-run")) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("precision bf16 (auto): native on this machine")
    assert cli.main(_argv(pictures, weights_file, out, "--max-iters", "1")) == 0
    assert capsys.readouterr().out.splitlines()[0] == first
    record = json.loads((default_workdir(out) / "run.json").read_text())
    assert record["settings"]["precision"] == "bf16"  # what auto chose, for a resume
    assert cli.main(_argv(pictures, weights_file, tmp_path / "e.png", "--precision", "exact",
                          "--dry-run")) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("network vgg19")  # exact: nothing to say


class Stop(Exception):
    pass


def _stop_at_level_2(event):
    if isinstance(event, painting.Stepped) and (event.level, event.step) == (1, 1):
        raise Stop


@pytest.mark.parametrize("began", ["exact", "bf16"])
def test_a_resumed_run_keeps_the_arithmetic_it_began_with(
    began, pictures, weights_file, tmp_path, monkeypatch, capsys
):
    """A run begun in exact float32 (as every run before auto was the default) or in bf16
    continues so under auto, whatever this machine has, and ends as the uninterrupted run."""
    out = tmp_path / "begun.png"
    settings = Settings(**SMALL, precision=began)
    with pytest.raises(Stop):
        painting.transfer(*pictures, out, settings=settings, weights=weights_file,
                     on_event=_stop_at_level_2)  # fmt: skip
    monkeypatch.setattr(hardware, "native_bf16", lambda: None if began == "bf16" else NATIVE)
    assert cli.main(_argv(pictures, weights_file, out, "--resume", "--dry-run")) == 0
    assert capsys.readouterr().out.startswith(f"precision {began}, as the run began")
    assert cli.main(_argv(pictures, weights_file, out, "--resume")) == 0
    straight = tmp_path / "straight.png"
    painting.transfer(*pictures, straight, settings=settings, weights=weights_file)
    assert np.array_equal(
        final_canvas(default_workdir(out)), final_canvas(default_workdir(straight))
    )

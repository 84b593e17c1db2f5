"""Whole runs: levels, tiled == untiled, resume after kill -9, the CLI's one-line errors."""

import csv
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from daskstyle.compute.executor import DASHBOARD_OFF
from daskstyle.core.errors import InputError
from daskstyle.frontends import cli
from daskstyle.io.images import read_image
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
from daskstyle.optimise import level as level_loop
from daskstyle.run import footprint, painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, SHALLOW_RUN_OPTIONS, final_canvas

SMALL = dict(r0=48, max_iters=3, style_weight=10.0, network="vgg19", **SHALLOW_RUN)
#: The default layers (halo 160 px), for the whole run that proves tiling exact with them.
DEEP = dict(content_layer=DEFAULT_CONTENT_LAYER, style_layers=DEFAULT_STYLE_LAYERS)


def paint(pictures, weights_file, out, **settings):
    events = []
    painting.transfer(*pictures, out, settings=Settings(**{**SMALL, **settings}),
                 weights=weights_file, on_event=events.append)  # fmt: skip
    return events


def test_levels_progress_and_outputs(pictures, weights_file, tmp_path):
    out = tmp_path / "out.png"
    events = paint(pictures, weights_file, out, tile=32)
    starts = [e for e in events if isinstance(e, painting.LevelStarted)]
    assert [(e.shape, e.tiles) for e in starts] == [((48, 40), 4), ((96, 80), 9)]
    steps = [e for e in events if isinstance(e, painting.Stepped)]
    assert [(e.level, e.step) for e in steps] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    assert steps[0].max_change == pytest.approx(12.8, rel=1e-5)  # the paper's tpc rule
    image = read_image(out).compute()
    assert image.shape == (96, 80, 3)
    workdir = default_workdir(out)
    assert np.abs(image - final_canvas(workdir)).max() <= 0.5  # 8-bit rounding only
    for level in (0, 1):
        assert (workdir / f"level{level + 1}.png").is_file()  # numbered as the progress line
    with open(workdir / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["level"]), int(r["step"])) for r in rows] == [
        (e.level + 1, e.step) for e in steps
    ]
    assert [float(r["loss"]) for r in rows] == pytest.approx([e.loss for e in steps])
    assert [float(r["seconds"]) for r in rows] == [e.seconds for e in steps]  # as reported


def test_the_tiles_memory_is_given_back_after_each_levels_steps(
    pictures, weights_file, tmp_path, monkeypatch
):
    """Once a level's steps are done the workers' freed memory goes back, before its preview
    and the output; never between steps."""
    events = []
    monkeypatch.setattr(painting.executor, "give_back_freed_memory",
                        lambda: events.append("given back"))  # fmt: skip
    painting.transfer(*pictures, tmp_path / "out.png", settings=Settings(**{**SMALL, "tile": 32}),
                      weights=weights_file, on_event=events.append)  # fmt: skip
    for level in (0, 1):
        last_step = max(i for i, e in enumerate(events)
                        if isinstance(e, painting.Stepped) and e.level == level)  # fmt: skip
        finished = next(i for i, e in enumerate(events)
                        if isinstance(e, painting.LevelFinished) and e.level == level)  # fmt: skip
        assert events[last_step:finished].count("given back") == 1
    assert events.count("given back") == 2


def test_tiled_run_equals_untiled_run(pictures, weights_file, tmp_path):
    """In float64: in float32, rounding differences between tile and whole-image convolutions
    flip max-pool choices, and over steps the two runs drift apart (0.5 px after 6 steps with
    random weights), which is the arithmetic, not the tiling."""
    paint(pictures, weights_file, tmp_path / "tiled.png", tile=32, dtype="float64", **DEEP)
    paint(pictures, weights_file, tmp_path / "whole.png", tile=512, dtype="float64", **DEEP)
    tiled = final_canvas(default_workdir(tmp_path / "tiled.png"))
    whole = final_canvas(default_workdir(tmp_path / "whole.png"))
    assert np.abs(tiled - whole).max() < 1e-3
    assert np.abs(whole - read_image(pictures[0]).compute()).max() > 1  # it did paint


def _cli(pictures, weights_file, out, *extra):
    return [sys.executable, "-m", "daskstyle", "run", *map(str, pictures), "-o", str(out),
            "--r0", "48", "--tile", "32", "--max-iters", "4", "--network", "vgg19",
            "--weights", str(weights_file), *SHALLOW_RUN_OPTIONS, *extra]  # fmt: skip


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_image(pictures, weights_file, tmp_path):
    reference = tmp_path / "reference.tif"
    first = subprocess.run(
        _cli(pictures, weights_file, reference), check=True, capture_output=True, text=True
    )
    assert DASHBOARD_OFF in first.stdout  # a local cluster by default
    killed = tmp_path / "killed.tif"
    workdir = default_workdir(killed)
    process = subprocess.Popen(_cli(pictures, weights_file, killed), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not _steps_done(workdir, level=1) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the whole process group, mid-level 1
    process.wait()
    assert not killed.exists()
    again = subprocess.run(_cli(pictures, weights_file, killed), capture_output=True, text=True)
    assert again.returncode == 1 and "--resume" in again.stderr
    subprocess.run(
        _cli(pictures, weights_file, killed, "--resume"), check=True, capture_output=True
    )
    assert np.array_equal(read_image(killed).compute(), read_image(reference).compute())
    assert np.array_equal(final_canvas(workdir), final_canvas(default_workdir(reference)))


def _steps_done(workdir, level):
    try:
        with open(workdir / "loss.csv") as f:
            return any(row["level"] == str(level + 1) for row in csv.DictReader(f))
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.png", "style.png", "-o", "out.png"], "missing.png"),
        (["content.png", "style.png", "-o", "out.bmp"], "out.bmp"),
        (["content.png", "style.png", "-o", "no/such/dir/out.png"], "no/such/dir"),
        (["-o", "out.png"], "--example"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    pictures, tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(pictures[0].parent)
    out = args[args.index("-o") + 1]
    assert cli.main(["run", *args, "--network", "vgg19", "--weights", "none.pth"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("daskstyle: error:") and message in err
    assert not os.path.exists(out) and not os.path.exists(
        default_workdir(pictures[0].parent / out)
    )


def test_content_too_small(tmp_path, weights_file):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (12, 40)).save(tiny)
    with pytest.raises(InputError, match="too small"):
        painting.transfer(
            tiny, tiny, tmp_path / "out.png", settings=Settings(**{**SMALL, **DEEP}),
            weights=weights_file,
        )  # the default layers need 16 px per side
    assert list(tmp_path.iterdir()) == [tiny]


def test_disk_full_mid_run_is_one_line_and_the_run_resumes(
    pictures, weights_file, tmp_path, monkeypatch, capsys
):
    real_advance = level_loop.advance

    def disk_full_at_step_2(state, *args, **options):
        if state.step == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(state.group.store_path))
        return real_advance(state, *args, **options)

    out = tmp_path / "out.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "3",
            "--network", "vgg19", "--weights", str(weights_file), "--cluster", "threads",
            *SHALLOW_RUN_OPTIONS]  # fmt: skip
    monkeypatch.setattr(level_loop, "advance", disk_full_at_step_2)
    assert cli.main(argv) == 1
    last = capsys.readouterr().err.rstrip().splitlines()[-1]  # after the closed progress bar
    assert last.startswith("daskstyle: error:") and "No space left on device" in last
    assert "--resume" in last and not out.exists()
    monkeypatch.setattr(level_loop, "advance", real_advance)
    assert cli.main([*argv, "--resume"]) == 0 and out.is_file()


def test_cli_runs_only_as_many_tiles_at_once_as_memory_holds(
    pictures, weights_file, tmp_path, monkeypatch, capsys
):
    import dask

    if dask.system.CPU_COUNT < 2:
        pytest.skip("one core: nothing to cap")
    from daskstyle.compute import executor

    seen = []
    real_execute = painting.RunPlan.execute
    monkeypatch.setattr(executor, "tiles_in_memory", lambda tile, dtype: 1)

    def execute(*args, **kwargs):
        seen.append(dask.config.get("num_workers"))  # the threaded scheduler's threads
        return real_execute(*args, **kwargs)

    monkeypatch.setattr(painting.RunPlan, "execute", execute)
    argv = ["run", *map(str, pictures), "-o", str(tmp_path / "out.png"), "--r0", "48",
            "--max-iters", "1", "--network", "vgg19", "--weights", str(weights_file),
            "--cluster", "threads", "--tile", "512"]  # fmt: skip
    assert cli.main(argv) == 0
    assert seen == [1] and "memory holds 1 tile of 96 px at once" in capsys.readouterr().out


def _array_bytes(path) -> int:
    """Bytes of the chunk files under ``path`` (zarr.json metadata left out)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")


def test_disk_estimate_is_what_the_run_writes_and_finished_levels_keep_one_canvas(
    pictures, weights_file, tmp_path, monkeypatch
):
    from daskstyle.optimise.state import LevelState

    running = []
    real_release = LevelState.release

    def measure_then_release(self):
        running.append(_array_bytes(self.group.store.root))
        real_release(self)

    monkeypatch.setattr(LevelState, "release", measure_then_release)
    out = tmp_path / "out.png"
    paint(pictures, weights_file, out, tile=32)
    settings = Settings(**{**SMALL, "tile": 32})
    graph = painting.style_graph(network="vgg19", weights=weights_file, **SHALLOW_RUN)
    sizes = footprint.level_sizes((96, 80), graph, r0=48, tile=32, dtype="float32")
    assert [s.running_bytes for s in sizes] == running
    workdir = default_workdir(out)
    for level, size in enumerate(sizes):
        folder = workdir / f"level{level + 1}"
        assert [p.name for p in folder.iterdir() if p.is_dir()] == ["canvas1"]  # step 3's
        assert _array_bytes(folder) == size.kept_bytes
    assert footprint.disk_needed(sizes) == sizes[0].kept_bytes + sizes[1].running_bytes
    resumed = []
    monkeypatch.setattr(level_loop, "content_target", lambda *args: resumed.append(args))
    painting.transfer(*pictures, out, settings=settings, weights=weights_file, resume=True)
    assert resumed == []  # finished levels compute no targets again


def test_a_run_too_large_for_its_disk_stops_before_it_starts(
    pictures, weights_file, tmp_path, monkeypatch, capsys
):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**5, 10**5))
    out = tmp_path / "out.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--network", "vgg19",
            "--weights", str(weights_file), "--cluster", "threads"]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs 1.0 MB on the disk of" in err and "0.1 MB is free" in err
    assert list(tmp_path.iterdir()) == []
    assert cli.main([*argv, "--dry-run"]) == 1  # the plan, then the same error
    printed = capsys.readouterr()
    assert printed.out.splitlines()[-1].startswith("memory of this machine holds")
    assert printed.err == err and list(tmp_path.iterdir()) == []


def test_dry_run_prints_the_plan_and_writes_nothing(pictures, weights_file, tmp_path, capsys):
    out = tmp_path / "out.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--tile", "32",
            "--network", "vgg19", "--weights", str(weights_file), "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("precision ") and "(auto)" in lines[0]  # bf16 if native here
    assert lines[1].startswith("network vgg19, float32: halo 160 px")
    assert lines[2].startswith("level 1/2: 40x48 px, 4 tiles of 32 px,")
    assert lines[3].startswith("level 2/2: 80x96 px, 9 tiles of 32 px,")
    assert lines[-1] == "the disks are large enough; nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_disk_check_counts_only_an_earlier_run_as_free(tmp_path, monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 5000, 5000))
    sizes = [footprint.LevelSize((10, 10), 1, running_bytes=10_000, kept_bytes=1_000)]
    workdir, output = tmp_path / "out.png.daskstyle", tmp_path / "out.png"
    workdir.mkdir()
    (workdir / "data.bin").write_bytes(bytes(6000))  # the user's: kept
    with pytest.raises(InputError, match="needs 10.0 kB"):
        footprint.check_disk(workdir, output, sizes, pyramid=False)
    (workdir / "level1").mkdir()  # an earlier run's level: resumed or deleted
    (workdir / "level1" / "zarr.json").write_bytes(bytes(5000))
    (workdir / "run.json").write_text('{"daskstyle": 1, "levels": 1, "finished": true}')
    footprint.check_disk(workdir, output, sizes, pyramid=False)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weights", "/nonexistent/vgg19.pth"], "does not exist"),
        (["--resume"], "nothing to resume"),
        (["--r0", "8"], "is too small"),
    ],
)
def test_cli_errors_come_before_a_cluster_starts(
    pictures, weights_file, tmp_path, monkeypatch, capsys, extra, message
):
    from daskstyle.compute import cluster

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(cluster, "open_client", no_cluster)
    argv = ["run", *map(str, pictures), "-o", str(tmp_path / "out.png"), "--network", "vgg19",
            "--weights", str(weights_file), "--cluster", "local", *extra]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_an_unfinished_run_is_refused_before_a_cluster_starts(
    pictures, weights_file, tmp_path, monkeypatch, capsys
):
    from daskstyle.compute import cluster

    out = tmp_path / "out.png"
    workdir = default_workdir(out)
    workdir.mkdir()
    (workdir / "run.json").write_text('{"daskstyle": 1, "levels": 2}')  # not "finished"
    monkeypatch.setattr(cluster, "open_client", lambda *a, **k: pytest.fail("cluster started"))
    argv = ["run", *map(str, pictures), "-o", str(out), "--network", "vgg19",
            "--weights", str(weights_file)]  # fmt: skip
    assert cli.main(argv) == 1
    assert "holds an unfinished run: continue it with --resume" in capsys.readouterr().err

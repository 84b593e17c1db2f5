"""Stopping a command as a user does, and the library lines a user must not see.

Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM (``timeout``,
SLURM) end a run in one line that says how to continue it, and only when it can be continued;
no process is left behind, and ``--resume`` paints the image of an uninterrupted run. A
damaged TIFF is one error line of ours (no tifffile lines), an RGBA picture one note.
"""

import csv
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import tifffile
from PIL import Image

from daskstyle.frontends import cli, terminal
from daskstyle.io.images import read_image
from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir

from .conftest import SHALLOW_RUN_OPTIONS

RESUMABLE = "daskstyle: interrupted (the run continues from its last step with --resume)"


def _command(pictures, weights_file, out, *extra):
    return [sys.executable, "-m", "daskstyle", "run", *map(str, pictures), "-o", str(out),
            "--r0", "48", "--tile", "48", "--max-iters", "3", "--network", "vgg19",
            "--weights", str(weights_file), "--cluster", "local", "--workers", "2",
            *SHALLOW_RUN_OPTIONS, *extra]  # fmt: skip


def _start(command):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip


def _wait_for(condition, process, seconds=180):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _steps_done(workdir, level):
    try:
        with open(workdir / "loss.csv") as f:
            return any(row["level"] == str(level) for row in csv.DictReader(f))
    except FileNotFoundError:
        return False


def _lines(stderr: bytes) -> list[str]:
    """What a user reads on stderr besides the progress bars (one line per update here)."""
    lines = stderr.decode().replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("level ")]


def _assert_all_end(processes, seconds=15):
    deadline = time.monotonic() + seconds
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [process for process in alive if _alive(process)]
    assert not alive, [" ".join(process.cmdline()) for process in alive]


def _alive(process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE  # a zombie has ended, unreaped
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def reference(pictures, weights_file, tmp_path_factory):
    """The picture of the same run, not interrupted."""
    out = tmp_path_factory.mktemp("reference") / "out.tif"
    subprocess.run(_command(pictures, weights_file, out), check=True, capture_output=True)
    return read_image(out).compute()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_process_group_ends_in_one_line_and_the_run_resumes(
    pictures, weights_file, reference, tmp_path, signum
):
    out = tmp_path / "out.tif"
    workdir = default_workdir(out)
    process = _start(_command(pictures, weights_file, out))
    _wait_for(lambda: _steps_done(workdir, level=1), process)  # mid-way through level 2
    descendants = psutil.Process(process.pid).children(recursive=True)  # workers, servers
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    assert _lines(stderr) == [RESUMABLE]
    _assert_all_end(descendants)
    assert not out.exists()
    subprocess.run(
        _command(pictures, weights_file, out, "--resume"), check=True, capture_output=True
    )
    assert np.array_equal(read_image(out).compute(), reference)


def test_a_run_stopped_before_its_run_directory_exists_promises_no_resume(
    pictures, weights_file, tmp_path
):
    out = tmp_path / "out.tif"
    process = _start(_command(pictures, weights_file, out))
    session = os.getsid(process.pid)

    def cluster_starting():  # its workers' forkserver has moved to a session of its own
        children = psutil.Process(process.pid).children()
        return any(os.getsid(child.pid) != session for child in children)

    _wait_for(cluster_starting, process)
    descendants = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert _lines(stderr) == ["daskstyle: interrupted"]
    _assert_all_end(descendants)
    assert list(tmp_path.iterdir()) == []


class _SignalledWhileCollected:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)  # raises here, and Python only reports it


def test_a_signal_that_lands_in_a_finalizer_still_stops_the_command(capfd):
    with pytest.raises(terminal.Stopped), terminal.signals_stop():
        _SignalledWhileCollected()
        time.sleep(5)  # the signal raised again ends this
    assert capfd.readouterr().err == ""


def _production(tmp_path, pictures, weights_file):
    path = tmp_path / "production.toml"
    path.write_text(
        f'kind = "production"\ncontent = "{pictures[0]}"\nstyle = "{pictures[1]}"\n'
        f'output = "out.png"\nweights = "{weights_file}"\nnetwork = "vgg19"\nr0 = 48\n'
        'max_iters = 2\ncontent_layer = "relu2_1"\nstyle_layers = ["relu1_1", "relu2_1"]\n'
        '[cluster]\nspec = "sync"\n'
    )
    return path


@pytest.mark.parametrize("stop_at", ["check", "step"])
def test_a_stopped_production_says_how_to_resume_it_when_it_can(
    pictures, weights_file, tmp_path, monkeypatch, capsys, stop_at
):
    """Ctrl-C (KeyboardInterrupt) while the run is checked (no run directory yet), or at its
    first step."""
    path = _production(tmp_path, pictures, weights_file)
    execute = painting.RunPlan.execute

    def stopped(plan):
        raise KeyboardInterrupt

    def stopped_at_first_step(plan, resources=None, on_event=lambda event: None):
        def event(event):
            if isinstance(event, painting.Stepped):
                raise KeyboardInterrupt
            on_event(event)

        return execute(plan, resources, on_event=event)

    if stop_at == "check":
        monkeypatch.setattr(painting.RunPlan, "check", stopped)
    else:
        monkeypatch.setattr(painting.RunPlan, "execute", stopped_at_first_step)
    assert cli.main(["pipeline", str(path)]) == 130
    last = capsys.readouterr().err.rstrip().splitlines()[-1]
    if stop_at == "check":
        assert last == "daskstyle: interrupted"
        assert not default_workdir(tmp_path / "out.png").exists()
    else:
        hint = f"the run continues from its last step with resume = true in {path}"
        assert last == f"daskstyle: interrupted ({hint})"


def _damaged_tiff(folder, damage: str):
    """A TIFF with a damage that tifffile logs about while it reads on."""
    image = np.random.default_rng(0).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    path = folder / "damaged.tif"
    tifffile.imwrite(path, image, photometric="rgb", tile=(32, 32))
    data = path.read_bytes()
    if damage == "no first page":  # the picture is lost
        path.write_bytes(data[:4] + (10**9).to_bytes(4, "little") + data[8:])
    else:  # a tag's value lies beyond the end: the picture reads
        offset = tifffile.TiffFile(path).pages[0].tags["XResolution"].offset
        beyond = (len(data) + 4096).to_bytes(4, "little")
        path.write_bytes(data[: offset + 8] + beyond + data[offset + 12 :])
    return path


@pytest.mark.parametrize("damage", ["no first page", "tag beyond the end"])
def test_a_damaged_tiff_prints_no_line_of_tifffiles(pictures, weights_file, tmp_path, damage):
    path = _damaged_tiff(tmp_path, damage)
    command = _command([path, pictures[1]], weights_file, tmp_path / "out.png", "--dry-run")
    done = subprocess.run(command, capture_output=True)
    if damage == "no first page":
        assert done.returncode == 1
        [line] = _lines(done.stderr)
        assert line.startswith(f"daskstyle: error: {path} ")
    else:
        assert done.returncode == 0 and _lines(done.stderr) == []


def test_damaged_image_data_ends_a_run_in_one_line(pictures, weights_file, tmp_path):
    """The damage shows only when a worker reads the tile: its task fails, the run stops."""
    image = np.random.default_rng(0).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, image, photometric="rgb", tile=(32, 32), compression="zlib")
    with tifffile.TiffFile(path) as tf:
        offset = tf.pages[0].dataoffsets[3]
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = bytes(64)  # a tile that does not inflate
    path.write_bytes(bytes(data))
    done = subprocess.run(_command([path, pictures[1]], weights_file, tmp_path / "out.png"),
                          capture_output=True)  # fmt: skip
    assert done.returncode == 1
    [line] = _lines(done.stderr)
    assert line.startswith(f"daskstyle: error: {path} is a corrupt TIFF (")


def test_tiles_of_a_tiff_read_without_tifffiles_complaints(tmp_path, caplog):
    path = _damaged_tiff(tmp_path, "tag beyond the end")
    with caplog.at_level(logging.WARNING, logger="tifffile"):
        tifffile.TiffFile(path).close()
        assert caplog.records  # tifffile complains when it opens the file
        caplog.clear()
        read_image(path).compute(scheduler="sync")  # opens it once more per region
    assert caplog.records == []


def test_an_rgba_picture_says_once_that_its_alpha_channel_is_ignored(
    pictures, weights_file, tmp_path
):
    rgba = tmp_path / "rgba.png"
    content = np.asarray(Image.open(pictures[0]))
    Image.fromarray(np.dstack([content, np.full(content.shape[:2], 128, np.uint8)])).save(rgba)
    command = _command([rgba, pictures[1]], weights_file, tmp_path / "out.png",
                       "--max-iters", "1", "--cluster", "threads")  # fmt: skip
    done = subprocess.run(command, capture_output=True)
    assert done.returncode == 0, done.stderr
    [line] = _lines(done.stderr)
    assert line.startswith(f"daskstyle: note: {rgba}: the alpha channel is ignored")

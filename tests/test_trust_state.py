"""A level's state that changed behind the run's back is never painted from: every chunk
carries its crc32c and every array the checksums of the chunks written, so a resumed run (or a
step reading a chunk damaged while it runs) names the damaged chunk in one line and paints
nothing. Each test: a stopped run, damage to its files, then a command."""

import re
import shutil
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr

from daskstyle.frontends import cli
from daskstyle.io.images import read_image
from daskstyle.optimise import chunks as chunks_module
from daskstyle.optimise import level as level_module
from daskstyle.optimise import state as state_module
from daskstyle.optimise.state import LAGGED_GRAMS, LevelState
from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, SHALLOW_RUN_OPTIONS

SMALL = {"r0": 48, "max_iters": 3, "tile": 32, "network": "vgg19", **SHALLOW_RUN}
CHUNK = 32 * 32 * 3 * 4  # bytes of a chunk's float32 data
BAR = re.compile(r"level \d+/\d+ \d+x\d+, \d+ tiles: ")  # a progress bar's text


class Stopped(Exception):
    """A kill during a step, before its commit."""


def stop_at(monkeypatch, step_commits: int):
    """Make the ``step_commits``-th step of the run raise :class:`Stopped` before its commit."""
    real, seen = LevelState.commit, []

    def commit(state, **changes):
        seen.extend(["step"] if "step" in changes else [])
        if len(seen) == step_commits:
            raise Stopped
        real(state, **changes)

    monkeypatch.setattr(LevelState, "commit", commit)


def paint(pictures, weights_file, out, **options):
    settings = Settings(**{**SMALL, **options.pop("settings", {})})
    return painting.transfer(*pictures, out, settings=settings, weights=weights_file, **options)


def resume(pictures, weights_file, out, capsys, *options):
    """``daskstyle run ... --resume``: (exit status, stderr)."""
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "3",
            "--tile", "32", "--network", "vgg19", "--weights", str(weights_file),
            "--cluster", "threads", *SHALLOW_RUN_OPTIONS, "--resume", *options]  # fmt: skip
    status = cli.main(argv)
    return status, capsys.readouterr().err


def error_line(err: str) -> str:
    """The one line an error ends in: all that stderr holds besides the progress bars."""
    lines = [line for line in err.splitlines() if line and not BAR.match(line)]
    assert len(lines) == 1 and lines[0].startswith("daskstyle: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def clean(pictures, weights_file, tmp_path_factory):
    """The picture of the run painted without a stop."""
    out = tmp_path_factory.mktemp("clean") / "clean.png"
    paint(pictures, weights_file, out)
    return read_image(out).compute()


def stop_and_keep(pictures, weights_file, folder: Path, **options):
    """A run stopped during level 2's third step (two steps kept): its output path and a
    copy of its run directory."""
    out = folder / "out.png"
    with pytest.MonkeyPatch.context() as monkeypatch:
        stop_at(monkeypatch, 6)  # level 1's three steps, then level 2's two
        with pytest.raises(Stopped):
            paint(pictures, weights_file, out, **options)
    kept = out.with_name("kept")
    shutil.copytree(default_workdir(out), kept)
    return out, kept


def as_stopped(out: Path, kept: Path) -> tuple[Path, Path]:
    """The stopped run as it was stopped: its output path and level 2's folder."""
    out.unlink(missing_ok=True)
    shutil.rmtree(default_workdir(out), ignore_errors=True)
    shutil.copytree(kept, default_workdir(out))
    return out, default_workdir(out) / "level2"


@pytest.fixture(scope="module")
def stopped_once(pictures, weights_file, tmp_path_factory):
    return stop_and_keep(pictures, weights_file, tmp_path_factory.mktemp("stopped"))


@pytest.fixture
def stopped(stopped_once):
    return as_stopped(*stopped_once)


@pytest.fixture(scope="module")
def stopped_lagged_once(pictures, weights_file, tmp_path_factory):
    return stop_and_keep(pictures, weights_file, tmp_path_factory.mktemp("lagged"),
                         settings={"gram": "lagged"})  # fmt: skip


def chunk(level: Path, array: str, index: int) -> Path:
    """The ``index``-th chunk file of ``array`` (the last where it has fewer)."""
    files = sorted(p for p in (level / array / "c").rglob("*") if p.is_file())
    return files[min(index, len(files) - 1)]


def current(level: Path) -> int:
    return LevelState.open(level).attrs["current"]


def swap_with_neighbour(level, name):
    first, second = chunk(level, name, 0), chunk(level, name, 1)
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)
    return first, "holds other data than was written there"


def older_step(level, name):
    """The same chunk of the other buffer: the canvas of the step before."""
    cur = current(level)
    target = chunk(level, f"{name}{cur}", 4)
    target.write_bytes(chunk(level, f"{name}{1 - cur}", 4).read_bytes())
    return target, "holds other data than was written there"


def zeros(level, name):
    target = chunk(level, name, 4)
    target.write_bytes(bytes(target.stat().st_size))
    return target, "fails its checksum"


def nan_bytes(level, name):
    """NaN written over the data of an interior chunk, its size kept."""
    target = chunk(level, name, 4)
    data = target.read_bytes()
    target.write_bytes(np.full(CHUNK // 4, np.nan, "<f4").tobytes() + data[CHUNK:])
    return target, "fails its checksum"


def nan_with_a_good_crc(level, name):
    """A chunk of NaN with its own correct crc32c: a file that zarr reads without complaint."""
    target = chunk(level, name, 4)
    nan = np.full(CHUNK // 4, np.nan, "<f4").tobytes()
    target.write_bytes(nan + np.array([google_crc32c.value(nan)], "<u4").tobytes())
    return target, "holds other data than was written there"


def truncated(level, name):
    target = chunk(level, name, 2)
    target.write_bytes(target.read_bytes()[:10])
    return target, f"is truncated (10 of {CHUNK + 4} bytes)"


@pytest.mark.parametrize(
    "damage, array",
    [
        (swap_with_neighbour, "canvas"),
        (zeros, "canvas"),
        (truncated, "canvas"),
        (older_step, "canvas"),
        (nan_bytes, "canvas"),
        (nan_with_a_good_crc, "canvas"),
        (swap_with_neighbour, "m"),
        (nan_bytes, "v"),
        (swap_with_neighbour, "content_target"),
        (zeros, "content_target"),
    ],
)  # fmt: skip
def test_a_damaged_chunk_is_named_in_one_line_and_nothing_is_painted(
    stopped, pictures, weights_file, capsys, damage, array
):
    out, level = stopped
    name = array if damage is older_step or array == "content_target" else (
        f"{array}{current(level)}")  # fmt: skip
    damaged, said = damage(level, name)
    for option in ("--dry-run", ""):
        status, err = resume(pictures, weights_file, out, capsys, *filter(None, [option]))
        line = error_line(err)
        assert status == 1 and f"the run directory is damaged: {damaged} {said}" in line, err
        assert f"delete {level} and continue with --resume" in line
        assert not out.exists()


def test_deleting_the_damaged_level_as_told_paints_it_again(stopped, pictures, weights_file,
                                                           capsys, clean):  # fmt: skip
    out, level = stopped
    swap_with_neighbour(level, f"canvas{current(level)}")
    assert resume(pictures, weights_file, out, capsys)[0] == 1
    shutil.rmtree(level)  # what the line says to do
    status, err = resume(pictures, weights_file, out, capsys)
    assert status == 0 and "error" not in err, err
    assert np.array_equal(read_image(out).compute(), clean)  # level 2 painted from its start


def test_a_stopped_run_resumes_to_the_clean_runs_picture(stopped, pictures, weights_file,
                                                         capsys, clean):  # fmt: skip
    out, _ = stopped
    status, err = resume(pictures, weights_file, out, capsys)
    assert status == 0 and "error" not in err, err
    assert np.array_equal(read_image(out).compute(), clean)


def old_create_array(path, shape, chunks, dtype):
    """Arrays as level states were made before checksums: uncompressed, nothing else."""
    return zarr.create_array(str(Path(path).absolute()), shape=shape, chunks=chunks, dtype=dtype,
                             compressors=None, fill_value=np.nan)  # fmt: skip


def without_checksums(sources, targets, *others):
    import dask
    import dask.array as da

    _, *values = dask.compute(da.store(sources, targets, lock=False, compute=False), *others)
    return values


@pytest.fixture
def stopped_before_checksums(pictures, weights_file, tmp_path, monkeypatch):
    """A run stopped in level 2 whose level states were written the old way."""
    out = tmp_path / "old.png"
    monkeypatch.setattr(state_module, "create_array", old_create_array)
    monkeypatch.setattr(level_module, "create_array", old_create_array)
    monkeypatch.setattr(state_module, "store_with_checksums", without_checksums)
    monkeypatch.setattr(level_module, "store_with_checksums", without_checksums)
    monkeypatch.setattr(chunks_module, "keep_checksums", lambda target, sums: None)
    stop_at(monkeypatch, 5)
    with pytest.raises(Stopped):
        paint(pictures, weights_file, out)
    monkeypatch.undo()
    level = default_workdir(out) / "level2"
    assert "checksums" not in (level / "canvas1" / "zarr.json").read_text()
    assert chunk(level, "canvas1", 0).stat().st_size == CHUNK  # no crc32c
    return out, level


def test_a_run_begun_before_checksums_resumes_to_the_clean_runs_picture(
    stopped_before_checksums, pictures, weights_file, capsys, clean
):
    out, _ = stopped_before_checksums
    status, err = resume(pictures, weights_file, out, capsys)
    assert status == 0 and "error" not in err, err
    assert np.array_equal(read_image(out).compute(), clean)


def test_a_truncated_chunk_of_a_run_begun_before_checksums_is_named(
    stopped_before_checksums, pictures, weights_file, capsys
):
    out, level = stopped_before_checksums
    damaged = chunk(level, f"m{current(level)}", 1)
    damaged.write_bytes(damaged.read_bytes()[:10])
    status, err = resume(pictures, weights_file, out, capsys)
    assert status == 1 and f"{damaged} is truncated (10 of {CHUNK} bytes)" in error_line(err)


def damage_after_step(monkeypatch, step_commits: int, array: str):
    """Flip a byte of the chunk 4 of ``array`` (``canvas``: the current canvas) of a level
    right after the ``step_commits``-th step's commit, as a disk going bad during the run."""
    real, seen, damaged = LevelState.commit, [], []

    def commit(state, **changes):
        real(state, **changes)
        seen.extend(["step"] if "step" in changes else [])
        if len(seen) == step_commits:
            name = f"canvas{state.attrs['current']}" if array == "canvas" else array
            target = chunk(state.path, name, 4)
            data = bytearray(target.read_bytes())
            data[100] ^= 0xFF
            target.write_bytes(bytes(data))
            damaged.append(target)

    monkeypatch.setattr(LevelState, "commit", commit)
    return damaged


@pytest.mark.parametrize(
    "array, commits, options",
    [
        ("canvas", 4, []),  # level 2's first step
        ("content_target", 4, []),  # level 2's first step: the next reads the target again
    ],
)
def test_a_chunk_damaged_while_the_run_runs_is_named_in_one_line(
    pictures, weights_file, tmp_path, capsys, monkeypatch, array, commits, options
):
    out = tmp_path / "out.png"
    damaged = damage_after_step(monkeypatch, commits, array)
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "3",
            "--tile", "32", "--network", "vgg19", "--weights", str(weights_file),
            "--cluster", "threads", *SHALLOW_RUN_OPTIONS, *options]  # fmt: skip
    assert cli.main(argv) == 1
    line = error_line(capsys.readouterr().err)
    assert f"damaged: {damaged[0]} fails its checksum" in line
    assert f"delete {default_workdir(out) / 'level2'} and continue with --resume" in line
    assert not out.exists()


def test_a_content_target_damaged_before_a_held_level_holds_it_is_named(
    pictures, weights_file, tmp_path, capsys, monkeypatch
):
    """With the state held, a level reads its content target's windows once, as it opens."""
    real, damaged = level_module.content_target, []

    def target_going_bad(path, *args):
        array = real(path, *args)
        if path.parent.name == "level2":
            damaged.append(chunk(path.parent, path.name, 4))
            data = bytearray(damaged[0].read_bytes())
            data[100] ^= 0xFF
            damaged[0].write_bytes(bytes(data))
        return array

    monkeypatch.setattr(level_module, "content_target", target_going_bad)
    out = tmp_path / "out.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "3",
            "--tile", "32", "--network", "vgg19", "--weights", str(weights_file),
            "--cluster", "threads", "--checkpoint-every", "2", *SHALLOW_RUN_OPTIONS]  # fmt: skip
    assert cli.main(argv) == 1
    line = error_line(capsys.readouterr().err)
    assert f"damaged: {damaged[0]} fails its checksum" in line
    assert f"delete {default_workdir(out) / 'level2'} and continue with --resume" in line
    assert not out.exists()


@pytest.mark.parametrize("damage", ["flipped byte", "another step's"])
def test_damaged_lagged_grams_are_named(stopped_lagged_once, pictures, weights_file, capsys,
                                        damage):  # fmt: skip
    out, _ = as_stopped(*stopped_lagged_once)
    grams = default_workdir(out) / "level2" / LAGGED_GRAMS
    damaged = grams / "1.npz"
    if damage == "flipped byte":
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
        said = "is missing or damaged"
    else:
        shutil.copy(grams / "0.npz", damaged)
        said = "holds the Grams of canvas p_0, not p_1"
    status, err = resume(pictures, weights_file, out, capsys, "--gram", "lagged")
    assert status == 1 and f"damaged: {damaged} {said}" in error_line(err)
    assert not out.exists()


def test_a_held_runs_checkpoint_carries_checksums(pictures, weights_file, tmp_path, capsys):
    out = tmp_path / "out.png"
    with pytest.MonkeyPatch.context() as monkeypatch:
        stop_at(monkeypatch, 4)  # level 1: 2 checkpoints; level 2: the one of step 2, then stop
        with pytest.raises(Stopped):
            paint(pictures, weights_file, out, checkpoint_every=2)
    level = default_workdir(out) / "level2"
    assert LevelState.open(level).step == 2  # written by the checkpoint
    damaged, said = swap_with_neighbour(level, f"m{current(level)}")
    status, err = resume(pictures, weights_file, out, capsys, "--checkpoint-every", "2")
    line = error_line(err)
    assert status == 1 and f"{damaged} {said}" in line and f"delete {level} and cont" in line

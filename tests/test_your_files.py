"""A user's files are never lost and a wrong picture is never written: each test is what a
user does (a command, then what is on disk and what was printed)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daskstyle.core.errors import InputError, NotFiniteError, SettingError
from daskstyle.engine.graph import StyleGraph
from daskstyle.frontends.pipeline import load
from daskstyle.io.images import read_image
from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, snapshot


@pytest.fixture
def photos(tmp_path):
    """A user's folder: photos, notes, a subfolder."""
    folder = tmp_path / "photos"
    (folder / "trip").mkdir(parents=True)
    (folder / "notes.txt").write_text("do not lose me")
    (folder / "loss.csv.bak").write_text("mine")
    Image.new("RGB", (20, 10), (200, 30, 30)).save(folder / "holiday.png")
    (folder / "trip" / "beach.jpg").write_bytes(os.urandom(1000))
    return folder


@pytest.mark.parametrize("as_cwd", [False, True])
def test_two_runs_into_a_folder_of_the_users_files_keep_them(
    photos, tmp_path, daskstyle_run, monkeypatch, as_cwd
):
    before = snapshot(photos)
    workdir = "." if as_cwd else str(photos)
    if as_cwd:
        monkeypatch.chdir(photos)
    for name in ("first.png", "second.png"):
        status, err = daskstyle_run(tmp_path / name, "--workdir", workdir)
        assert status == 0 and "error" not in err
        after = snapshot(photos)
        assert {k: after[k] for k in before} == before
        assert set(after) - set(before) >= {"run.json", "loss.csv", "level1.png", "level2.png"}
    assert read_image(tmp_path / "second.png").shape == (96, 80, 3)


def test_a_users_file_under_a_name_a_run_writes_is_never_replaced(photos, tmp_path, daskstyle_run):
    Image.new("RGB", (8, 8)).save(photos / "level2.png")
    before = snapshot(photos)
    status, err = daskstyle_run(tmp_path / "out.png", "--workdir", photos, cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1
    assert "level2.png was not written by daskstyle" in err and "--workdir" in err
    assert snapshot(photos) == before and not (tmp_path / "out.png").exists()


def test_a_run_json_that_is_not_daskstyles_is_left_alone(photos, tmp_path, daskstyle_run):
    (photos / "run.json").write_text('{"my": "experiment"}')
    before = snapshot(photos)
    status, err = daskstyle_run(tmp_path / "out.png", "--workdir", photos, cluster_allowed=False)
    assert status == 1 and "run.json was not written by this daskstyle" in err
    assert snapshot(photos) == before


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_an_output_that_is_the_content_is_refused(
    pictures, tmp_path, daskstyle_run, monkeypatch, spelling
):
    content = tmp_path / "content.png"
    content.write_bytes(pictures[0].read_bytes())
    monkeypatch.chdir(tmp_path)
    out = {"same": content, "dot": "./content.png", "symlink": "link.png", "hardlink": "hard.png"}
    if spelling == "symlink":
        Path("link.png").symlink_to(content)
    elif spelling == "hardlink":
        Path("hard.png").hardlink_to(content)
    before = snapshot(tmp_path)
    status, err = daskstyle_run(out[spelling], content=content, cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1 and "is the content file" in err
    assert snapshot(tmp_path) == before


def test_an_output_that_is_the_style_or_the_weights_or_in_the_run_directory_is_refused(
    pictures, weights_file, tmp_path, daskstyle_run
):
    style = tmp_path / "style.png"
    style.write_bytes(pictures[1].read_bytes())
    status, err = daskstyle_run(style, style=style, cluster_allowed=False)
    assert status == 1 and "is the style file" in err
    weights = tmp_path / "weights.tif"  # a weights file of any name
    weights.write_bytes(weights_file.read_bytes())
    status, err = daskstyle_run(weights, "--weights", weights, cluster_allowed=False)
    assert status == 1 and "is the weights file" in err
    status, err = daskstyle_run(tmp_path / "out.png", "--workdir", tmp_path, cluster_allowed=False)
    assert status == 1 and "is inside the run directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["style.png", "weights.tif"]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--tpc", "nan", "--tpc must be a finite number above 0, not nan"),
        ("--style-weight", "inf", "--style-weight must be a finite number, 0 or more, not inf"),
        ("--r0", "0", "--r0 must be a whole number, 1 or more, not 0"),
        ("--max-iters", "-1", "--max-iters must be a whole number, 1 or more, not -1"),
        ("--content-weight", "-1", "--content-weight must be a finite number, 0 or more"),
        ("--stop", "-inf", "--stop must be a finite number, 0 or more, not -inf"),
        ("--tile", "40", "--tile must be auto or a positive multiple of 16 px, not 40"),
    ],
)
def test_settings_that_are_not_finite_or_out_of_range_are_one_line(
    tmp_path, daskstyle_run, option, value, message
):
    status, err = daskstyle_run(tmp_path / "out.png", f"{option}={value}", cluster_allowed=False)
    assert status == 1 and err.startswith(f"daskstyle: error: {message}")
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("line, key", [("tpc = nan", "tpc"), ("style_weight = inf", "style_weight"),
                                       ("content_weight = -1.0", "content_weight")])  # fmt: skip
def test_settings_in_a_pipeline_file_and_the_api_keep_the_same_rules(tmp_path, line, key):
    path = tmp_path / "p.toml"
    path.write_text(f'kind = "production"\ncontent = "example"\nstyle = "example"\n'
                    f'output = "out.png"\n{line}\n')  # fmt: skip
    with pytest.raises(InputError, match=f"p.toml: {key} must be a finite number"):
        load(path)
    with pytest.raises(SettingError, match=f"^{key} must be a finite number"):
        Settings(**{key: float(line.split("= ")[1])})
    if key.endswith("_weight"):  # the loss weights of the lower-level API too
        with pytest.raises(SettingError, match=f"^{key} must be a finite number"):
            painting.style_graph(network="vgg19", weights="not-read", **{key: float("nan")})


def nan_at(call: int):
    """:meth:`StyleGraph.loss_and_grad` whose ``call``-th gradient is NaN (a test hook for a
    run going bad); ``.real`` is the method itself."""
    real, calls = StyleGraph.loss_and_grad, []

    def loss_and_grad(graph, *args, **kwargs):
        calls.append(1)
        loss, grad = real(graph, *args, **kwargs)
        return (loss, grad * np.nan) if len(calls) == call else (loss, grad)

    loss_and_grad.real = real
    return loss_and_grad


def test_a_step_that_is_not_finite_stops_the_run_and_resume_finishes_it(
    pictures, weights_file, tmp_path, monkeypatch
):
    settings = Settings(r0=48, max_iters=3, tile=32, network="vgg19", **SHALLOW_RUN)
    paint = lambda out, **kw: painting.transfer(*pictures, out, settings=settings,  # noqa: E731
                                           weights=weights_file, **kw)  # fmt: skip
    paint(tmp_path / "clean.png")
    hook = nan_at(5)  # level 2, step 2
    monkeypatch.setattr(StyleGraph, "loss_and_grad", hook)
    out = tmp_path / "out.png"
    with pytest.raises(NotFiniteError, match=r"^level 2/2, step 2: the pixel update is not fini"):
        paint(out)
    assert not out.exists()
    workdir = default_workdir(out)
    level = json.loads((workdir / "level2" / "zarr.json").read_text())["attributes"]
    assert level["step"] == 1 and len(level["history"]) == 1  # the last good step, kept
    monkeypatch.setattr(StyleGraph, "loss_and_grad", hook.real)
    paint(out, resume=True)
    assert np.array_equal(read_image(out).compute(), read_image(tmp_path / "clean.png").compute())


@pytest.fixture
def interrupted(pictures, weights_file, tmp_path, monkeypatch):
    """An unfinished run (stopped by a NaN at level 2, step 2) and its output path."""
    hook = nan_at(5)
    monkeypatch.setattr(StyleGraph, "loss_and_grad", hook)
    out = tmp_path / "out.png"
    settings = Settings(r0=48, max_iters=3, tile=32, network="vgg19", **SHALLOW_RUN)
    with pytest.raises(NotFiniteError):
        painting.transfer(*pictures, out, settings=settings, weights=weights_file)
    monkeypatch.setattr(StyleGraph, "loss_and_grad", hook.real)
    return out


def chunk_files(array_dir: Path) -> list[Path]:
    return sorted(p for p in (array_dir / "c").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda level: chunk_files(level / "canvas1")[1].unlink(), "canvas1/c/0/1/0 is missing"),
        (lambda level: chunk_files(level / "m1")[3].write_bytes(b"\0" * 10),
         "m1/c/1/0/0 is truncated (10 of 12292 bytes)"),
        (lambda level: (level / "zarr.json").write_text('{"attributes": {"st'),
         "level2/zarr.json is damaged"),
        (lambda level: (level / "canvas1" / "zarr.json").write_text("{"),
         "canvas1/zarr.json is missing or damaged"),
    ],
)  # fmt: skip
def test_a_damaged_run_directory_is_named_in_one_line_and_nothing_is_painted(
    interrupted, daskstyle_run, damage, named
):
    level = default_workdir(interrupted) / "level2"
    damage(level)
    for option in ("--dry-run", "--resume"):
        status, err = daskstyle_run(interrupted, "--resume", option, cluster_allowed=False)
        assert status == 1 and err.count("\n") == 1 and named in err, err
        assert f"delete {level} and continue with --resume" in err
        assert not interrupted.exists()
    shutil.rmtree(level)  # what the line says to do
    assert daskstyle_run(interrupted, "--resume")[0] == 0
    assert read_image(interrupted).compute().std() > 10  # a painting, not a fill value


def test_a_truncated_run_json_is_one_line(interrupted, daskstyle_run):
    record = default_workdir(interrupted) / "run.json"
    record.write_text(record.read_text()[:40])
    status, err = daskstyle_run(interrupted, "--resume", cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1 and f"{record} is damaged" in err
    assert not interrupted.exists()


def test_a_resume_whose_input_changed_is_refused(interrupted, pictures, tmp_path, daskstyle_run):
    content = pictures[0].parent / "content.png"
    original = content.read_bytes()
    try:
        Image.open(content).rotate(180).save(content)
        status, err = daskstyle_run(interrupted, "--resume", cluster_allowed=False)
    finally:
        content.write_bytes(original)
    assert status == 1 and err.count("\n") == 1
    assert f"the content file {content.resolve()} changed since the run began" in err
    assert daskstyle_run(interrupted, "--resume")[0] == 0


def test_a_run_directory_that_is_a_file_or_read_only_fails_before_any_work(
    tmp_path, daskstyle_run, monkeypatch
):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for option in ("--dry-run", "--cluster"):
        extra = ["--dry-run"] if option == "--dry-run" else []
        status, err = daskstyle_run(tmp_path / "out.png", "--workdir", notes / "run", *extra,
                                    cluster_allowed=False)  # fmt: skip
        assert status == 1 and err.count("\n") == 1 and f"{notes} is a file" in err
    real_statvfs = os.statvfs
    read_only = lambda path: type("S", (), {"f_flag": real_statvfs(path).f_flag | os.ST_RDONLY})
    monkeypatch.setattr(os, "statvfs", read_only)
    status, err = daskstyle_run(tmp_path / "out.png", "--dry-run", cluster_allowed=False)
    assert status == 1 and "is on a read-only disk" in err and "--resume" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_picture_that_is_not_finite_is_never_written(tmp_path):
    from daskstyle.core.errors import DaskstyleError
    from daskstyle.io.images import write_image

    picture = np.full((40, 30, 3), 128.0)
    picture[35, 3, 1] = np.nan
    for name in ("out.png", "out.tif"):
        with pytest.raises(DaskstyleError, match="rows 32-39 of the picture are not finite"):
            write_image(tmp_path / name, picture, tile=16 if name.endswith("tif") else 32)
        with pytest.raises(DaskstyleError, match="rows 32-39 of the picture are not finite"):
            write_image(tmp_path / name, picture, tile=16, pyramid=True)  # its scratch too
    assert list(tmp_path.iterdir()) == []


def test_an_unfinished_run_in_the_users_folder_never_says_delete_the_folder(
    photos, pictures, weights_file, tmp_path, daskstyle_run, monkeypatch
):
    hook = nan_at(2)
    monkeypatch.setattr(StyleGraph, "loss_and_grad", hook)
    settings = Settings(r0=48, max_iters=3, tile=32, network="vgg19", **SHALLOW_RUN)
    with pytest.raises(NotFiniteError):
        painting.transfer(*pictures, tmp_path / "out.png", settings=settings, weights=weights_file,
                     workdir=photos)  # fmt: skip
    monkeypatch.setattr(StyleGraph, "loss_and_grad", hook.real)
    status, err = daskstyle_run(tmp_path / "out.png", "--workdir", photos, cluster_allowed=False)
    assert status == 1 and "holds an unfinished run: continue it with --resume" in err
    assert "or delete its files level1, loss.csv, run.json to start again" in err

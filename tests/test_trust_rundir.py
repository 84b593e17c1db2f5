"""What daskstyle may delete or replace in a run directory is what it recorded writing there,
never what a name or an edited run.json says: each test is what a user does (a command, then
what is on disk and what was printed)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from daskstyle.engine.graph import StyleGraph
from daskstyle.run import painting, rundir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, snapshot

SETTINGS = Settings(r0=48, max_iters=3, tile=32, network="vgg19", **SHALLOW_RUN)
@pytest.fixture
def daskstyle_run(daskstyle_run):
    """conftest's ``daskstyle run``, with the run directory given first:
    ``daskstyle_run(OUT, WORKDIR, *options)``."""
    return lambda out, workdir, *options, **kw: daskstyle_run(out, "--workdir", workdir,
                                                               *options, **kw)  # fmt: skip


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def paint(pictures, weights_file, workdir: Path, nan_at_call: int | None = None) -> None:
    """A run into ``workdir``, stopped by a NaN gradient at call ``nan_at_call`` if given."""
    real, calls = StyleGraph.loss_and_grad, []

    def loss_and_grad(graph, *args, **kwargs):
        calls.append(1)
        loss, grad = real(graph, *args, **kwargs)
        return (loss, grad * float("nan")) if len(calls) == nan_at_call else (loss, grad)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StyleGraph, "loss_and_grad", loss_and_grad)
        try:
            painting.transfer(*pictures, workdir.parent / "out.png", settings=SETTINGS,
                              weights=weights_file, workdir=workdir)  # fmt: skip
        except Exception:
            assert nan_at_call is not None
            return
    assert nan_at_call is None


@pytest.fixture(scope="module")
def finished(pictures, weights_file, tmp_path_factory):
    """A finished run of two levels, painted once for the module."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    paint(pictures, weights_file, workdir)
    return workdir


@pytest.fixture(scope="module")
def unfinished(pictures, weights_file, tmp_path_factory):
    """A run stopped at level 2, step 2 (level 1 finished, its preview written)."""
    workdir = tmp_path_factory.mktemp("unfinished") / "run"
    paint(pictures, weights_file, workdir, nan_at_call=5)
    return workdir


def users_folder(run: Path, tmp_path: Path) -> Path:
    """The user's folder ``photos`` where ``run`` painted: their notes and the run's files."""
    folder = tmp_path / "photos"
    shutil.copytree(run, folder, symlinks=True)
    (folder / "notes.txt").write_text("do not lose me")
    return folder


def test_an_edited_level_count_never_deletes_the_users_picture(finished, tmp_path, daskstyle_run):
    photos = users_folder(finished, tmp_path)
    Image.new("RGB", (30, 20), (1, 2, 3)).save(photos / "level7.png")
    edit_json(photos / "run.json", lambda record: record.update(levels=9))
    before = snapshot(photos)
    status, err = daskstyle_run(tmp_path / "out.png", photos)
    assert status == 0 and "error" not in err
    after = snapshot(photos)
    assert after["level7.png"] == before["level7.png"] and after["notes.txt"] == before["notes.txt"]
    record = json.loads((photos / "run.json").read_text())
    assert record["levels"] == 2 and record["finished"]
    assert sorted(record["files"]) == ["level1.png", "level2.png", "loss.csv"]
    for name, written in record["files"].items():  # what is recorded is what is there
        assert written["sha256"] == hashlib.sha256((photos / name).read_bytes()).hexdigest()
    for level in ("level1", "level2"):
        attributes = json.loads((photos / level / "zarr.json").read_text())["attributes"]
        assert attributes[rundir.MARKER] == record["run"]


DELETE = object()
IMPLAUSIBLE = {  # a record without "finished" is an unfinished run (tests/test_run.py)
    "a billion levels": ("levels", 10**9),
    "levels as text": ("levels", "3"),
    "levels null": ("levels", None),
    "levels missing": ("levels", DELETE),
    "no levels": ("levels", 0),
    "negative levels": ("levels", -1),
    "levels a fraction": ("levels", 2.5),
    "finished as text": ("finished", "yes"),
    "settings as text": ("settings", "fast"),
    "settings a list": ("settings", []),
    "inputs as text": ("inputs", "content.png"),
    "a file outside": ("files", {"../notes.txt": {"bytes": 14, "sha256": "0" * 64}}),
}


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize("key, value", IMPLAUSIBLE.values(), ids=IMPLAUSIBLE)
def test_a_record_daskstyle_could_not_have_written_is_one_line(
    finished, tmp_path, daskstyle_run, key, value, resume
):
    photos = users_folder(finished, tmp_path)
    edit_json(photos / "run.json",
              lambda r: r.pop(key) if value is DELETE else r.update({key: value}))  # fmt: skip
    before = snapshot(photos)
    option = ["--resume"] if resume else []
    status, err = daskstyle_run(tmp_path / "out.png", photos, *option, cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1, err
    assert f"{photos / 'run.json'} is not a record daskstyle writes ({key}" in err
    assert "put back the run.json daskstyle wrote, or start again" in err and "--workdir" in err
    assert snapshot(photos) == before


@pytest.mark.parametrize("content", ["[1, 2]", '"run"', "2"])
def test_a_record_that_is_not_an_object_is_one_line(finished, tmp_path, daskstyle_run, content):
    photos = users_folder(finished, tmp_path)
    (photos / "run.json").write_text(content)
    before = snapshot(photos)
    status, err = daskstyle_run(tmp_path / "out.png", photos, cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1
    assert "run.json was not written by this daskstyle: choose another run directory" in err
    assert snapshot(photos) == before


def replace_preview(folder: Path) -> None:
    (folder / "level1.png").unlink()
    Image.new("RGB", (20, 10), (200, 30, 30)).save(folder / "level1.png")


def append_to_loss_csv(folder: Path) -> None:
    with open(folder / "loss.csv", "a") as file:
        file.write("my note\n")


def level_as_file(folder: Path) -> None:
    shutil.rmtree(folder / "level2")
    (folder / "level2").write_text("my level 2")


def unmark_level(folder: Path) -> None:
    edit_json(folder / "level2" / "zarr.json", lambda group: group["attributes"].pop(rundir.MARKER))


NOT_AS_RECORDED = {
    "a preview replaced by the user's picture": (replace_preview, "level1.png"),
    "loss.csv edited": (append_to_loss_csv, "loss.csv"),
    "a level folder replaced by a file": (level_as_file, "level2"),
    "a level folder that carries no mark": (unmark_level, "level2"),
}


@pytest.mark.parametrize("change, name", NOT_AS_RECORDED.values(), ids=NOT_AS_RECORDED)
def test_a_new_run_replaces_nothing_that_is_not_as_recorded(
    finished, tmp_path, daskstyle_run, change, name
):
    photos = users_folder(finished, tmp_path)
    change(photos)
    before = snapshot(photos)
    for option in ("--dry-run", "--max-iters=2"):
        status, err = daskstyle_run(tmp_path / "out.png", photos, option, cluster_allowed=False)
        assert status == 1 and err.count("\n") == 1, err
        assert f"{photos / name} was not written by daskstyle and a run would replace it: " \
               "move it, or choose another run directory (--workdir)" in err  # fmt: skip
        assert snapshot(photos) == before and not (tmp_path / "out.png").exists()


def another_runs_level(folder: Path, finished: Path) -> None:
    shutil.rmtree(folder / "level2")
    shutil.copytree(finished / "level2", folder / "level2")


@pytest.mark.parametrize("change", ["preview", "level file", "another run's level", "link"])
def test_a_resume_replaces_nothing_that_is_not_its_runs(
    unfinished, finished, tmp_path, daskstyle_run, change
):
    photos = users_folder(unfinished, tmp_path)
    name = "level1.png" if change == "preview" else "level2"
    if change == "preview":
        replace_preview(photos)
    elif change == "level file":
        level_as_file(photos)
    elif change == "another run's level":
        another_runs_level(photos, finished)
    else:
        shutil.move(photos / "level2", tmp_path / "level2")
        (photos / "level2").symlink_to(tmp_path / "level2")
    before, outside = snapshot(photos), snapshot(tmp_path / "level2") if change == "link" else {}
    status, err = daskstyle_run(tmp_path / "out.png", photos, "--resume", cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1, err
    said = "is a symbolic link" if change == "link" else "was not written by daskstyle for this run"
    assert f"{photos / name} {said}" in err and "--workdir" in err
    assert snapshot(photos) == before
    if change == "link":
        assert snapshot(tmp_path / "level2") == outside


@pytest.mark.parametrize("name", ["level1.png", "loss.csv", "level1", "run.json"])
@pytest.mark.parametrize("resume", [False, True])
def test_a_link_under_a_runs_name_is_refused_and_not_followed(
    finished, tmp_path, daskstyle_run, name, resume
):
    photos = users_folder(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(photos / name, elsewhere / name)
    (photos / name).symlink_to(elsewhere / name)
    before, outside = snapshot(photos), snapshot(elsewhere)
    option = ["--resume"] if resume else []
    status, err = daskstyle_run(tmp_path / "out.png", photos, *option, cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1, err
    assert f"{photos / name} is a symbolic link" in err and "remove the link" in err
    assert snapshot(photos) == before and snapshot(elsewhere) == outside


def final_canvas_dir(level: Path) -> str:
    return next(p.name for p in level.iterdir() if p.name.startswith("canvas"))


@pytest.mark.parametrize("array", ["level2/canvas0", "level2/m1", "level1/final canvas"])
def test_an_array_shape_edited_in_zarr_json_is_one_line_naming_it(
    unfinished, tmp_path, daskstyle_run, array
):
    photos = users_folder(unfinished, tmp_path)
    if array.endswith("final canvas"):
        array = f"level1/{final_canvas_dir(photos / 'level1')}"
    meta = photos / array / "zarr.json"
    edit_json(meta, lambda a: a.update(shape=[a["shape"][0] + 16, *a["shape"][1:]]))
    level = photos / array.split("/")[0]
    for option in ("--dry-run", "--max-iters=3"):
        status, err = daskstyle_run(tmp_path / "out.png", photos, "--resume", option,
                                    cluster_allowed=False)  # fmt: skip
        assert status == 1 and err.count("\n") == 1, err
        assert f"{meta} gives the shape" in err and "of this run is" in err
        assert f"delete {level} and continue with --resume" in err
    if level.name == "level1":  # what the line says to do, once: level 1 painted again
        shutil.rmtree(level)
        status, err = daskstyle_run(tmp_path / "out.png", photos, "--resume")
        assert status == 0 and "error" not in err
        assert Image.open(tmp_path / "out.png").size == (80, 96)


def as_before_records(folder: Path) -> None:
    """The run in ``folder`` as a daskstyle before these records left it."""
    edit_json(folder / "run.json", lambda record: [record.pop(k) for k in ("run", "files")])
    for meta in folder.glob("level*/zarr.json"):
        edit_json(meta, lambda group: group["attributes"].pop(rundir.MARKER))


def test_a_finished_run_of_an_earlier_daskstyle_is_never_deleted(finished, tmp_path, daskstyle_run):
    photos = users_folder(finished, tmp_path)
    as_before_records(photos)
    before = snapshot(photos)
    status, err = daskstyle_run(tmp_path / "out.png", photos, cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1
    assert "loss.csv was not written by daskstyle (its run.json is an earlier daskstyle's, " \
           "which recorded no checksums) and a run would replace it: move it" in err  # fmt: skip
    assert snapshot(photos) == before


def test_an_unfinished_run_of_an_earlier_daskstyle_resumes_and_is_then_recorded(
    unfinished, tmp_path, daskstyle_run
):
    photos = users_folder(unfinished, tmp_path)
    as_before_records(photos)
    status, err = daskstyle_run(tmp_path / "out.png", photos, "--resume")
    assert status == 0 and "error" not in err
    record = json.loads((photos / "run.json").read_text())
    assert record["finished"] and set(record["files"]) == {"level1.png", "level2.png", "loss.csv"}
    for meta in photos.glob("level*/zarr.json"):
        assert json.loads(meta.read_text())["attributes"][rundir.MARKER] == record["run"]
    status, err = daskstyle_run(tmp_path / "again.png", photos)  # a new run replaces it
    assert status == 0 and (photos / "notes.txt").read_text() == "do not lose me"


def test_an_unfinished_run_with_an_edited_level_count(unfinished, tmp_path, daskstyle_run):
    photos = users_folder(unfinished, tmp_path)
    Image.new("RGB", (30, 20)).save(photos / "level7.png")
    edit_json(photos / "run.json", lambda record: record.update(levels=9))
    before = snapshot(photos)
    status, err = daskstyle_run(tmp_path / "out.png", photos, "--resume", cluster_allowed=False)
    assert status == 1 and err.count("\n") == 1 and "levels differ from its run" in err
    status, err = daskstyle_run(tmp_path / "out.png", photos, cluster_allowed=False)
    assert status == 1 and "holds an unfinished run" in err
    assert "delete its files level1, level1.png, level2, loss.csv, run.json to start" in err
    assert snapshot(photos) == before

"""Every input is checked before any work, and every failure is one line: each test is what a
user does (a command, then what is on disk and what was printed)."""

import os
import pickle
import warnings

import pytest
import torch
from PIL import Image

from daskstyle.compute import cluster
from daskstyle.core.errors import InputError, SettingError, WeightsError
from daskstyle.frontends import cli
from daskstyle.networks import weights as weights_module
from daskstyle.networks.catalog import read_state_dict
from daskstyle.run import painting
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN_OPTIONS

SMALL = ["--r0", "48", "--max-iters", "2", "--tile", "32", "--network", "vgg19",
         *SHALLOW_RUN_OPTIONS]


@pytest.fixture
def daskstyle_run(pictures, weights_file, monkeypatch, capsys):
    """``daskstyle run CONTENT STYLE -o OUT [options]`` that must end before a cluster starts:
    (exit status, stdout, stderr)."""

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(cluster, "open_client", no_cluster)

    def call(out, *options, content=None, style=None, weights=None):
        content, style = content or pictures[0], style or pictures[1]
        argv = ["run", str(content), str(style), "-o", str(out), *SMALL,
                "--weights", str(weights or weights_file), "--cluster", "threads",
                *map(str, options)]  # fmt: skip
        status = cli.main(argv)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return call


def one_line(err: str) -> str:
    assert err.startswith("daskstyle: error: ") and err.count("\n") == 1, err
    return err


# -- 1. the init picture is an input: the output never replaces it ---------------------------


@pytest.mark.parametrize("spelling", ["same", "relative", "hard link"])
def test_an_output_that_is_the_init_picture_is_refused(
    pictures, tmp_path, daskstyle_run, monkeypatch, spelling
):
    init = tmp_path / "start.png"
    init.write_bytes(pictures[0].read_bytes())
    before = init.read_bytes()
    out = init
    if spelling == "relative":
        monkeypatch.chdir(tmp_path)
        out = "start.png"
    elif spelling == "hard link":
        out = tmp_path / "link.png"
        os.link(init, out)
    status, _, err = daskstyle_run(out, "--init", init)
    assert status == 1 and "is the init picture file" in one_line(err)
    assert init.read_bytes() == before
    assert not list(tmp_path.glob("*.daskstyle"))


# -- 2. sizes of a cluster: whole numbers, 1 or more, refused before any work --------------------


@pytest.mark.parametrize("option, value", [("--workers", "0"), ("--workers", "-1"),
                                           ("--jobs", "0")])  # fmt: skip
def test_workers_and_jobs_below_one_are_one_line(tmp_path, daskstyle_run, option, value):
    status, _, err = daskstyle_run(tmp_path / "out.png", option, value, "--cluster", "local")
    assert status == 1
    assert one_line(err).endswith(f"{option} must be a whole number, 1 or more, not {value}\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "line, message",
    [("workers = 0", "cluster.workers must be a positive whole number, not 0"),
     ("threads_per_worker = -1", "cluster.threads_per_worker must be a positive whole number"),
     ('memory_limit = "lots"', 'cluster.memory_limit must be a size such as "8GB", or bytes '
                               "above 0, not 'lots'"),
     ('memory_limit = "-1GB"', "cluster.memory_limit must be a size")],
)  # fmt: skip
def test_cluster_sizes_in_a_pipeline_file(tmp_path, line, message):
    from daskstyle.frontends.pipeline import load

    path = tmp_path / "p.toml"
    path.write_text('kind = "production"\ncontent = "example"\nstyle = "example"\n'
                    f'output = "out.png"\n[cluster]\n{line}\n')  # fmt: skip
    with pytest.raises(InputError, match=f"^{path}: {message}"):
        load(path)


def test_the_library_refuses_zero_workers_before_a_cluster_starts():
    with pytest.raises(SettingError, match="workers must be a whole number, 1 or more, not 0"):
        with cluster.open_client("local", workers=0):
            pass
    with pytest.raises(SettingError, match="memory_limit must be a size"):
        with cluster.open_client("local", memory_limit=0):
            pass


# -- 3, 4. weights files that are empty, damaged, not torch's, or more than tensors --------------


class _System:
    def __reduce__(self):
        return (os.system, ("true",))


def _empty(path):
    path.write_bytes(b"")


def _truncated(path, weights_file):
    data = weights_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _legacy_truncated(path):
    torch.save({"0.weight": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize(
    "make, words",
    [(lambda p, w: _empty(p), "is empty (0 bytes), as an interrupted download leaves it; delete "
                              "it, then `daskstyle weights download vgg19` gets it again"),
     (_truncated, "is damaged (PytorchStreamReader failed reading zip archive"),
     (lambda p, w: _legacy_truncated(p), "is damaged (EOFError)")],
)  # fmt: skip
def test_an_empty_or_truncated_weights_file_says_how_to_get_it_again(
    tmp_path, weights_file, daskstyle_run, make, words
):
    path = tmp_path / "vgg19-dcbaa9e4.pth"  # the file name of vgg19's download
    make(path, weights_file)
    status, _, err = daskstyle_run(tmp_path / "out.png", weights=path)
    assert status == 1 and f"cannot read weights file {path}: it {words}" in one_line(err)


def test_weights_download_of_a_present_empty_file_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbaa9e4.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert cli.main(["weights", "download", "vgg19"]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"{path}: it is empty" in err and "delete it, then" in err


@pytest.mark.parametrize(
    "make, words",
    [(lambda p, pictures: p.write_bytes(pictures[1].read_bytes()),
      "is not a torch weights file (.pth, written by torch.save) (it begins like a PNG picture)"),
     (lambda p, pictures: p.write_bytes(pickle.dumps(_System(), protocol=2)),
      "holds Python objects besides tensors (it asks for posix.system)"),
     (lambda p, pictures: torch.save(torch.nn.Linear(2, 2), p),
      "holds Python objects besides tensors (it asks for torch.nn.modules.linear.Linear)")],
)  # fmt: skip
def test_torch_advice_to_load_unsafely_never_reaches_the_user(
    tmp_path, pictures, daskstyle_run, make, words
):
    path = tmp_path / "weights.pth"
    make(path, pictures)
    status, _, err = daskstyle_run(tmp_path / "out.png", weights=path)
    assert status == 1 and f"cannot read weights file {path}: it {words}" in one_line(err)
    assert "weights_only" not in err and "trust" not in err


# -- 10. weights that are not finite -------------------------------------------------------------


@pytest.mark.parametrize("key, value, refused", [("features.0.weight", float("nan"), True),
                                                 ("features.2.bias", float("inf"), True),
                                                 ("features.34.weight", float("nan"), False)])  # fmt: skip
def test_weights_that_are_not_finite_are_one_line_naming_the_file(
    tmp_path, vgg19_state, daskstyle_run, key, value, refused
):
    state = {k: v.clone() for k, v in vgg19_state.items() if k.startswith("features.")}
    state[key].view(-1)[0] = value
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    status, out, err = daskstyle_run(tmp_path / "out.png", "--dry-run", weights=path)
    if not refused:  # conv5_4 is beyond the deepest layer used (relu5_1): never read
        assert status == 0 and "nothing was written" in out
        return
    assert status == 1 and f"weights from {path} are damaged: {key[9:]} holds" in one_line(err)
    assert "run directory" not in err and "level1" not in err


# -- 5. an output that is a folder, or under a file ---------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "link to a folder", "under a file"])
def test_an_output_that_cannot_be_a_file_is_refused_before_any_work(tmp_path, daskstyle_run, kind):
    folder = tmp_path / "d.png"
    folder.mkdir()
    out = folder
    if kind == "link to a folder":
        out = tmp_path / "link.png"
        out.symlink_to(folder)
    elif kind == "under a file":
        (tmp_path / "file").write_bytes(b"mine")
        out = tmp_path / "file" / "out.png"
    status, _, err = daskstyle_run(out)
    expected = "does not exist: it is a file" if kind == "under a file" else "it is a folder"
    assert status == 1 and expected in one_line(err)
    assert not list(tmp_path.glob("*.daskstyle")) and list(folder.iterdir()) == []


# -- 6. values beyond what a run can do ----------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [(["--tpc", "1e308"], "--tpc must be at most 255: pixels change by at most that on 0-255"),
     (["--stop", "300"], "--stop must be at most 255"),
     (["--tv-weight", "1e300"], "--tv-weight must be at most 1e+15: a larger one overflows "
                                "float32"),
     (["--style-weight", "1e16"], "--style-weight must be at most 1e+15"),
     (["--style-weight", "1e10", "--style-layer-weights", "1e10,1,1,1,1"],
      "--style-layer-weights times the style weight (1e+10) must be at most 1e+15"),
     (["--style-scale", "1e9"], "--style-scale makes the style (72x64 px) cover over 64 times "
                                "the pixels of the 40x48 px level (its Gram pass reads them "
                                "all): give at most 7.74, not 1000000000.0"),
     (["--style-scale", "1e308"], "--style-scale makes the style")],
)  # fmt: skip
def test_values_beyond_what_a_run_can_do_fail_the_dry_run_too(
    tmp_path, daskstyle_run, options, message
):
    status, _, err = daskstyle_run(tmp_path / "out.png", *options, "--dry-run")
    assert status == 1 and one_line(err).startswith(f"daskstyle: error: {message}")
    assert list(tmp_path.iterdir()) == []


def test_the_largest_values_a_run_can_do_are_accepted(tmp_path, daskstyle_run):
    status, out, err = daskstyle_run(tmp_path / "out.png", "--tpc", "255", "--tv-weight", "1e15",
                                     "--style-scale", "7.7", "--dry-run")  # fmt: skip
    assert status == 0 and "nothing was written" in out, err


def test_the_same_bounds_in_a_pipeline_file_and_the_api(tmp_path):
    from daskstyle.frontends.pipeline import load

    path = tmp_path / "p.toml"
    path.write_text('kind = "production"\ncontent = "example"\nstyle = "example"\n'
                    'output = "out.png"\ntpc = 1e308\n')  # fmt: skip
    with pytest.raises(InputError, match="p.toml: tpc must be at most 255"):
        load(path)
    with pytest.raises(SettingError, match="^tv_weight must be at most 1e"):
        Settings(tv_weight=1e300)


# -- 7. --example with pictures ------------------------------------------------------------------


@pytest.mark.parametrize("given", [2, 1])
def test_example_with_pictures_of_ones_own_is_refused(pictures, tmp_path, capsys, given):
    argv = ["run", "--example", *map(str, pictures[:given]), "-o", str(tmp_path / "o.png")]
    assert cli.main(argv) == 1
    assert "--example paints the built-in pictures" in one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


# -- 8. Pillow's warnings as notes ---------------------------------------------------------------


@pytest.mark.parametrize("limit", [5000, 4000])  # the content only; the content and the style
def test_a_large_picture_is_a_note_not_pillows_warning(
    tmp_path, daskstyle_run, monkeypatch, limit
):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)  # content 96x80, style 72x64 px
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        status, out, err = daskstyle_run(tmp_path / "out.png", "--dry-run")
    assert status == 0 and "nothing was written" in out
    notes = err.splitlines()
    assert len(notes) == (1 if limit == 5000 else 2), err
    assert all(n.startswith("daskstyle: note: ") and "read whole into memory" in n for n in notes)
    assert "DecompressionBomb" not in err


def test_a_picture_beyond_pillows_hard_limit_is_one_line(tmp_path, daskstyle_run, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 96x80 is over twice the limit
    status, _, err = daskstyle_run(tmp_path / "out.png", "--dry-run")
    assert status == 1 and "is too large for Pillow" in one_line(err)


# -- 9. usage errors in one line -----------------------------------------------------------------


@pytest.mark.parametrize("options, words", [(["--r0", "abc"], "argument --r0: invalid int value"),
                                            (["--seed", "x"], "argument --seed: invalid int"),
                                            (["--tpc", "much"], "argument --tpc: invalid float")])  # fmt: skip
def test_a_bad_option_value_is_one_line_without_the_usage(pictures, tmp_path, capsys, options,
                                                          words):  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", *map(str, pictures), "-o", str(tmp_path / "o.png"), *options])
    assert stop.value.code == 2
    assert words in one_line(capsys.readouterr().err)


def test_a_missing_output_is_one_line(pictures, capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", *map(str, pictures)])
    assert "required: -o/--output" in one_line(capsys.readouterr().err)


# -- 11. a dry run downloads nothing -------------------------------------------------------------


@pytest.fixture
def nothing_present(tmp_path, monkeypatch):
    """No weights anywhere, and any download fails the test."""
    monkeypatch.setenv("DASKSTYLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DASKSTYLE_WEIGHTS", raising=False)

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded")

    monkeypatch.setattr(weights_module, "download", no_download)
    monkeypatch.setattr(weights_module.subprocess, "run", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path


def test_a_dry_run_says_what_it_would_download_and_downloads_nothing(
    pictures, nothing_present, capsys
):
    out = nothing_present / "out.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--cluster", "threads",
            "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    hub = nothing_present / "torch" / "hub" / "checkpoints" / "vgg19-dcbaa9e4.pth"
    assert (f"the run would download vgg19's weights, about 548 MB, from "
            f"https://download.pytorch.org/models/vgg19-dcbaa9e4.pth into {hub}") in printed.out
    assert "if that fails, hed-vgg16's weights, about 59 MB" in printed.out
    assert "a dry run downloads nothing" in printed.out and printed.err == ""
    assert sorted(p.name for p in nothing_present.iterdir()) == []


def test_a_dry_run_of_a_named_network_without_weights_is_one_line(
    pictures, nothing_present, capsys
):
    argv = ["run", *map(str, pictures), "-o", str(nothing_present / "out.png"), "--network",
            "vgg16", "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 1
    assert "no weights for vgg16" in one_line(capsys.readouterr().err)


def test_a_dry_runs_plan_without_weights_cannot_paint(pictures, nothing_present):
    plan = painting.plan(*pictures, nothing_present / "out.png", dry_run=True,
                         settings=Settings(r0=48, tile=32), cluster="threads")  # fmt: skip
    assert plan.graph.network.name == "vgg19" and plan.download
    with pytest.raises(InputError, match="a dry run's plan cannot paint"):
        plan.execute()
    assert list(nothing_present.iterdir()) == []


def test_read_state_dict_keeps_weights_only(tmp_path, monkeypatch):
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, path)
    read_state_dict(path)
    assert calls == [{"map_location": "cpu", "weights_only": True}]
    with pytest.raises(WeightsError):
        read_state_dict(tmp_path)

"""Pipelines from TOML files: the shipped small scaling and production files run and write
their results; bad files end in one line that names the key and the file."""

import csv
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from daskstyle.core.errors import InputError
from daskstyle.frontends.pipeline import load, run_pipeline, weak_side
from daskstyle.io.images import read_image
from daskstyle.networks.catalog import DEFAULT_CONTENT_LAYER
from daskstyle.settings import Settings

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"

# distributed warns when another process holds the dashboard port 8787 (it then takes another)
pytestmark = pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning")


def shipped(name, folder):
    """A copy of a shipped pipeline file in ``folder``, so that its results land there."""
    return Path(shutil.copy(PIPELINES / name, folder / name))


@pytest.mark.slow
def test_small_scaling_writes_csv_and_png(tmp_path):
    path = shipped("scaling_small.toml", tmp_path)
    config = load(path)
    lines = []
    written = run_pipeline(path, echo=lines.append)
    csv_path, png_path = (
        tmp_path / "results/scaling_small.csv",
        tmp_path / "results/scaling_small.png",
    )
    assert written == [csv_path, png_path]
    assert sorted(p.name for p in csv_path.parent.iterdir()) == [
        "scaling_small.csv",
        "scaling_small.png",
    ]

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    expected = {(m, w, t) for m in config.modes for w in config.workers for t in config.tiles}
    assert {(r["mode"], int(r["workers"]), int(r["tile"])) for r in rows} == expected
    assert len(rows) == len(expected)
    for r in rows:
        side = (
            config.canvas if r["mode"] == "strong" else weak_side(config.canvas, int(r["workers"]))
        )
        assert int(r["canvas"]) == side
        assert int(r["tiles_per_iteration"]) == math.ceil(side / int(r["tile"])) ** 2
        assert int(r["iterations"]) == config.iterations
        for field in ("seconds_per_iteration", "tiles_per_second", "efficiency"):
            assert float(r[field]) > 0
        assert float(r["tiles_per_second"]) == pytest.approx(
            int(r["tiles_per_iteration"]) / float(r["seconds_per_iteration"]), rel=1e-4
        )
        if int(r["workers"]) == min(config.workers):
            assert float(r["efficiency"]) == pytest.approx(1.0)
    assert sum("tiles/s" in line for line in lines) == len(rows)

    with Image.open(png_path) as image:
        assert image.format == "PNG"
        assert image.width >= 1000 and image.height >= 400
        pixels = np.asarray(image.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # lines, text and markers, not a blank canvas
    assert (pixels.min(axis=2) < 128).mean() > 0.005  # enough dark ink (axes, labels)


@pytest.mark.slow
def test_small_production_writes_its_picture(tmp_path):
    path = shipped("production_small.toml", tmp_path)
    lines = []
    written = run_pipeline(path, echo=lines.append)
    output = tmp_path / "results/production_small.tif"
    assert written[0] == output and written[-1].name == "loss.csv"
    assert all(p.is_file() for p in written)
    with tifffile.TiffFile(output) as tif:
        assert tif.is_bigtiff
    image = read_image(output).compute()
    assert image.shape == (256, 384, 3)  # the built-in example content
    example = read_image(load(path).content).compute()
    assert np.abs(image - example).max() > 1  # it painted
    assert any(line.startswith("level 3/3") for line in lines)
    steps = [line for line in lines if re.match(r"level \d step \d: loss ", line)]
    assert len(steps) == 9  # 3 levels x max_iters 3


def test_production_dry_run_prints_its_plan_and_writes_nothing(tmp_path):
    path = shipped("production_small.toml", tmp_path)
    lines = []
    assert run_pipeline(path, echo=lines.append, dry_run=True) == []
    assert lines[0].startswith("precision ") and "(auto)" in lines[0]  # bf16 if native here
    assert lines[2].startswith("level 1/3: 96x64 px, 1 tile of 96 px,")
    assert lines[4].startswith("level 3/3: 384x256 px, 2 tiles of 256 px,")
    assert str(tmp_path / "results/production_small.tif.daskstyle") in lines[5]
    assert lines[-1] == "the disks are large enough; nothing was written"
    assert list(tmp_path.iterdir()) == [path]  # not even the results directory
    with pytest.raises(InputError, match="--dry-run is for productions and comparisons"):
        run_pipeline(shipped("scaling_small.toml", tmp_path), dry_run=True)


def test_an_ome_zarr_production_may_ask_for_its_pyramid(tmp_path):
    path = tmp_path / "p.toml"  # an OME-Zarr always holds its halved levels
    path.write_text(GOOD_PRODUCTION.replace("o.tif", "o.ome.zarr") + "pyramid = true\n")
    lines = []
    assert run_pipeline(path, echo=lines.append, dry_run=True) == []
    assert lines[-1] == "the disks are large enough; nothing was written"


def test_a_scaling_study_too_large_for_its_disk_stops_before_it_starts(tmp_path, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    path = shipped("scaling_small.toml", tmp_path)
    with pytest.raises(InputError, match=r"needs 5.5 MB on the disk of .* 1.0 MB is free"):
        run_pipeline(path, echo=lambda line: None)
    assert list(tmp_path.iterdir()) == [path]


GOOD_SCALING = 'kind = "scaling"\noutput = "out"\ncanvas = 64\nworkers = [1]\ntiles = [32]\n'
GOOD_PRODUCTION = 'kind = "production"\ncontent = "example"\nstyle = "example"\noutput = "o.tif"\n'


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD_SCALING + "canvass = 64\n", ["unknown key 'canvass'"]),
        (GOOD_SCALING.replace("canvas = 64\n", ""), ["missing key 'canvas'"]),
        (GOOD_SCALING.replace("canvas = 64", 'canvas = "64"'), ["canvas must be", "'64'"]),
        (GOOD_SCALING.replace("workers = [1]", "workers = [1, 0]"), ["workers must be"]),
        (GOOD_SCALING.replace("workers = [1]", "workers = []"), ["workers must be"]),
        (
            GOOD_SCALING.replace("tiles = [32]", "tiles = [40]"),
            ["tiles must be multiples of 16 px, not 40"],
        ),
        (GOOD_SCALING + 'modes = ["strong", "medium"]\n', ["modes", "'medium'"]),
        (GOOD_SCALING + 'style_layers = ["relu9_1"]\n', ["style_layers", "relu9_1"]),
        (GOOD_SCALING + "iterations = true\n", ["iterations must be"]),
        (GOOD_SCALING + 'weights = "missing.pth"\n', ["weights", "missing.pth"]),
        (GOOD_SCALING + 'dtype = "float16"\n', ["dtype", "float16"]),
        (GOOD_SCALING + "modes = []\n", ['modes must be a non-empty list of "strong" and "weak"']),
        (GOOD_SCALING + 'workdir = ""\n', ["workdir must be a path, not ''"]),
        (GOOD_SCALING + "canvas = 65\n", ["not valid TOML"]),  # a key given twice
        ('kind = "scaling"\noutput = [\n', ["not valid TOML"]),
        ('kind = "render"\n', ["kind = 'render'", "production"]),
        ('kind = ["scaling"]\n', ["kind = ['scaling']", "production"]),
        ("canvas = 64\n", ["has no 'kind'"]),
        (GOOD_PRODUCTION + "r0 = 0\n", ["r0 must be"]),
        (GOOD_PRODUCTION + 'tpc = "big"\n', ["tpc must be a number"]),
        (
            GOOD_PRODUCTION.replace('"example"\nstyle', '"nowhere.png"\nstyle'),
            ["content", "nowhere.png"],
        ),
        (GOOD_PRODUCTION.replace("o.tif", "o.bmp"), ["output", "o.bmp"]),
        (GOOD_PRODUCTION.replace("o.tif", "o.png") + "pyramid = true\n", ["pyramid", ".tif"]),
        (GOOD_PRODUCTION + 'weights = "random"\n', ["weights", "network"]),
        (GOOD_PRODUCTION + 'network = "alexnet"\n', ["network", "alexnet"]),
        (GOOD_PRODUCTION + "network = 5\n", ["network must be a string, not 5"]),
        (GOOD_PRODUCTION + "weights = 3\n", ['weights must be a weights file, or "random", not 3']),
        (GOOD_PRODUCTION + "[cluster]\nnodes = 3\n", ["unknown key 'cluster.nodes'"]),
        (
            GOOD_PRODUCTION + "[cluster]\nworkers = 1.5\n",
            ["cluster.workers must be a positive whole number, not 1.5"],
        ),
        (
            GOOD_PRODUCTION + "[cluster]\nmemory_limit = 1.5\n",
            ['cluster.memory_limit must be a size such as "8GB", or bytes, not 1.5'],
        ),
        (GOOD_PRODUCTION + '[cluster]\nconfig = "none.yaml"\n', ["cluster.config", "none.yaml"]),
        (GOOD_PRODUCTION + '[cluster]\nspec = "kubernetes"\n', ["cluster.spec", "kubernetes"]),
        (GOOD_PRODUCTION + "cluster = 3\n", ["cluster must be a table"]),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as excinfo:
        run_pipeline(path, echo=pytest.fail)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing written


def test_missing_file_and_defaults(tmp_path):
    with pytest.raises(InputError, match="cannot read pipeline file"):
        run_pipeline(tmp_path / "absent.toml")
    path = tmp_path / "sub" / "p.toml"
    path.parent.mkdir()
    path.write_text(GOOD_PRODUCTION + '[cluster]\nspec = "scheduler.json"\n')
    config = load(path)
    assert config.output == path.parent / "o.tif"  # relative to the TOML file
    assert config.cluster.spec == str(path.parent / "scheduler.json")
    assert config.settings == Settings()  # the run settings' defaults
    assert config.weights is None and config.resume is False
    assert config.content.is_file()  # "example" is the built-in picture


def test_scaling_lists_and_output_are_normalised(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(GOOD_SCALING.replace("[1]", "[4, 1, 4]").replace('"out"', '"r/out.png"'))
    config = load(path)
    assert config.workers == [1, 4]  # ascending, each once
    assert config.output == tmp_path / "r" / "out"  # the stem of .csv and .png
    assert config.content_layer == DEFAULT_CONTENT_LAYER and config.weights == "random"


def test_shipped_full_size_files_are_valid():
    """The large files parse and check, except for their placeholder pictures."""
    assert load(PIPELINES / "scaling.toml").workers == [1, 2, 4, 8]
    with pytest.raises(InputError, match="content"):
        load(PIPELINES / "production_30k.toml")  # placeholder paths a user edits

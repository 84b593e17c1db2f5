"""Comparisons: the shipped toy tiling experiment paints its variants, measures them, writes
its figure and CSVs, and keeps finished variants on resume; bad files end in one line."""

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daskstyle.core.errors import InputError
from daskstyle.frontends.pipeline import cost, load, painting_path, run_pipeline
from daskstyle.run import rundir

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
VARIANTS = ["(a) no halo, tile Grams", "(b) exact halo, tile Grams", "(c) daskstyle", "untiled"]


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_small_tiling_experiment(tmp_path):
    """pipelines/tiling_small.toml (the seed paper's Fig. 9 at toy size): the figure, the
    CSVs and the seam scores are written; (c) leaves no more trace than the untiled run and
    far less than (a) and (b); run again with resume, every variant is kept as it was."""
    path = Path(shutil.copy(PIPELINES / "tiling_small.toml", tmp_path))
    lines = []
    written = run_pipeline(path, echo=lines.append)
    stem = tmp_path / "results" / "tiling_small"
    paintings = [painting_path(stem, name) for name in VARIANTS]
    assert written == [stem.with_suffix(".png"), stem.with_suffix(".csv"),
                       stem.with_name("tiling_small-steps.csv"), *paintings]  # fmt: skip
    assert paintings[0].name == "tiling_small-a-no-halo-tile-grams.png"
    summary = {row["variant"]: row for row in _rows(stem.with_suffix(".csv"))}
    assert list(summary) == VARIANTS
    seam = {name: float(row["seam_score"]) for name, row in summary.items()}
    spread = {name: float(row["colour_spread"]) for name, row in summary.items()}
    assert seam["(c) daskstyle"] == pytest.approx(seam["untiled"], abs=0.02)
    assert min(seam["(a) no halo, tile Grams"], seam["(b) exact halo, tile Grams"]) > 3 * seam["(c) daskstyle"]  # fmt: skip
    assert spread["(a) no halo, tile Grams"] > spread["(c) daskstyle"] + 0.3
    assert summary["untiled"]["changes"] == "tile=384"
    assert summary["(a) no halo, tile Grams"]["changes"] == "halo=0 gram_scope=tile"
    steps = _rows(stem.with_name("tiling_small-steps.csv"))
    assert len(steps) == 4 * 3 and {row["tiles"] for row in steps} == {"24", "1"}
    assert all(float(row["seconds"]) > 0 and row["megapixels"] == "0.098304" for row in steps)
    record = rundir.read_record(rundir.default_workdir(paintings[1]))
    assert record["experiment"] == {"gram_scope": "tile"} and record["finished"]
    from_csv = cost.level_times(stem.with_name("tiling_small-steps.csv"))
    from_run = cost.level_times(rundir.default_workdir(paintings[2]))
    assert from_run == [{**from_csv[2], "source": "tiling_small-c-daskstyle.png.daskstyle"}]
    assert from_csv[2]["steps"] == 2 and from_csv[2]["width"] == 384  # step 1 left out
    figure = Image.open(stem.with_suffix(".png"))
    assert figure.width == 16 + 4 * (384 + 16) and figure.height > 256 + 128
    assert any("seam score" in line for line in lines)

    path.write_text(path.read_text().replace("kind =", "resume = true\nkind =", 1))
    before = stem.with_suffix(".csv").read_bytes()
    lines.clear()
    run_pipeline(path, echo=lines.append)
    assert sum("kept from before" in line for line in lines) == 4
    assert stem.with_suffix(".csv").read_bytes() == before


def _toml(text: str) -> str:
    return ('kind = "comparison"\ncontent = "example"\nstyle = "example"\noutput = "r/o"\n'
            + text)  # fmt: skip


@pytest.mark.parametrize(
    "text, words",
    [
        ("", ["missing key 'variant'"]),
        ('[[variant]]\nname = "x"\nfoo = 1\n', ["unknown key 'variant 1.foo'"]),
        ('[[variant]]\nname = "x"\n[[variant]]\nname = "y"\nr0 = 0\n', ['variant "y": r0 must']),
        (
            '[[variant]]\nname = "x"\nexperiment = { gram_scope = "tiles" }\n',
            ["variant 1.experiment.gram_scope must be image or tile, not 'tiles'"],
        ),  # fmt: skip
        (
            '[[variant]]\nname = "x"\nexperiment = { tile = 1 }\n',
            ["unknown key 'variant 1.experiment.tile' (known keys: halo, gram_scope)"],
        ),  # fmt: skip
        ('[[variant]]\nname = "x"\nstyle = "none.png"\n', ['variant "x": style', "none.png"]),
        ('[[variant]]\nname = "x"\n[[variant]]\nname = "X!"\n', ["both write o-x.png"]),
        ('crop = [300, 0, 128]\n[[variant]]\nname = "x"\n', ["crop [300, 0, 128]", "384x256"]),
        ("crop = [0, 0]\n[[variant]]\nname = 'x'\n", ["crop must be [x, y, side]"]),
        ("variant = 3\n", ["variant must be a list of tables, not 3"]),
        (
            "seam_tile = 256\n[[variant]]\nname = 'x'\n",
            ["seam_tile = 256 must be smaller", "384x256"],
        ),
    ],
)
def test_bad_comparison_files_give_one_line_errors(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(_toml(text))
    with pytest.raises(InputError) as error:
        load(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_dry_run_says_each_variant_and_writes_nothing(tmp_path):
    path = Path(shutil.copy(PIPELINES / "tiling_small.toml", tmp_path))
    lines = []
    assert run_pipeline(path, echo=lines.append, dry_run=True) == []
    variants = [line for line in lines if line.startswith("variant ")]
    assert variants[0] == "variant 1/4: (a) no halo, tile Grams (halo=0 gram_scope=tile)"
    assert variants[2] == "variant 3/4: (c) daskstyle (as the file says)"
    assert any("halo 0 px" in line for line in lines)
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "name, variants",
    [("tiling.toml", VARIANTS), ("start_resolution.toml", ["r0 = 256", "r0 = 512", "r0 = 1024"]),
     ("style_resolution.toml", ["style 256 px", "style 512 px", "style 1024 px",
                                "style 1024 px, style_scale 0.25"]),
     ("precision.toml", ["exact", "bf16"])],
)  # fmt: skip
def test_shipped_full_size_comparisons_are_valid(tmp_path, name, variants):
    """The full-size experiments check, given pictures where fetch_photos.py puts them."""
    path = Path(shutil.copy(PIPELINES / name, tmp_path))
    (tmp_path / "photos").mkdir()
    for picture, width, height in (("ladybird_square_1024.png", 1024, 1024),
                                   ("ladybird_1024.png", 1024, 640),
                                   *((f"elephants_{side}.png", side, side * 9 // 16)
                                     for side in (256, 512, 1024))):  # fmt: skip
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(tmp_path / "photos" / picture)
    config = load(path)
    assert [v.name for v in config.variant] == variants
    if name == "tiling.toml":
        assert config.settings_of(config.variant[3]).tile == 1024 and config.seam_tile == 256


def test_cost_fit_recovers_a_power_law(tmp_path):
    """A steps CSV whose seconds are 3 * MP ** 1.2: the fit finds the law, the first step of
    each level (slower) is left out, and the figure is drawn."""
    path = tmp_path / "x-steps.csv"
    lines = ["variant,level,width,height,megapixels,tiles,step,loss,mean_change,seconds"]
    for level, side in enumerate((250, 500, 1000, 2000), start=1):
        seconds = 3 * (side * side / 1e6) ** 1.2
        lines += [f"v,{level},{side},{side},0,1,{step},1,1,{seconds * (9 if step == 1 else 1)}"
                  for step in (1, 2, 3)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    rows = cost.level_times(path)
    assert [row["megapixels"] for row in rows] == [0.0625, 0.25, 1.0, 4.0]
    a, b = cost.fit_power_law(rows)
    assert a == pytest.approx(3) and b == pytest.approx(1.2)
    assert Image.open(io.BytesIO(cost.cost_png(rows, (a, b), "t"))).width == 700
    with pytest.raises(InputError, match="at least two sizes"):
        cost.fit_power_law(rows[:1])
    with pytest.raises(InputError, match="neither"):
        cost.level_times(tmp_path / "x.png")


PRECISION_TOML = """\
kind = "comparison"
content = "example"
style = "example"
output = "results/precision"
network = "vgg19"
weights = "random"
content_layer = "relu2_1"
style_layers = ["relu1_1", "relu2_1"]
r0 = 384
tile = 128
max_iters = 3
seam_tile = 128
float64_losses = true

[[variant]]
name = "exact"

[[variant]]
name = "bf16"
precision = "bf16"

[cluster]
spec = "threads"
"""


@pytest.mark.slow
def test_float64_losses_judge_each_painting_the_same_way(tmp_path):
    """With float64_losses, every painting's content and style losses are evaluated again in
    float64 (exact, tiled): for a bf16 run as for an exact one, close to each other, written
    in the summary and the figure; a painting equal to the content has content loss 0."""
    import torch

    from daskstyle.api import loss_and_grad
    from daskstyle.frontends.pipeline.evaluate import float64_losses
    from daskstyle.io.images import read_image
    from daskstyle.networks.catalog import random_weights
    from daskstyle.run.painting import EXAMPLE_CONTENT, EXAMPLE_STYLE, plan
    from daskstyle.settings import Settings

    path = tmp_path / "precision.toml"
    path.write_text(PRECISION_TOML)
    lines = []
    run_pipeline(path, echo=lines.append)
    summary = {row["variant"]: row for row in _rows(tmp_path / "results" / "precision.csv")}
    losses = {name: (float(row["content_loss_float64"]), float(row["style_loss_float64"]))
              for name, row in summary.items()}  # fmt: skip
    assert all(0 < value < float("inf") for pair in losses.values() for value in pair)
    for exact, bf16 in zip(losses["exact"], losses["bf16"]):
        assert bf16 == pytest.approx(exact, rel=0.05)
    assert "losses in float64" in "\n".join(lines)
    assert all(
        float(row["seam_score"]) > 0 and row["colour_spread"] == "" for row in summary.values()
    )

    weights = tmp_path / "vgg19-random.pth"
    torch.save(random_weights("vgg19", 0), weights)
    settings = Settings(network="vgg19", content_layer="relu2_1", tile=128,
                        style_layers=("relu1_1", "relu2_1"))  # fmt: skip
    run = plan(EXAMPLE_CONTENT, EXAMPLE_STYLE, tmp_path / "out.png", settings=settings,
               weights=weights)  # fmt: skip
    content_loss, style_loss = float64_losses(run, EXAMPLE_CONTENT, weights)
    assert content_loss == 0
    untiled, _ = loss_and_grad(read_image(EXAMPLE_CONTENT), read_image(EXAMPLE_CONTENT),
                               read_image(EXAMPLE_STYLE), weights=weights, network="vgg19",
                               content_weight=0, dtype=np.float64, content_layer="relu2_1",
                               style_layers=("relu1_1", "relu2_1"))  # fmt: skip
    assert style_loss == pytest.approx(untiled, rel=1e-9) and style_loss > 0

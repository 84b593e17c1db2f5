"""Regions in a whole run: the command line, the dry run's line, run.json and resume, TOML."""

import json

import numpy as np
import pytest
from PIL import Image

from daskstyle.controls import regions
from daskstyle.core.errors import InputError
from daskstyle.frontends import cli
from daskstyle.frontends.pipeline.config import load

from .conftest import SMALL_RUN_OPTIONS


@pytest.fixture
def region_pictures(pictures, tmp_path):
    """The small content (96 x 80) and style, a second style, and labels at half the
    content's size: its left 30 columns label 0, the rest 1."""
    second = tmp_path / "second.png"
    rng = np.random.default_rng(5)
    Image.fromarray(rng.uniform(0, 120, (56, 60, 3)).astype(np.uint8)).save(second)
    labels = np.ones((48, 40), np.uint8)
    labels[:, :30] = 0
    path = tmp_path / "labels.png"
    Image.fromarray(labels).save(path)
    return pictures[0], [pictures[1], second], path


def run(capsys, weights_file, content, styles, out, *options):
    argv = ["run", str(content), *map(str, styles), "-o", str(out), *SMALL_RUN_OPTIONS,
            "--weights", str(weights_file), "--cluster", "threads", *map(str, options)]  # fmt: skip
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_dry_run_names_the_regions_and_their_shares(region_pictures, weights_file, tmp_path,
                                                    capsys):  # fmt: skip
    content, styles, labels = region_pictures
    part = tmp_path / "part.png"
    Image.fromarray(np.ones((56, 60), np.uint8)).save(part)  # all of the second style
    status, out, _ = run(capsys, weights_file, content, styles, tmp_path / "o.png", "--regions",
                         labels, "--region-feather", 2, "--style-regions", f",{part}",
                         "--dry-run")  # fmt: skip
    assert status == 0
    assert ("regions labels.png: label 0 style.png 75%, 1 second.png (part part.png) 25% of the "
            "pixels; borders feathered 2 px, guides by resize") in out  # fmt: skip
    assert "blended" not in out
    assert not (tmp_path / "o.png.daskstyle").exists()


def test_a_run_records_its_regions_and_refuses_a_resume_with_others(
    region_pictures, weights_file, tmp_path, capsys
):
    content, styles, labels = region_pictures
    out = tmp_path / "o.png"
    status, _, err = run(capsys, weights_file, content, styles, out, "--regions", labels,
                         "--region-feather", 2, "--max-iters", 1)  # fmt: skip
    assert status == 0, err
    record = json.loads((tmp_path / "o.png.daskstyle" / "run.json").read_text())
    assert record["settings"]["regions"] == str(labels.resolve())
    assert record["settings"]["region_feather"] == 2
    assert "regions" in record["inputs"]
    status, _, err = run(capsys, weights_file, content, styles, out, "--regions", labels,
                         "--region-feather", 3, "--max-iters", 1, "--resume")  # fmt: skip
    assert status != 0 and "cannot resume" in err and "settings differ" in err
    Image.fromarray(np.zeros((48, 40), np.uint8)).save(labels)  # other labels, same name
    status, _, err = run(capsys, weights_file, content, styles, out, "--regions", labels,
                         "--region-feather", 2, "--max-iters", 1, "--resume")  # fmt: skip
    assert status != 0 and "the regions file" in err and "changed since the run began" in err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--gram", "lagged"], "--gram must be exact with regions"),
        (["--style-blend", "1,2"], "--style-blend does not mix with regions"),
        (["--region-guides", "near"], "--region-guides must be one of resize, all, inside"),
        (["--style-regions", "a.png"], "--style-regions names 1 pictures for 2 styles"),
    ],
)
def test_bad_region_options_are_one_line_errors(region_pictures, weights_file, tmp_path, capsys,
                                                options, message):  # fmt: skip
    content, styles, labels = region_pictures
    status, _, err = run(capsys, weights_file, content, styles, tmp_path / "o.png", "--regions",
                         labels, *options, "--dry-run")  # fmt: skip
    assert status != 0 and message in err and err.count("\n") == 1


def test_too_few_styles_for_the_labels(region_pictures, weights_file, tmp_path, capsys):
    content, styles, labels = region_pictures
    status, _, err = run(capsys, weights_file, content, styles[:1], tmp_path / "o.png",
                         "--regions", labels, "--dry-run")  # fmt: skip
    assert status != 0 and "hold label 1 but 1 styles are given" in err


def test_toml_regions_are_relative_to_the_file(tmp_path):
    path = tmp_path / "sub" / "p.toml"
    path.parent.mkdir()
    path.write_text('kind = "production"\ncontent = "example"\nstyle = ["example", "example"]\n'
                    'output = "o.png"\nregions = "labels.png"\nregion_feather = 4.0\n'
                    'style_regions = ["", "parts.png"]\n')  # fmt: skip
    settings = load(path).settings
    assert settings.regions == str(path.parent / "labels.png")
    assert settings.style_regions == ("", str(path.parent / "parts.png"))
    assert settings.region_feather == 4.0


def test_label_pictures_gray_palette_or_gray_rgb(tmp_path):
    values = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    gray, palette, rgb = (tmp_path / n for n in ("gray.png", "palette.png", "rgb.png"))
    Image.fromarray(values).save(gray)
    picture = Image.fromarray(values, mode="L").convert("P")  # indices equal to the values
    picture.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    picture.save(palette)
    Image.fromarray(np.repeat(values[..., None], 3, -1)).save(rgb)
    for path in (gray, palette, rgb):
        assert np.array_equal(regions.read_labels(path), values), path.name
    colour = tmp_path / "colour.png"
    Image.fromarray(np.dstack([values, values, values * 0 + 9])).save(colour)
    with pytest.raises(InputError, match="are RGB: give an 8-bit gray or a palette PNG"):
        regions.read_labels(colour)
    with pytest.raises(InputError, match="cannot read the labels"):
        regions.read_labels(tmp_path / "absent.png")

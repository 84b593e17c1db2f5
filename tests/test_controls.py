"""The artistic controls in whole runs: what each promises, one-line errors, resume."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from daskstyle.controls import colors
from daskstyle.core.errors import InputError
from daskstyle.frontends import cli
from daskstyle.frontends.pipeline import load
from daskstyle.io.images import read_image
from daskstyle.optimise.state import LevelState
from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, final_canvas

SMALL = dict(r0=48, max_iters=3, style_weight=10.0, network="vgg19", tile=32, **SHALLOW_RUN)


@pytest.fixture(scope="module")
def second_style(tmp_path_factory):
    """Another style picture: warm diagonal stripes (70 x 58)."""
    y, x = np.mgrid[0:70, 0:58]
    stripes = ((x + y) // 6) % 2
    image = np.stack([200 + 50 * stripes, 90 + 60 * stripes, 40 * (1 - stripes)], -1)
    path = tmp_path_factory.mktemp("second") / "stripes.png"
    Image.fromarray(image.astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def plain(pictures, weights_file, tmp_path_factory):
    """The final canvas of a run with no control: what each control is compared with."""
    out = tmp_path_factory.mktemp("plain") / "plain.png"
    paint(*pictures, out, weights_file)
    return final_canvas(default_workdir(out))


def paint(content, style, out, weights_file, **settings):
    events = []
    painting.transfer(content, style, out, settings=Settings(**{**SMALL, **settings}),
                 weights=weights_file, on_event=events.append)  # fmt: skip
    return events


class Stop(Exception):
    """Raised from the progress callback: a run interrupted after a chosen step."""


def interrupted(content, style, out, weights_file, after, **settings):
    """A run stopped after level 1's step ``after``, as a kill would leave it."""

    def on_event(event):
        if isinstance(event, painting.Stepped) and (event.level, event.step) == (0, after):
            raise Stop

    with pytest.raises(Stop):
        painting.transfer(content, style, out, settings=Settings(**{**SMALL, **settings}),
                     weights=weights_file, on_event=on_event)  # fmt: skip


def test_a_blend_of_one_and_zero_is_the_single_style_run(
    pictures, second_style, weights_file, tmp_path, plain
):
    content, style = pictures
    paint(content, [style, second_style], tmp_path / "blend.png", weights_file,
          style_blend=(1, 0))  # fmt: skip
    one = plain
    blend = final_canvas(default_workdir(tmp_path / "blend.png"))
    assert np.array_equal(one, blend)
    paint(content, [style, second_style], tmp_path / "even.png", weights_file)
    assert np.abs(final_canvas(default_workdir(tmp_path / "even.png")) - one).max() > 1


def test_noise_start_is_the_same_for_any_tile_and_after_a_resume(
    pictures, weights_file, tmp_path, monkeypatch
):
    starts = []
    create = LevelState.create

    def spy(path, content, start, *args, **kwargs):
        starts.append(np.asarray(start))
        return create(path, content, start, *args, **kwargs)

    monkeypatch.setattr(LevelState, "create", staticmethod(spy))
    content, style = pictures
    settings = dict(init="noise", seed=7, dtype="float64")
    paint(content, style, tmp_path / "a.png", weights_file, tile=32, **settings)
    paint(content, style, tmp_path / "b.png", weights_file, tile=48, **settings)
    first_a, first_b = starts[0], starts[2]  # level 1's start of each run
    assert np.array_equal(first_a, first_b)
    assert 100 < first_a.mean() < 155 and first_a.std() > 50  # noise, not the content
    paint(content, style, tmp_path / "c.png", weights_file, init="noise", seed=8)
    assert not np.array_equal(starts[4], first_a)

    out = tmp_path / "resumed.png"
    interrupted(content, style, out, weights_file, after=2, tile=32, **settings)
    painting.transfer(content, style, out, settings=Settings(**{**SMALL, **settings}),
                 weights=weights_file, resume=True)  # fmt: skip
    assert np.array_equal(
        final_canvas(default_workdir(out)),
        final_canvas(default_workdir(tmp_path / "a.png")),
    )


def _chroma(image):
    ycbcr = colors.to_ycbcr(np.asarray(image, np.float64))
    return np.asarray(ycbcr)[..., 1:]


def test_content_colours_keep_the_content_chroma(pictures, weights_file, tmp_path):
    content, style = pictures
    out = tmp_path / "kept.png"
    paint(content, style, out, weights_file, colors="content")
    result, original = read_image(out).compute(), read_image(content).compute()
    assert np.abs(_chroma(result) - _chroma(original)).mean(axis=(0, 1)).max() < 2
    assert np.abs(result - original).max() > 1  # it did paint
    preview = read_image(default_workdir(out) / "level1.png").compute()
    assert preview.std(axis=2).mean() > 5  # previews show the colours too, not gray


@pytest.mark.parametrize(
    "settings",
    [
        dict(colors="match"),
        dict(style_scale=2.0),
        dict(style_scale=0.5),
        dict(init="gray"),
        dict(tv_weight=0.01),
        dict(pooling="avg"),
        dict(
            content_layer="relu1_1",
            style_layers=("relu1_1", "relu2_1"),
            style_layer_weights=(1.0, 3.0),
        ),  # fmt: skip
    ],
    ids=lambda settings: ",".join(settings),
)
def test_each_control_paints_another_picture(pictures, weights_file, tmp_path, settings, plain):
    content, style = pictures
    paint(content, style, tmp_path / "control.png", weights_file, **settings)
    control = final_canvas(default_workdir(tmp_path / "control.png"))
    assert np.isfinite(control).all()
    assert np.abs(control - plain).max() > 0.1


def test_a_start_picture_and_sixteen_bit_tiff(pictures, weights_file, tmp_path):
    content, style = pictures
    out = tmp_path / "deep.tif"
    paint(content, style, out, weights_file, init=str(style), bit_depth=16)
    pixels = tifffile.imread(out)
    assert pixels.dtype == np.uint16 and pixels.shape == (96, 80, 3)
    canvas = final_canvas(default_workdir(out))
    expected = np.clip(np.rint(canvas.astype(np.float64) * 257), 0, 65535)
    assert np.abs(pixels - expected).max() <= 1


def test_resume_refuses_changed_controls(pictures, weights_file, tmp_path):
    content, style = pictures
    out = tmp_path / "out.png"
    interrupted(content, style, out, weights_file, after=1, tv_weight=0.01)
    with pytest.raises(InputError, match="settings differ"):
        painting.transfer(content, style, out, settings=Settings(**SMALL), weights=weights_file,
                     resume=True)  # fmt: skip


def _run_cli(capsys, *args):
    code = cli.main(["run", *map(str, args)])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--style-blend", "1,2,3"], "--style-blend must give one weight per style (2)"),
        (["--style-blend", "1,-1"], "--style-blend must be finite numbers, 0 or more"),
        (["--style-blend", "nan,1"], "--style-blend must be finite numbers, 0 or more"),
        (["--style-blend", "0,0"], "--style-blend must not all be 0"),
        (["--style-layers", "relu1_1,relu9_9"], "vgg19 has no layer 'relu9_9'"),
        (["--content-layer", "conv9"], "vgg19 has no layer 'conv9'"),
        (["--style-scale", "0"], "--style-scale must be a finite number above 0, not 0.0"),
        (["--init", "nowhere.png"], "nowhere.png"),
        (["--bit-depth", "12"], "--bit-depth must be 8 or 16, not 12"),
        (["--colors", "blue"], "--colors must be one of style, content, match, not 'blue'"),
        (["--pooling", "min"], "--pooling must be one of max, avg, not 'min'"),
        (["--tv-weight", "-1"], "--tv-weight must be a finite number, 0 or more"),
    ],
)
def test_bad_controls_are_one_line_before_any_work(
    pictures, second_style, weights_file, tmp_path, capsys, extra, message
):
    out = tmp_path / "out.png"
    args = [*pictures, second_style, "-o", out, "--network", "vgg19", "--weights", weights_file]
    code, err = _run_cli(capsys, *args, *extra)
    assert code != 0
    assert message in err and err.count("\n") == 1, err
    assert not out.exists() and not default_workdir(out).exists()


def test_a_blend_that_is_not_numbers_is_a_usage_error(pictures, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", *map(str, pictures), "-o", str(tmp_path / "o.png"), "--style-blend",
                  "one,two"])  # fmt: skip
    assert stop.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith("--style-blend: give numbers separated by commas, not 'one,two'")


def test_an_unreadable_start_picture_and_a_sixteen_bit_jpeg_are_refused(
    pictures, weights_file, tmp_path, capsys
):
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    base = [*pictures, "--network", "vgg19", "--weights", weights_file]
    code, err = _run_cli(capsys, *base, "-o", tmp_path / "a.png", "--init", broken)
    assert code == 1 and "broken.png" in err and err.count("\n") == 1
    code, err = _run_cli(capsys, *base, "-o", tmp_path / "a.jpg", "--bit-depth", "16")
    assert code == 1 and ".tif or .png" in err and err.count("\n") == 1


def test_dry_run_says_which_controls_are_on(pictures, second_style, weights_file, tmp_path, capsys):
    args = [*pictures, second_style, "-o", tmp_path / "out.tif", "--network", "vgg19",
            "--weights", weights_file, "--dry-run", "--style-blend", "3,1", "--colors",
            "content", "--style-scale", "2", "--init", "noise", "--seed", "7", "--tv-weight",
            "0.5", "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1",
            "--bit-depth", "16", "--dpi", "600", "--precision", "bf16"]  # fmt: skip
    assert cli.main(["run", *map(str, args)]) == 0
    out = capsys.readouterr().out
    for line in ("styles blended: style.png x0.75, stripes.png x0.25", "colours: the content's",
                 "strokes x2", "start: noise (seed 7)", "total variation weight 0.5",
                 "instead of the default layers' 160 px", "output: 16 bits per sample, 600 dpi",
                 "precision bf16: "):  # fmt: skip
        assert line in out, out


def test_pipeline_keys_of_the_controls(pictures, second_style, tmp_path):
    content, style = pictures
    Image.open(style).save(tmp_path / "start.png")
    path = tmp_path / "p.toml"
    path.write_text(
        f'kind = "production"\ncontent = "{content}"\nstyle = ["{style}", "{second_style}"]\n'
        'output = "out.tif"\nstyle_blend = [3, 1]\ninit = "start.png"\nbit_depth = 16\n'
        'style_layers = ["relu1_1", "relu2_1"]\ncolors = "match"\nseed = 3\n'
    )
    config = load(path)
    settings = config.settings
    assert config.style == [style, second_style]
    assert settings.style_blend == (3.0, 1.0) and settings.style_layers == ("relu1_1", "relu2_1")
    assert settings.init == str(tmp_path / "start.png") and settings.bit_depth == 16
    assert settings.colors == "match" and settings.seed == 3
    path.write_text(path.read_text().replace("[3, 1]", "[3, 1, 1]"))
    with pytest.raises(InputError, match=r"p.toml: style_blend must give one weight per"):
        load(path)

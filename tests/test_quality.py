"""Picture quality with real weights (HED's VGG-16): skipped, with the reason, without them."""

import numpy as np
import pytest

import daskstyle
from daskstyle.io.images import read_image
from daskstyle.io.resize import resize
from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import final_canvas
from .reference import relative_error


@pytest.fixture(scope="module")
def example_at_128(tmp_path_factory):
    """The built-in example content and style, shrunk to a 128-px long side."""
    content = read_image(painting.EXAMPLE_CONTENT)
    style = read_image(painting.EXAMPLE_STYLE)
    small = resize(content, (85, 128)).compute()
    return small, resize(style, (128, 128)).compute()


def _losses(image, content, style, weights):
    """(content loss, style loss) of ``image`` with unit weights."""
    kw = dict(network="hed-vgg16", weights=weights)
    content_loss, _ = daskstyle.loss_and_grad(image, content, style, style_weight=0.0, **kw)
    style_loss, _ = daskstyle.loss_and_grad(image, content, style, content_weight=0.0, **kw)
    return content_loss, style_loss


def test_real_weights_tiled_equals_untiled_in_float32(hed_weights, example_at_128):
    content, style = example_at_128
    canvas = np.clip(content + np.random.default_rng(0).normal(0, 20, content.shape), 0, 255)
    kw = dict(network="hed-vgg16", weights=hed_weights, style_weight=10.0)
    loss, whole = daskstyle.loss_and_grad(canvas, content, style, **kw)
    tiled_loss, tiled = daskstyle.loss_and_grad(canvas, content, style, tile=32, **kw)
    assert relative_error(tiled, whole) < 1e-4
    assert tiled_loss == pytest.approx(loss, rel=1e-4)


def test_short_run_takes_the_style_and_keeps_the_content(hed_weights, example_at_128, tmp_path):
    content, style = example_at_128
    paths = tmp_path / "content.tif", tmp_path / "style.tif"
    for path, image in zip(paths, (content, style)):
        daskstyle.io.images.write_image(path, image)
    content = read_image(paths[0]).compute()  # as the run sees it (8-bit)
    style = read_image(paths[1]).compute()
    settings = Settings(r0=128, max_iters=30, stop=0.0, network="hed-vgg16")
    painting.transfer(*paths, tmp_path / "out.tif", settings=settings, weights=None)
    painted = final_canvas(default_workdir(tmp_path / "out.tif"))
    content_of_painted, style_of_painted = _losses(painted, content, style, hed_weights)
    _, style_of_content = _losses(content, content, style, hed_weights)
    style_as_picture = resize(daskstyle.io.images.read_image(paths[1]), content.shape[:2]).compute()
    content_of_style, _ = _losses(style_as_picture, content, style, hed_weights)
    assert style_of_painted < 0.5 * style_of_content
    assert content_of_painted < content_of_style

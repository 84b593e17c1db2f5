"""A content layer before the first pooling: the gradient pass remakes the content target from
the content image in each tile instead of reading features 21 times the picture's size, and
stays exact (against plain torch autograd on the whole image, and untiled)."""

import numpy as np
import pytest
import torch

import daskstyle

from . import reference
from .reference import relative_error

STYLE = dict(style_layers=("relu1_1", "relu3_1"))  # halo 10 + 10 px
REFERENCE = {"relu1_1": 1, "relu1_2": 3}  # the layers' indices in VGG-19's features


@pytest.mark.parametrize("layer", ["relu1_1", "relu1_2"])
@pytest.mark.parametrize(
    "tile, n_tiles",
    [(None, 0), (96, 4), (48, 12), (16, 108)],  # 16 px: smaller than the halo
)
def test_a_remade_target_is_exact_in_float64(
    vgg19, vgg19_state, images, count_tiles, layer, tile, n_tiles
):
    canvas, content, style = images(177, 131)
    weights = dict(content_weight=2.0, style_weight=30.0)
    loss, grad = daskstyle.loss_and_grad(canvas, content, style, tile=tile, weights=vgg19_state,
                                         dtype=np.float64, content_layer=layer, **STYLE,
                                         **weights)  # fmt: skip
    ref_loss, ref_grad = reference.loss_and_grad(
        vgg19.features, canvas, content, style, content_index=REFERENCE[layer],
        style_indices=(1, 11), **weights,
    )  # fmt: skip
    assert count_tiles["tile_content_features"] == 0  # no target is made ahead and stored
    assert count_tiles["tile_gradient_remaking_target"] == n_tiles
    assert relative_error(grad, ref_grad) < 1e-9
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    untiled_loss, untiled = daskstyle.loss_and_grad(
        canvas, content, style, weights=vgg19_state, dtype=np.float64, content_layer=layer,
        **STYLE, **weights,
    )  # fmt: skip
    assert relative_error(grad, untiled) < 1e-12
    assert loss == pytest.approx(untiled_loss, rel=1e-12)


def test_a_remade_target_is_exact_in_float32(vgg19, vgg19_state, images):
    canvas, content, style = images(160, 208)
    ref_loss, ref_grad = reference.loss_and_grad(
        vgg19.features, canvas, content, style, content_index=1, style_indices=(1, 11),
        dtype=torch.float32,
    )  # fmt: skip
    loss, grad = daskstyle.loss_and_grad(canvas, content, style, tile=64, weights=vgg19_state,
                                         content_layer="relu1_1", **STYLE)  # fmt: skip
    assert grad.dtype == np.float32
    assert relative_error(grad, ref_grad) < 1e-4
    assert loss == pytest.approx(ref_loss, rel=1e-4)


def _array_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")


def test_a_run_keeps_its_content_instead_of_a_target_and_its_disk_estimate_holds(
    pictures, weights_file, tmp_path, monkeypatch
):
    from daskstyle.optimise.state import LevelState
    from daskstyle.run import footprint, painting
    from daskstyle.settings import Settings

    running, folders = [], []
    real_release = LevelState.release

    def measure_then_release(self):
        running.append(_array_bytes(self.path))
        folders.append(sorted(p.name for p in self.path.iterdir() if p.is_dir()))
        real_release(self)

    monkeypatch.setattr(LevelState, "release", measure_then_release)
    layers = dict(content_layer="relu1_1", style_layers=("relu1_1",))
    settings = Settings(r0=48, max_iters=2, network="vgg19", tile=32, **layers)
    painting.transfer(*pictures, tmp_path / "out.png", settings=settings, weights=weights_file)
    assert all("content" in names and "content_target" not in names for names in folders)
    graph = painting.style_graph(network="vgg19", weights=weights_file, **layers)
    sizes = footprint.level_sizes((96, 80), graph, r0=48, tile=32, dtype="float32")
    assert [s.running_bytes for s in sizes] == running


@pytest.mark.parametrize(
    "content_layer, style_layers, dtype, bound",
    [
        ("relu1_1", ("relu1_1",), np.float64, 1e-9),  # content and style at the root, one addmm
        ("relu1_1", ("relu1_1",), np.float32, 1e-4),
        ("relu3_1", ("relu1_1",), np.float64, 1e-9),  # the content at the root, a style below
    ],
)
@pytest.mark.parametrize("tile", [None, 48, 16])  # 16 px: smaller than relu3_1's 20
def test_the_content_term_joins_the_backward_as_a_gradient(
    vgg19, vgg19_state, images, content_layer, style_layers, dtype, bound, tile
):
    """The content term's gradient is handed to the backward as a gradient (with the style's
    Φ M where the layer has both), not differentiated from a scalar: exact against autograd."""
    canvas, content, style = images(72, 56)
    indices = {"relu1_1": 1, "relu3_1": 11}
    weights = dict(content_weight=2.0, style_weight=30.0)
    loss, grad = daskstyle.loss_and_grad(canvas, content, style, tile=tile, weights=vgg19_state,
                                         dtype=dtype, content_layer=content_layer,
                                         style_layers=style_layers, **weights)  # fmt: skip
    ref_loss, ref_grad = reference.loss_and_grad(
        vgg19.features, canvas, content, style, content_index=indices[content_layer],
        style_indices=tuple(indices[name] for name in style_layers),
        dtype=torch.float64 if dtype == np.float64 else torch.float32, **weights,
    )  # fmt: skip
    assert relative_error(grad, ref_grad) < bound
    assert loss == pytest.approx(ref_loss, rel=bound)

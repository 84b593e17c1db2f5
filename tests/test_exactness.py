"""Tiled == untiled: daskstyle's gradient against plain torch autograd on the whole image."""

import math

import dask
import numpy as np
import pytest
import torch

import daskstyle
from daskstyle.engine import featurenet, kernels

from . import reference
from .conftest import two_process_client
from .reference import relative_error

SHALLOW = dict(content_layer="relu2_1", style_layers=("relu1_1", "relu2_1"))
SHALLOW_REF = dict(content_index=6, style_indices=(1, 6))


@pytest.mark.parametrize(
    "shape, tile, n_tiles, content_tiles",
    [
        ((200, 264), None, 0, 1),  # untiled path: one forward, one backward
        ((200, 264), 144, 4, 4),
        ((200, 264), 112, 6, 6),
        ((177, 131), 48, 12, 12),
        # tiles far smaller than the shallow halo; the last row's 1-px tiles have no relu2_1 cell
        ((177, 131), 16, 108, 99),
    ],
)
def test_shallow_float64_equals_autograd(
    vgg19, vgg19_state, images, count_tiles, shape, tile, n_tiles, content_tiles
):
    canvas, content, style = images(*shape)
    weights = dict(content_weight=2.0, style_weight=30.0, style_layer_weights=[0.5, 2.0])
    loss, grad = daskstyle.loss_and_grad(
        canvas,
        content,
        style,
        tile=tile,
        weights=vgg19_state,
        dtype=np.float64,
        **SHALLOW,
        **weights,
    )
    ref_loss, ref_grad = reference.loss_and_grad(
        vgg19.features, canvas, content, style, content_weight=2.0, style_weight=30.0,
        layer_weights=[0.5, 2.0], **SHALLOW_REF,
    )  # fmt: skip
    style_tiles = math.ceil(112 / tile) * math.ceil(96 / tile) if tile else 1
    assert count_tiles == {
        "tile_gradient": n_tiles,
        "tile_gradient_remaking_target": 0,
        "tile_statistics": style_tiles + n_tiles,  # each tile once: no pass ran twice
        "tile_content_features": content_tiles,  # not once per neighbour that reads its halo
    }
    assert grad.shape == canvas.shape and grad.dtype == np.float64
    assert relative_error(grad, ref_grad) < 1e-9
    assert loss == pytest.approx(ref_loss, rel=1e-12)


def test_shallow_halo_one_step_short_is_wrong(vgg19, vgg19_state, images):
    canvas, content, style = images(96, 80)
    _, ref_grad = reference.loss_and_grad(vgg19.features, canvas, content, style, **SHALLOW_REF)
    kw = dict(tile=16, weights=vgg19_state, dtype=np.float64, **SHALLOW)
    _, exact = daskstyle.loss_and_grad(canvas, content, style, halo=8, **kw)
    _, short = daskstyle.loss_and_grad(canvas, content, style, halo=6, **kw)
    assert relative_error(exact, ref_grad) < 1e-9
    assert relative_error(short, ref_grad) > 1e-3


@pytest.mark.slow
def test_deep_float64_equals_autograd_and_needs_the_whole_halo(vgg19, vgg19_state, images):
    """All five VGG-19 style layers and relu4_2: K = 160 is exact, K - 16 is not."""
    canvas, content, style = images(336, 304, style_shape=(160, 208))
    ref_loss, ref_grad = reference.loss_and_grad(vgg19.features, canvas, content, style)
    kw = dict(tile=176, weights=vgg19_state, dtype=np.float64)
    loss, grad = daskstyle.loss_and_grad(canvas, content, style, **kw)
    _, short = daskstyle.loss_and_grad(canvas, content, style, halo=160 - 16, **kw)
    assert relative_error(grad, ref_grad) < 1e-9
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert relative_error(short, ref_grad) > 1e-7


@pytest.mark.slow
def test_deep_float32_equals_float32_autograd(vgg19, vgg19_state, images, count_tiles):
    canvas, content, style = images(336, 464, style_shape=(200, 144))
    ref_loss, ref_grad = reference.loss_and_grad(
        vgg19.features, canvas, content, style, dtype=torch.float32
    )
    loss, grad = daskstyle.loss_and_grad(canvas, content, style, tile=176, weights=vgg19_state)
    assert count_tiles["tile_gradient"] == 6
    assert grad.dtype == np.float32
    assert relative_error(grad, ref_grad) < 1e-4
    assert loss == pytest.approx(ref_loss, rel=1e-4)


def test_tree_reduced_gram_equals_whole_gram(vgg19, vgg19_state, images, count_tiles):
    canvas, _, _ = images(177, 131)
    graph = daskstyle.style_graph(weights=vgg19_state, dtype=np.float64, **SHALLOW)
    plan = daskstyle.api.make_plan(canvas.shape[:2], 16, graph.halo.align)
    tiled = daskstyle.engine.graph.as_tiled(canvas, plan)
    stats = dask.compute(graph.statistics(tiled, plan), scheduler="synchronous")[0]
    features = reference._features(vgg19.features.double(), canvas, torch.float64, {1, 6})
    assert count_tiles["tile_statistics"] == 108
    for name, index in (("relu1_1", 1), ("relu2_1", 6)):
        phi = features[index][0].reshape(features[index].shape[1], -1)
        whole = (phi @ phi.T).detach().numpy()
        assert relative_error(stats.grams[name], whole) < 1e-12
    vgg19.float()


def test_one_model_per_process_not_per_task(vgg19_state, images, monkeypatch):
    built = []
    original = featurenet.FeatureNet

    class Counting(original):
        def __init__(self, *args):
            built.append(1)
            super().__init__(*args)

    monkeypatch.setattr(featurenet, "FeatureNet", Counting)
    monkeypatch.setattr(featurenet, "_models", {})
    canvas, content, style = images(64, 80)
    with dask.config.set(scheduler="threads"):
        daskstyle.loss_and_grad(canvas, content, style, tile=16, weights=vgg19_state, **SHALLOW)
    assert len(built) == 1


def test_same_numbers_on_synchronous_threads_and_two_process_cluster(vgg19_state, images):
    canvas, content, style = images(96, 112)
    kw = dict(tile=32, weights=vgg19_state, dtype=np.float64, **SHALLOW)
    results = {}
    for scheduler in ("synchronous", "threads"):
        with dask.config.set(scheduler=scheduler):
            results[scheduler] = daskstyle.loss_and_grad(canvas, content, style, **kw)
    with two_process_client() as client:
        results["cluster"] = daskstyle.loss_and_grad(canvas, content, style, **kw)
        ran_on = client.run(
            lambda: len(__import__("daskstyle.engine.featurenet").engine.featurenet._models)
        )
    assert sum(ran_on.values()) >= 1
    loss0, grad0 = results["synchronous"]
    for loss, grad in results.values():
        assert relative_error(grad, grad0) < 1e-12
        assert loss == pytest.approx(loss0, rel=1e-12)


def test_a_float64_model_keeps_its_normalisation_constants_exact():
    from daskstyle.engine.featurenet import FeatureNet
    from daskstyle.networks.catalog import get_network, random_weights

    network = get_network("vgg19")
    model = FeatureNet(network, ("relu1_1",), random_weights("vgg19"), dtype=torch.float64)
    assert model.mean.flatten().tolist() == list(network.mean)  # not float32-rounded first
    assert model.std.flatten().tolist() == list(network.std)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_style_layers_gradient_joins_in_the_arriving_gradients_layout(layout):
    """kernels.plus_product: grad + Φ M, for a gradient in either memory layout, laid out as
    it (features channels-last, as the model makes them)."""
    rng = np.random.default_rng(3)
    feature = torch.as_tensor(rng.normal(size=(1, 5, 7, 6))).to(memory_format=torch.channels_last)
    grad = torch.as_tensor(rng.normal(size=(1, 5, 7, 6))).to(memory_format=layout)
    matrix = torch.as_tensor(rng.normal(size=(5, 5)))
    total = kernels.plus_product(grad, feature, matrix)
    phi = feature[0].permute(1, 2, 0).reshape(-1, 5)  # one row per cell
    expected = grad + (phi @ matrix).reshape(7, 6, 5).permute(2, 0, 1)[None]
    assert torch.allclose(total, expected, rtol=1e-14, atol=1e-14)
    assert total.is_contiguous(memory_format=layout)

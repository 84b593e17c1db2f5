"""Regions (guided Gram matrices) stay exact under tiling: tiled == untiled == plain torch
autograd of the same formula on the whole image (written here apart from daskstyle's
engine), with region borders that cross tiles and tiles smaller than the halo."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import daskstyle
from daskstyle.controls import regions
from daskstyle.core.errors import InputError

from . import reference
from .reference import relative_error
from .test_controls_exactness import second_style
from .test_exactness import SHALLOW, SHALLOW_REF


def diagonal_labels(height, width, stripes=3):
    """Labels 0, 1, 0, ... in diagonal stripes, so that every border crosses tiles."""
    y, x = np.mgrid[0:height, 0:width]
    return ((x + 2 * y) * stripes // (width + 2 * height) % 2).astype(np.uint8)


def _guide_at_layers(features, guide, indices, propagation):
    """The (1, R, h, w) guide at each layer index, walked through torchvision's layers."""
    x, out = guide, {}
    for index, layer in enumerate(features[: max(indices) + 1]):
        if isinstance(layer, torch.nn.Conv2d) and propagation != "resize":
            x = F.max_pool2d(x, 3, 1, 1) if propagation == "all" else -F.max_pool2d(-x, 3, 1, 1)
        elif isinstance(layer, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            if propagation == "resize":
                x = F.avg_pool2d(x, 2, 2)
            else:
                x = F.max_pool2d(x, 2, 2) if propagation == "all" else -F.max_pool2d(-x, 2, 2)
        if index in indices:
            out[index] = x
    return out


def guided_reference(features, canvas, content, styles, guide, *, content_index, style_indices,
                     propagation="resize", style_guides=None):  # fmt: skip
    """Loss and gradient of docs/design.md's regional loss by autograd, float64:
    content term as usual, and Σ_l Σ_r (M_r / N_l) ‖Ĝ_r(s_r) − G_r / M_r‖² / (4 C²) with
    G_r = Σ_x m_r(x) φ(x) φ(x)ᵀ, M_r = Σ_x m_r(x)."""
    dtype = torch.float64
    features = copy.deepcopy(features).to(dtype).requires_grad_(False)
    for layer in features:
        if hasattr(layer, "inplace"):
            layer.inplace = False
    wanted = {content_index, *style_indices}
    as_guide = lambda g: torch.as_tensor(np.asarray(g), dtype=dtype).permute(2, 0, 1)[None]  # noqa: E731
    with torch.no_grad():
        target = reference._features(features, content, dtype, wanted)[content_index]
        targets = {i: [] for i in style_indices}
        for r, image in enumerate(styles):
            feats = reference._features(features, image, dtype, wanted)
            part = None if style_guides is None else style_guides[r]
            weights = part is not None and _guide_at_layers(features, as_guide(part),
                                                            style_indices, "resize")  # fmt: skip
            for i in style_indices:
                phi = feats[i].reshape(feats[i].shape[1], -1)
                m = weights[i].reshape(-1) if weights else torch.ones(phi.shape[1], dtype=dtype)
                targets[i].append((phi * m) @ phi.T / m.sum())
    image = torch.tensor(np.asarray(canvas), dtype=dtype, requires_grad=True)
    feats = reference._features(features, image, dtype, wanted)
    loss = (feats[content_index] - target).square().sum() / (2 * feats[content_index][0].numel())
    weights = _guide_at_layers(features, as_guide(guide), style_indices, propagation)
    for i in style_indices:
        channels, cells = feats[i].shape[1], feats[i][0, 0].numel()
        phi = feats[i].reshape(channels, -1)
        for r, style_gram in enumerate(targets[i]):
            m = weights[i][0, r].reshape(-1)
            mass = m.sum()
            if mass > 0:
                error = style_gram - (phi * m) @ phi.T / mass
                loss = loss + mass / cells * error.square().sum() / (4 * channels**2)
    loss.backward()
    return loss.item(), image.grad.numpy()


def _evaluate(state, canvas, content, styles, labels, tile, **options):
    return daskstyle.loss_and_grad(canvas, content, styles, tile=tile, weights=state,
                                   dtype=np.float64, regions=labels, **SHALLOW, **options)  # fmt: skip


@pytest.mark.parametrize(
    "shape, tile, feather, propagation",
    [
        ((77, 61), 16, 0.0, "resize"),  # tiles smaller than the shallow halo
        ((77, 61), 16, 3.0, "resize"),
        ((77, 61), 16, 2.0, "all"),
        ((77, 61), 16, 2.0, "inside"),
        ((130, 97), 48, 4.0, "resize"),
    ],
)
def test_regions_tiled_equal_untiled_and_autograd(
    vgg19, vgg19_state, images, count_tiles, shape, tile, feather, propagation
):
    canvas, content, style = images(*shape)
    styles = [style, second_style()]
    labels = diagonal_labels(shape[0] // 2 + 3, shape[1] // 2 + 2)  # another size, same aspect
    kw = dict(region_feather=feather, region_guides=propagation)
    loss, grad = _evaluate(vgg19_state, canvas, content, styles, labels, tile, **kw)
    untiled_loss, untiled_grad = _evaluate(vgg19_state, canvas, content, styles, labels, None, **kw)
    guide = regions.level_guide(labels, 2, shape, feather, "float64").compute()
    assert 0 < guide[..., 0].mean() < 1  # both regions present
    ref_loss, ref_grad = guided_reference(vgg19.features, canvas, content, styles, guide,
                                          propagation=propagation, **SHALLOW_REF)  # fmt: skip
    tiles = math.ceil(shape[0] / tile) * math.ceil(shape[1] / tile)
    assert count_tiles["tile_gradient"] == tiles
    assert relative_error(grad, untiled_grad) < 1e-12
    assert loss == pytest.approx(untiled_loss, rel=1e-12)
    assert relative_error(grad, ref_grad) < 1e-12
    assert loss == pytest.approx(ref_loss, rel=1e-12)


def test_regions_change_the_gradient(vgg19, images):
    """Regions are not lost on the way: two regions give another gradient than one style,
    and each propagation its own, by more than the tolerances above."""
    canvas, content, style = images(77, 61)
    styles = [style, second_style()]
    guide = regions.level_guide(diagonal_labels(77, 61), 2, (77, 61), 0.0, "float64").compute()
    one = np.zeros((77, 61, 2))
    one[..., 0] = 1
    grads = [guided_reference(vgg19.features, canvas, content, styles, g, propagation=p,
                              **SHALLOW_REF)[1]
             for g, p in ((one, "resize"), (guide, "resize"), (guide, "all"), (guide, "inside"))]  # fmt: skip
    for i in range(len(grads)):
        for j in range(i):
            assert relative_error(grads[i], grads[j]) > 1e-3, (i, j)


@pytest.mark.parametrize("tile", [None, 16])
def test_every_pixel_labelled_0_is_the_single_style(vgg19_state, images, tile):
    canvas, content, style = images(77, 61)
    labels = np.zeros((40, 32), np.uint8)
    single = daskstyle.loss_and_grad(canvas, content, style, tile=tile, weights=vgg19_state,
                                     dtype=np.float64, **SHALLOW)  # fmt: skip
    regional = _evaluate(vgg19_state, canvas, content, [style, second_style()], labels, tile)
    assert regional[0] == pytest.approx(single[0], rel=1e-12)
    assert relative_error(regional[1], single[1]) < 1e-12


def test_a_label_without_pixels_adds_nothing(vgg19_state, images):
    """A third style whose label no pixel holds changes nothing."""
    canvas, content, style = images(77, 61)
    labels = diagonal_labels(77, 61)
    two = _evaluate(vgg19_state, canvas, content, [style, second_style()], labels, 16)
    three = _evaluate(vgg19_state, canvas, content, [style, second_style(), style[::-1]],
                      labels, 16)  # fmt: skip
    assert three[0] == pytest.approx(two[0], rel=1e-12)
    assert relative_error(three[1], two[1]) < 1e-12


def test_style_regions_take_the_part_of_each_style(vgg19, vgg19_state, images, count_tiles):
    """Region 1 takes its Grams from the left half of its style only."""
    canvas, content, style = images(77, 61)
    styles = [style, second_style()]
    part = np.zeros(styles[1].shape[:2], np.uint8)
    part[:, : part.shape[1] // 2] = 1
    labels = diagonal_labels(77, 61)
    kw = dict(style_regions=[None, part])
    loss, grad = _evaluate(vgg19_state, canvas, content, styles, labels, 16, **kw)
    untiled_loss, untiled_grad = _evaluate(vgg19_state, canvas, content, styles, labels, None, **kw)
    guide = regions.level_guide(labels, 2, (77, 61), 0.0, "float64").compute()
    style_guides = [None, part[..., None].astype(np.float64)]
    ref_loss, ref_grad = guided_reference(vgg19.features, canvas, content, styles, guide,
                                          style_guides=style_guides, **SHALLOW_REF)  # fmt: skip
    assert relative_error(grad, untiled_grad) < 1e-12
    assert relative_error(grad, ref_grad) < 1e-12
    assert loss == pytest.approx(ref_loss, rel=1e-12)


def test_feathered_guides_sum_to_one_and_blur_the_border():
    labels = np.zeros((64, 96), np.uint8)
    labels[:, 48:] = 1
    guide = regions.level_guide(labels, 2, (128, 192), 6.0).compute()
    assert guide.shape == (128, 192, 2)
    np.testing.assert_allclose(guide.sum(-1), 1.0, atol=1e-6)
    row = guide[64, :, 1]
    assert row[0] < 1e-6 and row[-1] > 1 - 1e-6 and 0.4 < row[96] < 0.6
    assert 0.01 < row[96 - 12] < 0.1  # two standard deviations out
    hard = regions.level_guide(labels, 2, (128, 192)).compute()
    assert set(np.unique(hard)) == {0.0, 1.0}


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(regions=np.full((77, 61), 2)), "the labels hold label 2 but 2 styles are given"),
        (dict(regions=np.zeros((77, 120), np.uint8)), "do not have the content's aspect ratio"),
        (dict(regions=np.zeros((77, 61, 3), np.uint8)), "regions must be an (H, W) array"),
        (dict(regions=np.zeros((77, 61), np.uint8), style_blend=(1, 1)), "do not mix"),
        (dict(regions=np.zeros((77, 61), np.uint8), region_guides="some"),
         "region_guides must be one of resize, all, inside"),
        (dict(regions=np.zeros((77, 61), np.uint8), region_feather=-1.0),
         "region_feather must be a finite number, 0 or more"),
        (dict(regions=np.zeros((77, 61), np.uint8), style_regions=[None, np.zeros((75, 121), np.uint8)]),
         "the style labels of region 1 hold no pixel labelled 1"),
    ],
)  # fmt: skip
def test_bad_regions_are_one_line_errors(vgg19_state, images, options, message):
    canvas, content, style = images(77, 61)
    with pytest.raises(InputError) as error:
        daskstyle.loss_and_grad(canvas, content, [style, second_style()], weights=vgg19_state,
                                **SHALLOW, **options)  # fmt: skip
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_deep_regions_equal_autograd(vgg19, vgg19_state, images):
    """The default layers (K = 160) with two feathered regions, in tiles of 176 px, float64."""
    canvas, content, style = images(336, 304, style_shape=(160, 208))
    styles = [style, second_style()]
    labels = diagonal_labels(168, 152)
    guide = regions.level_guide(labels, 2, (336, 304), 5.0, "float64").compute()
    loss, grad = daskstyle.loss_and_grad(canvas, content, styles, tile=176, weights=vgg19_state,
                                         regions=labels, region_feather=5.0,
                                         dtype=np.float64)  # fmt: skip
    features = vgg19.features
    ref_loss, ref_grad = guided_reference(features, canvas, content, styles, guide,
                                          content_index=reference.VGG19_CONTENT,
                                          style_indices=reference.VGG19_STYLE)  # fmt: skip
    assert relative_error(grad, ref_grad) < 1e-12
    assert loss == pytest.approx(ref_loss, rel=1e-12)

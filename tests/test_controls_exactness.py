"""The loss controls (total variation, blended styles, average pooling, a choice of layers)
stay exact under tiling: tiled == untiled == plain torch autograd (tests/reference.py)."""

import math

import numpy as np
import pytest
import torch

import daskstyle
from daskstyle.core.errors import InputError

from . import reference
from .conftest import random_image
from .reference import relative_error
from .test_exactness import SHALLOW, SHALLOW_REF

#: With seeded random weights the content and style terms are small; a TV weight of this size
#: gives the total variation a gradient of the same order, so neither hides the other.
TV_WEIGHT = 4e-7

#: Each control as daskstyle's keywords and the reference's, on top of the shallow layers.
CONTROLS = {
    "tv": (dict(tv_weight=TV_WEIGHT), dict(tv_weight=TV_WEIGHT)),
    "blend": (dict(style_blend=(3, 1)), dict(blend=[3, 1])),
    "avg": (dict(pooling="avg"), dict(pooling="avg")),
    "layers": (
        dict(content_layer="relu1_2", style_layers=("conv1_2", "pool1", "relu2_2"),
             style_layer_weights=(1.0, 0.5, 2.0)),
        dict(content_index=3, style_indices=(2, 4, 8), layer_weights=[1.0, 0.5, 2.0]),
    ),
}  # fmt: skip
CONTROLS["all"] = tuple({**a, **b, **c, **d} for a, b, c, d in zip(*CONTROLS.values()))
#: The content layer deeper than every style layer: each style layer's gradient joins the
#: backward pass on its way (none is the last layer computed).
CONTROLS["deep_content"] = (dict(content_layer="relu2_2"), dict(content_index=8))


def second_style():
    """A darker style of another size (so with its own tile plan and other Grams)."""
    return 0.5 * random_image(75, 121, 4)


def _evaluate(state, canvas, content, styles, tile, options):
    """daskstyle's float64 loss and gradient with the shallow layers and ``options``."""
    style = styles if "style_blend" in options else styles[0]
    kw = {**SHALLOW, **options}
    return daskstyle.loss_and_grad(
        canvas, content, style, tile=tile, weights=state, dtype=np.float64, **kw
    )


def _reference(vgg19, canvas, content, styles, options):
    """The reference's float64 loss and gradient with the shallow layers and ``options``."""
    style = styles if "blend" in options else styles[0]
    kw = {**SHALLOW_REF, **options}
    return reference.loss_and_grad(vgg19.features, canvas, content, style, **kw)


@pytest.mark.parametrize(
    "control, shape, tile",
    [(control, (77, 61), 16) for control in CONTROLS]  # tiles smaller than the shallow halo
    + [("all", (177, 131), 48)],
)
def test_control_tiled_equals_untiled_and_autograd(
    vgg19, vgg19_state, images, count_tiles, control, shape, tile
):
    options, reference_options = CONTROLS[control]
    canvas, content, style = images(*shape)
    styles = [style, second_style()]
    loss, grad = _evaluate(vgg19_state, canvas, content, styles, tile, options)
    untiled_loss, untiled_grad = _evaluate(vgg19_state, canvas, content, styles, None, options)
    ref_loss, ref_grad = _reference(vgg19, canvas, content, styles, reference_options)
    tiles = math.ceil(shape[0] / tile) * math.ceil(shape[1] / tile)
    used = styles if "style_blend" in options else styles[:1]
    style_tiles = sum(math.ceil(h / tile) * math.ceil(w / tile) for h, w, _ in map(np.shape, used))
    # each style tiled by its own plan, twice (tiled, then untiled: one tile each)
    assert count_tiles["tile_statistics"] == style_tiles + len(used) + tiles
    assert count_tiles["tile_gradient"] == tiles
    assert relative_error(grad, untiled_grad) < 1e-12
    assert loss == pytest.approx(untiled_loss, rel=1e-12)
    assert relative_error(grad, ref_grad) < 1e-9
    assert loss == pytest.approx(ref_loss, rel=1e-12)


def test_each_control_changes_the_gradient(vgg19, images):
    """The controls are not lost on the way: each one moves the reference gradient by more
    than the tolerances above, so the exactness tests can fail."""
    canvas, content, style = images(77, 61)
    styles = [style, second_style()]
    _, plain = _reference(vgg19, canvas, content, styles, {})
    for control, (_, reference_options) in CONTROLS.items():
        _, changed = _reference(vgg19, canvas, content, styles, reference_options)
        assert relative_error(changed, plain) > 1e-3, control


@pytest.mark.parametrize("tile", [None, 48])
def test_blend_one_zero_is_bitwise_the_first_style(vgg19_state, images, tile):
    canvas, content, style = images(177, 131)
    kw = dict(tile=tile, weights=vgg19_state, **SHALLOW)
    single = daskstyle.loss_and_grad(canvas, content, style, **kw)
    blended = daskstyle.loss_and_grad(
        canvas, content, [style, second_style()], style_blend=(1, 0), **kw
    )
    assert blended[0] == single[0]
    assert np.array_equal(blended[1], single[1])


def test_average_pooling_keeps_the_halo(vgg19_state):
    """A 2 x 2 stride-2 average pool reads the same windows as a max pool: same halo, so the
    tile-16 case above (smaller than that halo) is exact with it."""
    kw = dict(weights=vgg19_state, **SHALLOW)
    assert daskstyle.style_graph(pooling="avg", **kw).halo == daskstyle.style_graph(**kw).halo


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(style_blend=(1, 2, 3)), "style_blend must give one weight per style (2)"),
        (dict(style_blend=(1, -1)), "style_blend must be finite numbers, 0 or more"),
        (dict(style_blend=(1, float("nan"))), "style_blend must be finite numbers, 0 or more"),
        (dict(style_blend=(0, 0)), "style_blend must not all be 0"),
        (dict(content_layer="relu9_1"), "vgg19 has no layer 'relu9_1'; it has conv1_1, "),
        (dict(style_layers=("relu1_1", "norm1")), "vgg19 has no layer 'norm1'"),
        (dict(pooling="min"), "pooling must be one of max, avg, not 'min'"),
        (dict(tv_weight=-1.0), "tv_weight must be a finite number, 0 or more, not -1.0"),
        (dict(tv_weight=float("nan")), "tv_weight must be a finite number, 0 or more, not nan"),
    ],
)
def test_bad_controls_are_one_line_errors(vgg19_state, images, options, message):
    canvas, content, style = images(32, 32)
    styles = [style, second_style()]
    with pytest.raises(InputError) as error:
        daskstyle.loss_and_grad(canvas, content, styles, weights=vgg19_state, **options)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_deep_float32_with_every_control_equals_float32_autograd(vgg19, vgg19_state, images):
    """The default layers (K = 160) with TV, two blended styles and average pooling."""
    canvas, content, style = images(336, 304, style_shape=(160, 208))
    styles = [style, second_style()]
    ref_loss, ref_grad = reference.loss_and_grad(
        vgg19.features, canvas, content, styles, dtype=torch.float32, blend=[3, 1],
        tv_weight=TV_WEIGHT, pooling="avg",
    )  # fmt: skip
    loss, grad = daskstyle.loss_and_grad(
        canvas, content, styles, tile=176, weights=vgg19_state, style_blend=(3, 1),
        tv_weight=TV_WEIGHT, pooling="avg",
    )  # fmt: skip
    assert relative_error(grad, ref_grad) < 1e-4
    assert loss == pytest.approx(ref_loss, rel=1e-4)

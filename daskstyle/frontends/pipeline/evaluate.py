"""What a speed-up costs in quality: a finished painting's losses re-evaluated in float64.

A run in bf16 or with lagged Grams reports losses computed its own way; to compare runs
fairly, each painting as written (8 bits per channel, what a user gets) is evaluated again
with the exact tiled loss in float64, the content and the style term apart, each with unit
weight, against the content and styles its last level used.
"""

from __future__ import annotations

import numpy as np

from daskstyle.api import loss_and_grad
from daskstyle.io.images import read_image
from daskstyle.run.painting import RunPlan


def float64_losses(plan: RunPlan, painting, weights) -> tuple[float, float]:
    """(content loss, style loss) of ``painting`` (the picture ``plan`` wrote), in float64, the
    loss of docs/design.md with content_weight = style_weight = 1 for its own term and 0 for the
    other, the run's layers, layer weights, pooling and blend; ``weights``: the network's
    weights file the run used."""
    settings, graph = plan.settings, plan.graph
    painting = read_image(painting)
    shape = tuple(painting.shape[:2])
    content, styles = plan.network_inputs()
    styles = [plan.level_style(style, shape, graph)[0] for style in styles]
    tile = plan.sizes[-1].tile
    common = dict(
        tile=tile if tile < max(shape) else None, weights=weights,
        network=graph.network.name, content_layer=settings.content_layer,
        style_layers=settings.style_layers, style_layer_weights=settings.style_layer_weights,
        pooling=settings.pooling, style_blend=plan.blend, dtype=np.float64,
    )  # fmt: skip
    content_loss, _ = loss_and_grad(painting, content, styles, style_weight=0, **common)
    style_loss, _ = loss_and_grad(painting, content, styles, content_weight=0, **common)
    return content_loss, style_loss

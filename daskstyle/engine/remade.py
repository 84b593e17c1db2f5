"""The content target remade in each tile from the content image, where the content layer lies
before the first pooling (:attr:`daskstyle.engine.graph.StyleGraph.remakes_content_target`)."""

from __future__ import annotations

import numpy as np
import torch

from daskstyle.engine import guides, kernels
from daskstyle.engine.featurenet import to_torch
from daskstyle.engine.kernels import LossTerms


@torch.no_grad()
def remade_target(model, content: np.ndarray, layer: str) -> torch.Tensor:
    """φ_O(o) over a whole window of the content, as (1, C, h, w): exact wherever the same
    window's canvas features are, which is all the gradient on its core reads."""
    return model(to_torch(content, model), until=layer)[layer]


def tile_gradient_remaking_target(model, canvas_tile, content_tile, origin, core,
                                  terms: LossTerms, errors, with_statistics: bool = False,
                                  guide: guides.Guide | None = None):  # fmt: skip
    """:func:`daskstyle.engine.kernels.tile_gradient` with the content target remade from
    ``content_tile``, the content over the same window as ``canvas_tile``, instead of read."""
    target = remade_target(model, content_tile, terms.content_layer)
    return kernels.tile_gradient(model, canvas_tile, target, origin, core, terms, errors,
                                 with_statistics, guide)  # fmt: skip

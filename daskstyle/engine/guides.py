"""Region guides on one tile (torch): guided Gram matrices and the style gradient they give.

A run with regions (docs/design.md, "Regions: guided Gram matrices") gives each region r a
weight m_r(x) in [0, 1] per input pixel (the one-hot labels, feathered). Its guide reaches
each style layer l by :func:`layer_guides`, one weight m_{r,l}(x) per cell, and region r's
raw Gram and mass there are

    G_l^r = Σ_x m_{r,l}(x) φ_l(x) φ_l(x)ᵀ        M_l^r = Σ_x m_{r,l}(x)

(the guide weighs each cell once: with hard guides, m = m², this is the paper's Gram of the
guided features φ · m). Both are sums over cells, so tiles add them up like plain Grams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from daskstyle.core import geometry

#: How a guide reaches a layer's cells: ``resize``, the mean of each cell's s x s pixels (a
#: block mean, aligned with the tiles, needing no halo); ``all``, the largest weight in the
#: cell's receptive field (a cell belongs to every region its field touches); ``inside``, the
#: smallest (a cell belongs to a region only when its whole field lies in it). The last two
#: are Gatys et al.'s (2017) propagation through the convolutions and pools.
GUIDE_PROPAGATIONS = ("resize", "all", "inside")


@dataclass(frozen=True)
class Guide:
    """The region guides of one padded tile: (H, W, R) pixel weights, and how they reach
    the layers (:data:`GUIDE_PROPAGATIONS`)."""

    pixels: np.ndarray
    propagation: str = "resize"


@dataclass(frozen=True)
class Guided:
    """A style layer's gradient matrices under guides: ``weights`` (1, R, h, w), one weight
    per region and cell; ``matrices`` (R, C, C), M_r per region. The layer's style gradient
    with respect to its features is Σ_r m_r(x) M_rᵀ φ(x) at each cell x."""

    weights: torch.Tensor
    matrices: torch.Tensor


def layer_guides(network, guide: Guide, like: torch.Tensor, layers) -> dict[str, torch.Tensor]:
    """The guide at each of ``layers``: (1, R, h, w) weights on the layer's cells, in the
    dtype and on the device of ``like``. Each convolution and pool of the network acts on the
    guide as :data:`GUIDE_PROPAGATIONS` says; ReLUs leave it as it is."""
    x = torch.as_tensor(np.ascontiguousarray(guide.pixels), device=like.device, dtype=like.dtype)
    x = x.permute(2, 0, 1)[None]
    wanted = {network.index(name): name for name in layers}
    out = {}
    for index, kind in enumerate(network.layer_kinds[: max(wanted) + 1]):
        x = _propagate(x, kind, guide.propagation)
        if index in wanted:
            out[wanted[index]] = x
    return out


def _propagate(x: torch.Tensor, kind: str, propagation: str) -> torch.Tensor:
    if kind == geometry.POOL:
        if propagation == "resize":
            return F.avg_pool2d(x, 2, 2)
        return _extreme(x, propagation, 2, 2, 0)
    if kind == geometry.CONV and propagation != "resize":
        return _extreme(x, propagation, 3, 1, 1)  # a 3 x 3 convolution's window
    return x


def _extreme(x: torch.Tensor, propagation: str, size: int, stride: int, padding: int):
    """The largest (``all``) or smallest (``inside``) weight in each window; the padding
    takes no part (max-pooling pads with -inf)."""
    if propagation == "all":
        return F.max_pool2d(x, size, stride, padding)
    return -F.max_pool2d(-x, size, stride, padding)


def flat_weights(weights: torch.Tensor) -> torch.Tensor:
    """(1, R, h, w) weights as (cells, R), the cells in the order of the features' rows."""
    return weights[0].permute(1, 2, 0).reshape(-1, weights.shape[1])


def guided_grams(phi: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw Grams (R, C, C) and masses (R,) of features Φ (cells, C) under weights (cells, R)."""
    weights = weights.to(phi.dtype)
    grams = torch.stack([(phi * weights[:, [r]]).T @ phi for r in range(weights.shape[1])])
    return grams, weights.sum(0)


def region_errors(grams, masses, targets):
    """E^r = Ĝ^r(s) − G^r / M^r per region (NumPy or torch, stacked on the first axis); 0 for
    a region without mass (a label with no pixels adds nothing)."""
    present = masses > 0
    safe = masses + ~present  # 1 where there is no mass: no 0 / 0
    return (targets - grams / safe[:, None, None]) * present[:, None, None]


def region_style(terms, errors, masses):
    """Style loss under region guides from each layer's errors E^r (R, C, C) and masses M^r
    (R,), for :class:`daskstyle.engine.kernels.LossTerms` ``terms``:
    Σ_l w_l Σ_r (M_l^r / N_l) ‖E_l^r‖² / (4 C_l²), each region weighed by its share of the
    layer's cells (NumPy or torch)."""
    return sum(
        w
        * ((masses[name] / terms.cells[name]) * (errors[name] ** 2).sum((1, 2))).sum()
        / (4 * terms.channels[name] ** 2)
        for name, w in terms.style_weights.items()
    )


def guided_product(phi: torch.Tensor, guided: Guided) -> torch.Tensor:
    """Σ_r (m_r ⊙ Φ) M_r for features Φ (cells, C): the style gradient with respect to Φ."""
    weights = flat_weights(guided.weights).to(phi.dtype)
    matrices = guided.matrices.to(phi.dtype)
    total = (phi * weights[:, [0]]) @ matrices[0]
    for r in range(1, weights.shape[1]):
        total = torch.addmm(total, phi * weights[:, [r]], matrices[r])
    return total


def plus_guided_product(grad: torch.Tensor, feature: torch.Tensor, guided: Guided) -> torch.Tensor:
    """``grad`` + the guided product (:func:`guided_product`) for a gradient and features of
    shape (1, C, H, W), laid out as ``grad``."""
    _, channels, height, width = grad.shape
    product = guided_product(feature[0].permute(1, 2, 0).reshape(-1, channels).to(grad.dtype),
                             guided)  # fmt: skip
    product = product.view(1, height, width, channels).permute(0, 3, 1, 2)
    if grad.is_contiguous(memory_format=torch.channels_last):
        return grad + product.contiguous(memory_format=torch.channels_last)
    return grad + product.contiguous()

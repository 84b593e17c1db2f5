"""Torch code that runs on one padded tile (or on the whole image). No Dask here.

Arrays come in and go out as NumPy (H, W, 3) on the 0-255 RGB scale. A tile is read from
``origin`` (its top-left pixel in the image) and its core is the rectangle ``core`` =
(y0, y1, x0, x1) in image pixels; features are cropped to the core with
:func:`daskstyle.core.geometry.feature_crop`. The model is a
:class:`daskstyle.engine.featurenet.FeatureNet`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from daskstyle.core import geometry
from daskstyle.engine import guides
from daskstyle.engine.featurenet import FeatureNet, to_torch


def plus_product(grad: torch.Tensor, feature: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``grad`` + Φ M for features and a gradient of shape (1, C, H, W) (Φ: one row of C
    values per cell) and a (C, C) matrix M, in one pass and laid out as ``grad``: a sum of
    channels-last and contiguous tensors is many times slower than either."""
    phi = _flat(feature).to(grad.dtype)
    matrix = matrix.to(grad.dtype)
    if grad.is_contiguous(memory_format=torch.channels_last):
        _, channels, height, width = grad.shape
        total = torch.addmm(_flat(grad), phi, matrix)  # (cells, C), rows in channels-last order
        return total.view(1, height, width, channels).permute(0, 3, 1, 2)
    grad = grad.contiguous()
    return torch.addmm(grad.view(grad.shape[1], -1), matrix.T, phi.T).view_as(grad)


def _crop(
    feature: torch.Tensor, scale: int, origin: tuple[int, int], core: tuple[int, int, int, int]
):
    y0, y1, x0, x1 = core
    rows = geometry.feature_crop(y0, y1, origin[0], scale)
    cols = geometry.feature_crop(x0, x1, origin[1], scale)
    return feature[..., rows, cols]


def _flat(feature: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) features as Φ, one row of C values per cell: a view of channels-last
    features (a copy only where a crop cuts them)."""
    return feature[0].permute(1, 2, 0).reshape(-1, feature.shape[1])


@dataclass
class Statistics:
    """Sums over the cores of tiles: raw Grams ΦᵀΦ per style layer, or under region guides
    the raw Grams (R, C, C) and ``masses`` (R,) of each region (:mod:`.guides`); summable."""

    grams: dict[str, np.ndarray] = field(default_factory=dict)
    masses: dict[str, np.ndarray] = field(default_factory=dict)

    def __add__(self, other: Statistics) -> Statistics:
        if not self.grams:
            return other
        grams = {k: self.grams[k] + other.grams[k] for k in self.grams}
        return Statistics(grams, {k: self.masses[k] + other.masses[k] for k in self.masses})


@torch.no_grad()
def tile_statistics(model: FeatureNet, tile: np.ndarray, origin: tuple[int, int], core, layers,
                    guide: guides.Guide | None = None) -> Statistics:  # fmt: skip
    """Partial Grams of the style ``layers`` over the core of one tile; with ``guide`` (the
    padded tile's region guides), each region's guided Grams and masses."""
    image = to_torch(tile, model)
    weights = guides.layer_guides(model.network, guide, model.mean, layers) if guide else None
    return _core_statistics(model, model.compute(image), origin, core, layers, weights)


@torch.no_grad()
def _core_statistics(model, features, origin, core, layers, weights=None) -> Statistics:
    grams, masses = {}, {}
    for name in layers:  # the core's features in the model's dtype: Grams sum in it
        scale = model.network.scale(name)
        core_features = _crop(features[name].detach(), scale, origin, core)
        phi = _flat(core_features.to(model.mean.dtype))
        if weights is None:
            grams[name] = (phi.T @ phi).cpu().numpy()
            continue
        core_weights = guides.flat_weights(_crop(weights[name], scale, origin, core))
        gram, mass = guides.guided_grams(phi, core_weights)
        grams[name], masses[name] = gram.cpu().numpy(), mass.cpu().numpy()
    return Statistics(grams, masses)


@dataclass(frozen=True)
class LossTerms:
    """The loss of docs/design.md (section "The loss") for one canvas size.

    ``style_weights[l]`` already includes the global style weight; ``cells[l]`` is
    H_l * W_l of the whole canvas, ``channels[l]`` is C_l and ``pixels`` is H * W.
    """

    content_layer: str
    content_weight: float
    style_weights: dict[str, float]
    cells: dict[str, int]
    channels: dict[str, int]
    pixels: int
    tv_weight: float = 0.0

    def content(self, squared_error):
        """Content loss from the summed squared feature difference."""
        n, c = self.cells[self.content_layer], self.channels[self.content_layer]
        return self.content_weight * squared_error / (2 * n * c)

    def content_gradient(self, difference):
        """The content loss's gradient with respect to the content features, from their
        difference from the target."""
        n, c = self.cells[self.content_layer], self.channels[self.content_layer]
        return difference * (self.content_weight / (n * c))

    def style(self, grams_hat, style_grams):
        """Style loss from normalised Grams Ĝ(p) and the style's Ĝ(s) (NumPy or torch)."""
        return sum(
            w * ((style_grams[name] - grams_hat[name]) ** 2).sum() / (4 * self.channels[name] ** 2)
            for name, w in self.style_weights.items()
        )

    def tv(self, sum_of_squares):
        """Total variation loss from the summed squared differences of neighbouring pixels."""
        return self.tv_weight * sum_of_squares / self.pixels

    def surrogate_coefficient(self, name: str) -> float:
        """Factor of Σ_x φ(x)ᵀ E φ(x) whose gradient is the style gradient with E constant."""
        return -self.style_weights[name] / (2 * self.channels[name] ** 2 * self.cells[name])


def _grad_to_numpy(image: torch.Tensor, core, origin) -> np.ndarray:
    y0, y1, x0, x1 = core
    grad = image.grad[0, :, y0 - origin[0] : y1 - origin[0], x0 - origin[1] : x1 - origin[1]]
    return grad.permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def tile_content_features(
    model: FeatureNet, tile: np.ndarray, origin, core, layer: str
) -> np.ndarray:
    """φ_O(o) on the core of one content tile, as (cells, cells, C): the content target."""
    feature = model(to_torch(tile, model), until=layer)[layer]
    return (
        _crop(feature, model.network.scale(layer), origin, core)[0].permute(1, 2, 0).cpu().numpy()
    )


def _as_torch(array: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(H, W, C) NumPy as (1, C, H, W) torch like ``like``; a remade target
    (:mod:`daskstyle.engine.remade`) is that already."""
    if isinstance(array, torch.Tensor):
        return array.to(like.dtype)
    return torch.as_tensor(
        np.ascontiguousarray(array), device=like.device, dtype=like.dtype
    ).permute(2, 0, 1)[None]


def _neighbour_squares(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared differences of each pixel of (1, 3, H, W) with its right and its lower
    neighbour, indexed by the pixel that owns the pair (its left or top one):
    (1, 3, H, W - 1) and (1, 3, H - 1, W)."""
    across = image[..., :, 1:] - image[..., :, :-1]
    down = image[..., 1:, :] - image[..., :-1, :]
    return across.square(), down.square()


def tile_gradient(model, canvas_tile, content_target, origin, core, terms: LossTerms, errors,
                  with_statistics: bool = False, guide: guides.Guide | None = None):  # fmt: skip
    """Gradient on the core of one tile, with the Gram errors E_l = Ĝ_l(s) - Ĝ_l(p) held
    constant; ``content_target`` holds φ_O(o) over the whole padded tile. Returns the gradient,
    the squared content error over the core and the summed squares of the pixel differences
    whose pair has its top or left pixel in the core (0.0 without total variation): summed
    over the tiles, they give the content and total variation losses. ``with_statistics``:
    also the core's partial Grams (:func:`tile_statistics`), from the same forward (the
    gradient's halo holds the forward halo they need). ``guide``: the padded tile's region
    guides, with ``errors`` per region (R, C, C)."""
    image = to_torch(canvas_tile, model).requires_grad_(True)
    weights = guides.layer_guides(model.network, guide, image, errors) if guide else None
    joins = _Joins(
        terms.content_layer,
        {name: _style_matrix(terms, name, errors[name], image, weights) for name in errors},
    )
    features = model.compute(image, taps=joins.taps([*errors, terms.content_layer]))
    diff, squares = _backward(model, image, features, terms, joins, content_target)
    scale = model.network.scale(terms.content_layer)
    squared_error = _crop(diff, scale, origin, core).square().sum().item()
    tv_squares = 0.0
    if squares is not None:
        y0, y1, x0, x1 = core
        owners = (..., slice(y0 - origin[0], y1 - origin[0]), slice(x0 - origin[1], x1 - origin[1]))
        tv_squares = sum(square[owners].sum().item() for square in squares)
    result = (_grad_to_numpy(image, core, origin), squared_error, tv_squares)
    if with_statistics:
        layers = tuple(terms.style_weights)
        result += (_core_statistics(model, features, origin, core, layers, weights),)
    return result


def _style_matrix(terms: LossTerms, name: str, error, like: torch.Tensor, weights=None):
    """M_l = c_l (E_l + E_lᵀ): Φ_l M_l is the style term's gradient with respect to Φ_l
    (d/dΦ Σ_x φ(x)ᵀ E φ(x) = Φ (E + Eᵀ), times the loss's coefficient c_l). Under region
    ``weights`` (each layer's guides), one M per region, weighed per cell: a region's share
    M^r / N_l over its mass M^r leaves c_l (docs/design.md)."""
    error = torch.as_tensor(error, device=like.device, dtype=like.dtype)
    matrix = terms.surrogate_coefficient(name) * (error + error.transpose(-1, -2))
    return matrix if weights is None else guides.Guided(weights[name], matrix)


class _Joins:
    """What joins the backward pass at each layer, known only after the forward: each style
    layer's M (:func:`_style_matrix`) and the content layer's gradient w (φ - φ_O) / (N C).
    The last layer computed takes them as its gradient (the backward's root); the layers
    below add them to the gradient arriving from above, through their taps."""

    def __init__(self, content_layer: str, matrices: dict | None = None):
        self.content_layer = content_layer
        self.matrices = {} if matrices is None else matrices
        self.content_grad: torch.Tensor | None = None

    def taps(self, names) -> dict[str, Callable]:
        return {name: functools.partial(self.onto, name) for name in names}

    def onto(self, name: str, feature: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        """``grad`` (None at the root) with what joins at layer ``name``, laid out as
        ``feature``; one pass over the layer's cells where only the content and one style
        term join: the content's gradient is the sum's start."""
        if name == self.content_layer:
            content = self.content_grad.to(feature.dtype)
            grad = content if grad is None else grad + content
        matrix = self.matrices.get(name)
        if matrix is None:
            return grad
        feature = feature.detach()
        if isinstance(matrix, guides.Guided):
            if grad is None:
                grad = torch.zeros_like(feature)
            return guides.plus_guided_product(grad, feature, matrix)
        if grad is None:
            return product(feature, matrix)
        return plus_product(grad, feature, matrix)


def product(feature: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Φ M for features of shape (1, C, H, W) and a (C, C) matrix, laid out as ``feature``."""
    _, channels, height, width = feature.shape
    if feature.is_contiguous(memory_format=torch.channels_last):
        total = _flat(feature) @ matrix.to(feature.dtype)
        return total.view(1, height, width, channels).permute(0, 3, 1, 2)
    flat = feature.contiguous().view(channels, -1)
    return (matrix.T.to(feature.dtype) @ flat).view_as(feature)


def _backward(model: FeatureNet, image, features, terms: LossTerms, joins: _Joins,
              content_target):  # fmt: skip
    """Back-propagate the content term, each style layer's Φ M (both through ``joins``) and
    the total variation. Returns the content features' difference from the target and, with
    total variation, the pixel pairs' squares (:func:`_neighbour_squares`; else None)."""
    content = features[terms.content_layer]
    diff = content.detach().to(image.dtype) - _as_torch(content_target, image)
    joins.content_grad = terms.content_gradient(diff)
    top = max(features, key=model.network.index)  # the root: no tap of its own
    roots, root_grads = [features[top]], [joins.onto(top, features[top], None)]
    squares = None
    if terms.tv_weight:  # every pair of the padded tile: exact on the core behind a 1-px halo
        squares = _neighbour_squares(image)
        roots.append(terms.tv(squares[0].sum() + squares[1].sum()))
        root_grads.append(None)
    torch.autograd.backward(roots, root_grads)
    return diff, squares


def whole_loss_and_grad(model, canvas, content_target, terms: LossTerms, style_grams,
                        guide: guides.Guide | None = None):  # fmt: skip
    """Loss and gradient on an untiled image: one forward and one backward. The forward's
    Grams give the Gram errors, and with them each style layer's gradient joins the backward
    as in :func:`tile_gradient` (on the whole image that is the loss's own gradient).
    ``guide``: the image's region guides, with ``style_grams`` per region (R, C, C)."""
    image = to_torch(canvas, model).requires_grad_(True)
    joins = _Joins(terms.content_layer)
    features = model.compute(image, taps=joins.taps([*terms.style_weights, terms.content_layer]))
    targets = {name: torch.as_tensor(style_grams[name], device=image.device, dtype=image.dtype)
               for name in terms.style_weights}  # fmt: skip
    layers = tuple(terms.style_weights)
    weights = guides.layer_guides(model.network, guide, image, layers) if guide else None
    grams_hat, errors, masses = {}, {}, {}
    for name in layers:
        phi = _flat(features[name].detach().to(image.dtype))
        if weights is None:
            grams_hat[name] = phi.T @ phi / terms.cells[name]
            errors[name] = targets[name] - grams_hat[name]
        else:
            grams, masses[name] = guides.guided_grams(phi, guides.flat_weights(weights[name]))
            errors[name] = guides.region_errors(grams, masses[name], targets[name])
        joins.matrices[name] = _style_matrix(terms, name, errors[name], image, weights)
    diff, squares = _backward(model, image, features, terms, joins, content_target)
    style = (terms.style(grams_hat, targets) if weights is None
             else guides.region_style(terms, errors, masses))  # fmt: skip
    loss = terms.content(diff.square().sum()) + style
    if squares is not None:
        loss = loss + terms.tv(squares[0].sum() + squares[1].sum())
    height, width = canvas.shape[:2]
    return loss.item(), _grad_to_numpy(image, (0, height, 0, width), (0, 0))

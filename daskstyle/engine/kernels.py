"""Torch code that runs on one padded tile (or on the whole image). No Dask here.

Arrays come in and go out as NumPy (H, W, 3) on the 0-255 RGB scale. A tile is read from
``origin`` (its top-left pixel in the image) and its core is the rectangle ``core`` =
(y0, y1, x0, x1) in image pixels; features are cropped to the core with
:func:`daskstyle.core.geometry.feature_crop`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from daskstyle.core import geometry
from daskstyle.engine import guides
from daskstyle.networks.catalog import Network, build_features, get_network, load_weights


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to build (and cache) the feature network: small and picklable."""

    network: str
    layers: tuple[str, ...]
    dtype: str
    weights_token: str
    precision: str = "exact"
    pooling: str = "max"


#: Arithmetic of the network's convolutions: ``exact`` (the dtype's own), ``tf32`` (CUDA
#: TensorFloat-32 for float32 convolutions and matmuls), ``bf16`` (bfloat16 autocast).
PRECISIONS = ("exact", "tf32", "bf16")


class FeatureNet(nn.Module):
    """A frozen, truncated VGG ``features`` that returns the outputs of named layers."""

    def __init__(self, network: Network, layers: tuple[str, ...], state: Mapping[str, torch.Tensor],
                 precision: str = "exact", dtype: torch.dtype = torch.float32,
                 pooling: str = "max"):  # fmt: skip
        super().__init__()
        self.network = network
        self.precision = precision
        self.wanted = {network.index(name): name for name in layers}
        self.features = build_features(network, max(self.wanted), pooling, initialise=False)
        load_weights(self.features, state, network, "the given weights")
        self.features.to(dtype)
        for name in ("mean", "std"):  # made in ``dtype``: a float64 model keeps them exact
            value = torch.tensor(getattr(network, name), dtype=dtype)
            self.register_buffer(name, value.view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, image: torch.Tensor, until: str | None = None) -> dict[str, torch.Tensor]:
        """Features of ``image`` (1, 3, H, W), 0-255 RGB, in the model's dtype; stop after
        layer ``until``."""
        return {name: f.to(self.mean.dtype) for name, f in self.compute(image, until).items()}

    def compute(self, image: torch.Tensor, until: str | None = None,
                taps: Mapping[str, Callable] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """Features of ``image`` as the arithmetic leaves them (bfloat16 under bf16).
        ``taps``: per layer, a function ``(feature, grad) -> grad`` that the backward pass
        applies to the gradient reaching the layer's output from the layers above it (none
        reaches the last layer computed: its gradient is a root of the backward pass)."""
        set_tf32(self.precision == "tf32")
        x = image.flip(1) if self.network.bgr else image
        x = (x / self.network.value_range - self.mean) / self.std
        last = self.network.index(until) if until else max(self.wanted)
        out = {}
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            for index, layer in enumerate(self.features[: last + 1]):
                x = layer(x)
                if index in self.wanted:
                    name = self.wanted[index]
                    if taps and name in taps and index < last:
                        x = _Tap.apply(x, taps[name])
                    out[name] = x
        return out


class _Tap(torch.autograd.Function):
    """The identity, whose backward hands the arriving gradient to ``tap(feature, grad)``."""

    @staticmethod
    def forward(ctx, feature: torch.Tensor, tap: Callable) -> torch.Tensor:
        ctx.tap = tap
        ctx.save_for_backward(feature)
        return feature.view_as(feature)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (feature,) = ctx.saved_tensors
        return ctx.tap(feature, grad), None


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


def set_tf32(on: bool) -> None:
    """TF32 for CUDA float32 convolutions and matmuls, on or off. Process-wide flags (cuDNN's
    own default is on), so each use of a model sets them: a model reused after a TF32 one
    has been used computes exactly."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on


_models: dict[ModelSpec, FeatureNet] = {}
_models_lock = threading.Lock()
_MAX_MODELS = 2


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_model(spec: ModelSpec, state: Mapping[str, torch.Tensor]) -> FeatureNet:
    """The process's model for ``spec``, built once (one per worker process, not per task)."""
    with _models_lock:
        model = _models.get(spec)
        if model is None:
            model = FeatureNet(get_network(spec.network), spec.layers, state, spec.precision,
                               getattr(torch, spec.dtype), spec.pooling)  # fmt: skip
            model = model.to(device=device(), memory_format=torch.channels_last)  # faster convs
            while len(_models) >= _MAX_MODELS:
                _models.pop(next(iter(_models)))
            _models[spec] = model
        return model


def _to_torch(image: np.ndarray, model: FeatureNet) -> torch.Tensor:
    tensor = torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return tensor.to(device=model.mean.device, dtype=model.mean.dtype)


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
    image = _to_torch(tile, model)
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
    feature = model(_to_torch(tile, model), until=layer)[layer]
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
    image = _to_torch(canvas_tile, model).requires_grad_(True)
    weights = guides.layer_guides(model.network, guide, image, errors) if guide else None
    matrices = {name: _style_matrix(terms, name, errors[name], image, weights) for name in errors}
    features = model.compute(image, taps=_taps(matrices, matrices))
    diff, squares = _backward(model, image, features, terms, matrices, content_target)
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


def _taps(matrices: Mapping[str, torch.Tensor], names) -> dict[str, Callable]:
    """The taps of the style layers ``names``: each layer's Φ M joins the gradient arriving
    at it (M read from ``matrices`` when the backward runs: it may be filled after the
    forward)."""
    return {name: functools.partial(_tap, matrices, name) for name in names}


def _tap(matrices, name: str, feature: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    if isinstance(matrices[name], guides.Guided):
        return guides.plus_guided_product(grad, feature.detach(), matrices[name])
    return plus_product(grad, feature.detach(), matrices[name])


def _backward(model: FeatureNet, image, features, terms: LossTerms, matrices, content_target):
    """Back-propagate the content term (and the total variation) with each style layer's
    Φ M: the last layer computed hands it over as a root, the others through their taps.
    Returns the content features' difference from the target and, with total variation,
    the pixel pairs' squares (:func:`_neighbour_squares`; else None)."""
    diff = features[terms.content_layer].to(image.dtype) - _as_torch(content_target, image)
    roots, root_grads = [terms.content(diff.square().sum())], [None]
    last = max(matrices, key=model.network.index)
    if model.network.index(last) >= model.network.index(terms.content_layer):  # not tapped
        phi = _flat(features[last])
        roots.append(phi)
        matrix = matrices[last]
        root_grads.append(guides.guided_product(phi.detach(), matrix)
                          if isinstance(matrix, guides.Guided)
                          else phi.detach() @ matrix.to(phi.dtype))  # fmt: skip
    squares = None
    if terms.tv_weight:  # every pair of the padded tile: exact on the core behind a 1-px halo
        squares = _neighbour_squares(image)
        roots[0] = roots[0] + terms.tv(squares[0].sum() + squares[1].sum())
    torch.autograd.backward(roots, root_grads)
    return diff.detach(), squares


def whole_loss_and_grad(model, canvas, content_target, terms: LossTerms, style_grams,
                        guide: guides.Guide | None = None):  # fmt: skip
    """Loss and gradient on an untiled image: one forward and one backward. The forward's
    Grams give the Gram errors, and with them each style layer's gradient joins the backward
    as in :func:`tile_gradient` (on the whole image that is the loss's own gradient).
    ``guide``: the image's region guides, with ``style_grams`` per region (R, C, C)."""
    image = _to_torch(canvas, model).requires_grad_(True)
    matrices = {}
    features = model.compute(image, taps=_taps(matrices, terms.style_weights))
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
        matrices[name] = _style_matrix(terms, name, errors[name], image, weights)
    diff, squares = _backward(model, image, features, terms, matrices, content_target)
    style = (terms.style(grams_hat, targets) if weights is None
             else guides.region_style(terms, errors, masses))  # fmt: skip
    loss = terms.content(diff.square().sum()) + style
    if squares is not None:
        loss = loss + terms.tv(squares[0].sum() + squares[1].sum())
    height, width = canvas.shape[:2]
    return loss.item(), _grad_to_numpy(image, (0, height, 0, width), (0, 0))


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to ``count`` (None: unchanged) while the block runs."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)

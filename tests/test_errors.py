"""Bad input ends in one clear DaskstyleError, raised before any tile runs."""

import numpy as np
import pytest
import torch
import torchvision

import daskstyle
from daskstyle import InputError, WeightsError

SHALLOW = dict(content_layer="relu2_1", style_layers=("relu1_1", "relu2_1"))


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch hub's checkpoints directory, empty, and no $DASKSTYLE_WEIGHTS."""
    monkeypatch.delenv("DASKSTYLE_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def run(images, weights, **kw):
    canvas, content, style = images(48, 64)
    kw.setdefault("network", "vgg19")
    return daskstyle.loss_and_grad(canvas, content, style, weights=weights, **SHALLOW, **kw)


def test_missing_weights_say_where_to_put_them(images, empty_hub):
    with pytest.raises(WeightsError) as err:
        run(images, None)
    message = str(err.value)
    assert "vgg19-dcbaa9e4.pth" in message and str(empty_hub) in message
    assert "daskstyle weights download vgg19" in message and "DASKSTYLE_WEIGHTS" in message


def test_weights_from_environment_and_hub_cache(images, empty_hub, vgg19_state, monkeypatch):
    path = empty_hub.parent / "elsewhere.pth"
    path.parent.mkdir(parents=True)
    torch.save(vgg19_state, path)
    monkeypatch.setenv("DASKSTYLE_WEIGHTS", str(path))
    loss_env, _ = run(images, None)
    monkeypatch.delenv("DASKSTYLE_WEIGHTS")
    empty_hub.mkdir()
    path.rename(empty_hub / "vgg19-dcbaa9e4.pth")
    loss_hub, _ = run(images, None)
    assert loss_env == loss_hub == run(images, vgg19_state)[0]


def test_corrupt_weights_file(images, tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        run(images, path)


def test_weights_path_that_is_missing_or_not_a_file(images, tmp_path):
    with pytest.raises(WeightsError, match="absent.pth does not exist"):
        run(images, tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="is not a file"):
        run(images, tmp_path)


def test_weights_only_refuses_arbitrary_pickles(images, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "payload": object()}, path)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        run(images, path)


def test_weights_of_another_architecture(images, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg16.pth"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit vgg19"):
        daskstyle.loss_and_grad(
            *images(48, 64), weights=path, network="vgg19"
        )  # vgg16 and vgg19 part at conv3_4
    with pytest.raises(WeightsError, match="missing"):
        run(images, {"classifier.0.weight": torch.zeros(2)})


@pytest.mark.parametrize(
    "canvas_shape, content_shape, match",
    [
        ((48, 64, 3), (48, 60, 3), "differ in size"),
        ((48, 64), (48, 64), "RGB array of shape"),
        ((48, 64, 4), (48, 64, 4), "RGB array of shape"),
        ((8, 64, 3), (8, 64, 3), "too small"),
    ],
)
def test_bad_image_shapes(vgg19_state, canvas_shape, content_shape, match):
    style = np.zeros((32, 32, 3))
    with pytest.raises(InputError, match=match):
        daskstyle.loss_and_grad(
            np.zeros(canvas_shape), np.zeros(content_shape), style, weights=vgg19_state
        )


@pytest.mark.parametrize("tile", [24, 8, 0, 33.0])
def test_tile_not_a_multiple_of_16(images, vgg19_state, tile):
    with pytest.raises(InputError, match="multiple of 16"):
        run(images, vgg19_state, tile=tile)


def test_unknown_layer_and_dtype(images, vgg19_state):
    with pytest.raises(daskstyle.DaskstyleError, match="no layer 'relu9_1'"):
        daskstyle.loss_and_grad(*images(48, 64), weights=vgg19_state, style_layers=("relu9_1",))
    with pytest.raises(InputError, match="float32 or float64"):
        run(images, vgg19_state, dtype=np.float16)

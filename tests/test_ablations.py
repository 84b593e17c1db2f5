"""The tiling ablations of docs/design.md (the seed paper's Fig. 9) and the seam measures.

(a) no halo and per-tile Grams, (b) exact halos and per-tile Grams, (c) the exact default.
"""

import copy

import dask.array as da
import numpy as np
import pytest
import torch
from PIL import Image

import daskstyle
from daskstyle.controls import seams
from daskstyle.core import geometry
from daskstyle.core.errors import InputError
from daskstyle.io.images import read_image
from daskstyle.run import painting, rundir
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from . import reference
from .reference import relative_error

SHALLOW = dict(content_layer="relu2_1", style_layers=("relu1_1", "relu2_1"))
SHALLOW_REF = dict(content_index=6, style_indices=(1, 6))
WEIGHTS = dict(content_weight=2.0, style_weight=30.0)


def _grad(canvas, content, style, vgg19_state, **switches):
    return daskstyle.loss_and_grad(canvas, content, style, weights=vgg19_state,
                                   dtype=np.float64, **SHALLOW, **WEIGHTS, **switches)  # fmt: skip


def test_tile_scope_of_a_one_tile_plan_is_the_image_scope(vgg19_state, images):
    canvas, content, style = images(64, 48, style_shape=(40, 36))
    image = _grad(canvas, content, style, vgg19_state, tile=64)
    tile = _grad(canvas, content, style, vgg19_state, tile=64, gram_scope="tile")
    assert image[0] == tile[0] and np.array_equal(image[1], tile[1])
    with pytest.raises(InputError, match="gram_scope must be one of image, tile"):
        daskstyle.style_graph(weights=vgg19_state, gram_scope="tiles", **SHALLOW)


@pytest.mark.parametrize("tile", [16, 32])
def test_no_halo_and_tile_grams_paint_each_tile_alone(vgg19, vgg19_state, images, tile):
    """(a) is each core painted as a picture of its own: whole-image autograd on the crop."""
    graph = daskstyle.style_graph(weights=vgg19_state, halo=0, **SHALLOW)
    assert graph.halo == geometry.Halo(forward=0, backward=0, align=2)  # both passes
    canvas, content, style = images(80, 48, style_shape=(40, 36))
    loss, grad = _grad(canvas, content, style, vgg19_state, tile=tile, halo=0, gram_scope="tile")
    ref_loss, ref_grad = 0.0, np.zeros_like(canvas)
    for t in geometry.TilePlan((80, 48), tile):
        core = np.s_[t.y0 : t.y1, t.x0 : t.x1]
        part_loss, ref_grad[core] = reference.loss_and_grad(
            vgg19.features, canvas[core], content[core], style, layer_weights=None,
            **SHALLOW_REF, **WEIGHTS,
        )  # fmt: skip
        ref_loss += part_loss
    assert relative_error(grad, ref_grad) < 1e-9
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    _, no_halo = _grad(canvas, content, style, vgg19_state, tile=tile, halo=0)
    _, exact = _grad(canvas, content, style, vgg19_state, tile=tile)
    assert np.isfinite(no_halo).all() and relative_error(no_halo, exact) > 1e-3


def _tile_scope_loss(features, canvas, content, style, tile):
    """Σ over tiles of the loss of the core alone, its features cut from the whole image's."""
    wanted = {6, 1}
    with torch.no_grad():
        phi = reference._features(features, canvas, torch.float64, wanted)
        target = reference._features(features, content, torch.float64, wanted)[6]
        grams = {i: reference._gram_hat(f) for i, f in
                 reference._features(features, style, torch.float64, wanted).items()}  # fmt: skip
    total = 0.0
    for t in geometry.TilePlan(canvas.shape[:2], tile):
        for index, scale in ((6, 2), (1, 1)):
            core = phi[index][..., t.y0 // scale : t.y1 // scale, t.x0 // scale : t.x1 // scale]
            if index == 6:
                diff = core - target[..., t.y0 // 2 : t.y1 // 2, t.x0 // 2 : t.x1 // 2]
                total += WEIGHTS["content_weight"] * diff.square().sum() / (2 * diff[0].numel())
            error = grams[index] - reference._gram_hat(core)
            total += WEIGHTS["style_weight"] * error.square().sum() / (4 * core.shape[1] ** 2)
    return float(total)


def test_exact_halos_with_tile_grams(vgg19, vgg19_state, images):
    """(b): the loss is the sum of the cores' own losses over exact features; the gradient
    is neither the exact one nor that of (a)."""
    canvas, content, style = images(64, 48, style_shape=(40, 36))
    loss, grad = _grad(canvas, content, style, vgg19_state, tile=16, gram_scope="tile")
    features = copy.deepcopy(vgg19.features).double()
    for layer in features:
        layer.inplace = False
    expected = _tile_scope_loss(features, canvas, content, style, 16)
    assert loss == pytest.approx(expected, rel=1e-10)
    _, exact = _grad(canvas, content, style, vgg19_state, tile=16)
    _, alone = _grad(canvas, content, style, vgg19_state, tile=16, halo=0, gram_scope="tile")
    assert relative_error(grad, exact) > 1e-3 and relative_error(grad, alone) > 1e-3


def _smooth_field(shape, seed):
    """A sum of random low-frequency waves, 0-255 scale, with no structure at any grid."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    waves = [
        np.sin(rng.uniform(0.02, 0.15) * (np.cos(a) * x + np.sin(a) * y) + rng.uniform(0, 6.3))
        for a in rng.uniform(0, 2 * np.pi, 3 * 40)
    ]
    return 128 + 4 * np.stack(waves).reshape(3, 40, *shape).sum(1).transpose(1, 2, 0)


def test_seam_score_and_colour_spread(monkeypatch):
    field = _smooth_field((128, 112), 0)
    assert seams.seam_score(field, 16) == pytest.approx(1.0, abs=0.05)
    assert seams.tile_colour_spread(field, 16) == pytest.approx(1.0, abs=0.25)
    y, x = np.mgrid[0:128, 0:112]
    ramp = np.stack([x, y, x + y], -1) * 1.0
    assert seams.seam_score(ramp, 16) == pytest.approx(1.0)
    assert seams.tile_colour_spread(ramp, 16) == pytest.approx(1.0, abs=1e-3)
    offsets = np.random.default_rng(1).normal(0, 10, (8, 7, 3)).repeat(16, 0).repeat(16, 1)
    assert seams.seam_score(field + offsets, 16) > 5
    assert seams.tile_colour_spread(offsets, 16) == pytest.approx(2.8, abs=0.3)  # see docstring
    assert seams.tile_colour_spread(field + offsets, 16) > seams.tile_colour_spread(field, 16)
    step = field + 5 * ((x % 16 == 0) | (y % 16 == 0))[..., None]  # a line on each border
    assert seams.seam_score(step, 16) > 3
    monkeypatch.setattr(seams, "BAND_ROWS", 7)  # banded and Dask: the same number
    dask_step = da.from_array(step, chunks=(30, 50, 3))
    assert seams.seam_score(dask_step, 16) == pytest.approx(seams.seam_score(step, 16))
    assert seams.tile_colour_spread(dask_step, 16) == pytest.approx(
        seams.tile_colour_spread(step, 16)
    )
    with pytest.raises(ValueError, match="no internal"):
        seams.seam_score(field[:8, :8], 16)


def test_three_way_run_leaves_a_trace_only_when_tiling_is_not_exact(weights_file, tmp_path):
    """A toy Fig. 9: 16 tiles, one level, 3 steps. The painted change (painting - content)
    has seams and a patchwork of tiles under (a) and (b), none under (c)."""
    y, x = np.mgrid[0:64, 0:64]
    content = np.stack([x * 3, y * 3, 128 + 100 * np.sin((x + y) / 9.0)], -1)
    style = (
        np.random.default_rng(0).uniform(0, 255, (64, 72, 3))
        * (np.arange(72) % 8 < 4)[None, :, None]
    )
    paths = tmp_path / "content.png", tmp_path / "style.png"
    for path, image in zip(paths, (content, style)):
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    settings = Settings(r0=64, tile=16, max_iters=3, style_weight=10.0, network="vgg19",
                            content_layer="relu2_1", style_layers=("relu1_1", "relu2_1", "relu3_1"))  # fmt: skip
    ways = {"a": dict(halo=0, gram_scope="tile"), "b": dict(gram_scope="tile"), "c": None}
    start = read_image(paths[0]).compute().astype(float)
    seam, spread = {}, {}
    for name, experiment in ways.items():
        out = painting.transfer(*paths, tmp_path / f"{name}.png", settings=settings,
                           weights=weights_file, experiment=experiment)  # fmt: skip
        painted = read_image(out).compute() - start
        seam[name], spread[name] = (
            seams.seam_score(painted, 16),
            seams.tile_colour_spread(painted, 16),
        )
        record = rundir.read_record(default_workdir(out))
        assert record.get("experiment") == experiment
    print({"seam": seam, "spread": spread})
    assert seam["c"] == pytest.approx(1.0, abs=0.1) and spread["c"] < 1.2
    assert min(seam["a"], seam["b"]) > seam["c"] + 0.15
    assert min(spread["a"], spread["b"]) > spread["c"] + 0.4
    other = painting.plan(*paths, tmp_path / "a.png", settings=settings, weights=weights_file,
                     resume=True, experiment={"halo": 0})  # fmt: skip
    with pytest.raises(InputError, match="experiment differ"):
        other.check()
    with pytest.raises(InputError, match="experiment switches are halo and gram_scope"):
        painting.plan(*paths, tmp_path / "d.png", settings=settings, weights=weights_file,
                 experiment={"tile": 8})  # fmt: skip

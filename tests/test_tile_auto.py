"""``--tile auto``: the largest tile that fits the memory of the device, cut evenly per level."""

import json

import numpy as np
import pytest
from dask.system import CPU_COUNT

from daskstyle import cli, executor, geometry, hardware, run

from .conftest import final_canvas

SMALL = dict(r0=48, max_iters=3, style_weight=10.0, network="vgg19")
#: Memory in which a gradient tile of 48 px (with the largest halo, 160 px) fits, 64 px not.
MEMORY_OF_48 = geometry.TILE_BYTES_PER_PIXEL * (48 + 2 * 160 + 8) ** 2


@pytest.mark.parametrize("memory", [MEMORY_OF_48, 2e9, 1e10, 1.1e11])
@pytest.mark.parametrize("depth, itemsize", [(128, 4), (160, 4), (160, 8)])
def test_the_largest_tile_is_the_largest_that_fits(memory, depth, itemsize):
    tile = geometry.largest_tile(memory, depth, itemsize)
    assert tile % geometry.TILE_MULTIPLE == 0

    def needs(side):
        return geometry.TILE_BYTES_PER_PIXEL * itemsize / 4 * (side + 2 * depth) ** 2

    assert memory < needs(tile + geometry.TILE_MULTIPLE)
    if needs(geometry.TILE_MULTIPLE) <= memory:  # else the smallest tile, which runs alone
        assert needs(tile) <= memory
    assert geometry.concurrent_tiles(memory, tile, depth, itemsize) == 1


@pytest.mark.parametrize(
    "shape, largest, expected",
    [
        ((2048, 2048), 1632, 1024),  # 2 x 2 tiles of 1024, not 1632 + 416
        ((4096, 4096), 1632, 1376),  # 3 per side
        ((30000, 30000), 1632, 1584),  # 19 per side
        ((1280, 2048), 1632, 1024),  # the long side decides
        ((384, 256), 1632, 384),  # one tile
        ((96, 80), 48, 48),
        ((100, 60), 48, 48),  # 34 px would do, but not on the grid: 3 tiles, 2 full
    ],
)
def test_balanced_tiles_cut_the_long_side_evenly(shape, largest, expected):
    assert geometry.balanced_tile(shape, largest) == expected


def test_on_cpus_each_core_gets_its_share_of_memory(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    tile, reason = hardware.auto_tile(16, "float32")
    assert f"over {CPU_COUNT} cores" in reason
    assert executor.tiles_in_memory(tile, "float32") >= CPU_COUNT  # a tile per core at once
    assert executor.tiles_in_memory(tile + 64, "float32") < CPU_COUNT


def _paint(pictures, weights_file, out, on_event=lambda event: None, resume=False, **settings):
    settings = run.Settings(**{**SMALL, **settings})
    run.transfer(*pictures, out, settings=settings, weights=weights_file, resume=resume,
                 on_event=on_event)  # fmt: skip


class Stop(Exception):
    pass


def _stop_at_level_2(event):
    if isinstance(event, run.Stepped) and (event.level, event.step) == (1, 1):
        raise Stop


def test_auto_tiles_paint_as_the_tile_they_choose_and_resume_with_it(
    pictures, weights_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(hardware, "tile_memory", lambda: (MEMORY_OF_48, "the test's memory"))
    out = tmp_path / "auto.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--network", "vgg19",
            "--weights", str(weights_file), "--tile", "auto", "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out
    assert "tiles auto: up to 48 px, the largest whose gradient tile" in lines
    assert "level 2/2: 80x96 px, 4 tiles of 48 px" in lines
    with pytest.raises(Stop):
        _paint(pictures, weights_file, out, _stop_at_level_2, tile="auto")
    workdir = run.default_workdir(out)
    assert json.loads((workdir / "run.json").read_text())["tile_px"] == 48
    monkeypatch.setattr(hardware, "tile_memory", lambda: (1e12, "a larger machine"))
    plan = run.plan(*pictures, out, settings=run.Settings(**SMALL, tile="auto"),
                    weights=weights_file, resume=True)  # fmt: skip
    assert plan.tile == 48 and plan.tile_reason == "tiles auto: up to 48 px, as the run began"
    _paint(pictures, weights_file, out, resume=True, tile="auto")
    _paint(pictures, weights_file, tmp_path / "fixed.png", tile=48)
    fixed = final_canvas(run.default_workdir(tmp_path / "fixed.png"))
    assert np.array_equal(final_canvas(workdir), fixed)


def test_a_tile_that_is_neither_auto_nor_a_number_is_one_line(pictures, tmp_path, capsys):
    argv = ["run", *map(str, pictures), "-o", str(tmp_path / "out.png"), "--tile", "big"]
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert "give auto or a number of px, not 'big'" in capsys.readouterr().err

"""``--tile auto``, the default: the largest tile that fits the memory of the device, cut
evenly per level; 512 px where the workers run elsewhere; a resumed run keeps its tile."""

import json

import numpy as np
import pytest
from dask.system import CPU_COUNT
from distributed.system import MEMORY_LIMIT
from PIL import Image

from daskstyle.compute import executor, hardware
from daskstyle.core import geometry
from daskstyle.frontends import cli
from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import SHALLOW_RUN, SHALLOW_RUN_OPTIONS, final_canvas

SMALL = dict(r0=48, max_iters=3, style_weight=10.0, network="vgg19", precision="exact",
             **SHALLOW_RUN)  # fmt: skip
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
    headroom = executor.tiles_in_memory(tile, "float32", hardware.AUTO_HEADROOM * MEMORY_LIMIT)
    assert headroom >= CPU_COUNT  # with a quarter of the tiles' share to spare
    bigger = tile + 64
    assert (
        executor.tiles_in_memory(bigger, "float32", hardware.AUTO_HEADROOM * MEMORY_LIMIT)
        < CPU_COUNT
    )


def _paint(pictures, weights_file, out, on_event=lambda event: None, resume=False, **settings):
    settings = Settings(**{**SMALL, **settings})
    painting.transfer(*pictures, out, settings=settings, weights=weights_file, resume=resume,
                 on_event=on_event)  # fmt: skip


class Stop(Exception):
    pass


def _stop_at_level_2(event):
    if isinstance(event, painting.Stepped) and (event.level, event.step) == (1, 1):
        raise Stop


def test_auto_tiles_paint_as_the_tile_they_choose_and_resume_with_it(
    pictures, weights_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(hardware, "tile_memory", lambda: (MEMORY_OF_48, "the test's memory"))
    out = tmp_path / "auto.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--network", "vgg19",
            "--weights", str(weights_file), "--tile", "auto", "--precision", "exact",
            "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out
    assert "tiles auto: up to 48 px, the largest whose gradient tile" in lines
    assert "level 2/2: 80x96 px, 4 tiles of 48 px" in lines
    with pytest.raises(Stop):
        _paint(pictures, weights_file, out, _stop_at_level_2, tile="auto")
    workdir = default_workdir(out)
    assert json.loads((workdir / "run.json").read_text())["tile_px"] == 48
    monkeypatch.setattr(hardware, "tile_memory", lambda: (1e12, "a larger machine"))
    plan = painting.plan(*pictures, out, settings=Settings(**SMALL, tile="auto"),
                    weights=weights_file, resume=True)  # fmt: skip
    assert plan.tile == 48 and plan.tile_reason == "tiles auto: up to 48 px, as the run began"
    _paint(pictures, weights_file, out, resume=True, tile="auto")
    _paint(pictures, weights_file, tmp_path / "fixed.png", tile=48)
    fixed = final_canvas(default_workdir(tmp_path / "fixed.png"))
    assert np.array_equal(final_canvas(workdir), fixed)


def test_a_tile_that_is_neither_auto_nor_a_number_is_one_line(pictures, tmp_path, capsys):
    argv = ["run", *map(str, pictures), "-o", str(tmp_path / "out.png"), "--tile", "big"]
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert "give auto or a number of px, not 'big'" in capsys.readouterr().err


def test_auto_is_the_default_tile():
    assert Settings().tile == "auto"
    assert cli.parser().parse_args(["run", "--example", "-o", "out.png"]).tile == "auto"


def _not_this_machine():
    raise AssertionError("the workers' memory is not this machine's")


@pytest.mark.parametrize("cluster", ["slurm", "tcp://10.0.0.1:8786", "scheduler.json"])
def test_auto_tiles_of_workers_elsewhere_are_512_px_and_the_plan_says_why(
    pictures, weights_file, tmp_path, monkeypatch, capsys, cluster
):
    monkeypatch.setattr(hardware, "tile_memory", _not_this_machine)
    content = tmp_path / "wide.png"
    Image.fromarray(np.zeros((800, 1200, 3), np.uint8)).save(content)
    argv = ["run", str(content), str(pictures[1]), "-o", str(tmp_path / "out.png"), "--r0",
            "48", "--network", "vgg19", "--weights", str(weights_file), "--cluster", cluster,
            "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out
    assert (f"tiles auto: up to 512 px (the workers of --cluster {cluster} run on other "
            "machines: set --tile for their memory)") in lines  # fmt: skip
    assert "1200x800 px, 6 tiles of 400 px" in lines  # at most 512 px, cut evenly
    plan = painting.plan(content, pictures[1], tmp_path / "out.png", settings=Settings(**SMALL),
                    weights=weights_file, cluster=cluster)  # fmt: skip
    assert plan.record["tile_px"] == 512 and plan.tile == 400


@pytest.mark.parametrize("cluster", ["local", "threads", "sync"])
def test_auto_tiles_on_this_machine_fit_its_memory(
    pictures, weights_file, tmp_path, monkeypatch, cluster
):
    monkeypatch.setattr(hardware, "tile_memory", lambda: (MEMORY_OF_48, "the test's memory"))
    plan = painting.plan(*pictures, tmp_path / "out.png", settings=Settings(**SMALL),
                    weights=weights_file, cluster=cluster)  # fmt: skip
    assert plan.record["tile_px"] == 48
    assert plan.tile_reason.startswith("tiles auto: up to 48 px, the largest whose gradient")


def test_bf16_tiles_are_planned_with_bf16s_bytes(pictures, weights_file, tmp_path, monkeypatch):
    """bf16 needs 0.82 of float32's bytes per pixel (measured): in the memory where a float32
    gradient tile of 48 px fits, a bf16 one of 80 px does, and 96 px does not."""
    monkeypatch.setattr(hardware, "tile_memory", lambda: (MEMORY_OF_48, "the test's memory"))
    settings = Settings(**{**SMALL, "precision": "bf16"})
    plan = painting.plan(*pictures, tmp_path / "out.png", settings=settings,
                         weights=weights_file, cluster="threads")  # fmt: skip
    assert plan.record["tile_px"] == 80
    assert "the largest whose bf16 gradient tile" in plan.tile_reason
    share = hardware.PRECISION_MEMORY_SHARE["bf16"]
    needs = [share * geometry.TILE_BYTES_PER_PIXEL * (side + 2 * 160) ** 2 for side in (80, 96)]
    assert needs[0] <= MEMORY_OF_48 < needs[1]


def test_a_run_begun_at_512_px_resumes_without_tile(pictures, weights_file, tmp_path, capsys):
    """Runs begun when 512 px was the default: --resume without --tile continues them in their
    own tiles, not refused as a changed setting; --resume with another tile still is."""
    out = tmp_path / "old.png"
    with pytest.raises(Stop):
        _paint(pictures, weights_file, out, _stop_at_level_2, tile=512)
    workdir = default_workdir(out)
    assert json.loads((workdir / "run.json").read_text())["settings"]["tile"] == 512
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "3",
            "--network", "vgg19", "--weights", str(weights_file), "--cluster", "threads",
            *SHALLOW_RUN_OPTIONS, "--resume"]  # fmt: skip
    assert cli.main([*argv, "--tile", "256"]) == 1
    assert "settings differ from its run" in capsys.readouterr().err
    assert cli.main([*argv, "--dry-run"]) == 0
    assert "tiles 512 px, as the run began" in capsys.readouterr().out
    assert cli.main(argv) == 0 and out.is_file()
    _paint(pictures, weights_file, tmp_path / "straight.png", tile=512)
    straight = final_canvas(default_workdir(tmp_path / "straight.png"))
    assert np.array_equal(final_canvas(workdir), straight)

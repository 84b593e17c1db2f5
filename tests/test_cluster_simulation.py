"""``daskstyle bench cluster --simulate``: the engine's own step graphs on the real scheduler,
with workers that sleep for each tile's projected GPU time."""

import psutil
import pytest

from daskstyle.core import geometry
from daskstyle.frontends import cli, cluster_simulation, simulated_gpus
from daskstyle.frontends.cluster_simulation import Configuration, Measured, build, simulate
from daskstyle.frontends.simulated_gpus import (
    ADAM_BYTES_PER_PIXEL,
    Machines,
    forward_flops_per_pixel,
)
from daskstyle.networks.catalog import get_network

#: Machines so fast that every sleep is a few microseconds: the tests measure structure.
INSTANT = Machines(tflops=1e9, disk_gbps=1e9, memory_gbps=1e9, link_gbps=10.0)


def test_flops_count_each_convolution_at_its_scale():
    vgg19 = get_network("vgg19")
    assert forward_flops_per_pixel(vgg19, "relu1_1") == 2 * 9 * 3 * 64
    conv2_1 = 2 * 9 * 64 * 128 / 4  # after one pooling: a cell covers 4 pixels
    expected = 2 * 9 * 3 * 64 + 2 * 9 * 64 * 64 + conv2_1
    assert forward_flops_per_pixel(vgg19, "relu2_1") == expected
    # VGG-19 to relu5_1: 0.72 MFLOP per pixel forward; a step (a forward, then a forward and a
    # backward) with 2048-px tiles' halos is docs/performance.md's "about 3 MFLOP per pixel"
    assert forward_flops_per_pixel(vgg19, "relu5_1") == pytest.approx(0.722e6, rel=1e-3)


def test_a_tiles_sleep_is_its_flops_over_the_throughput():
    machines = Machines(tflops=100.0, efficiency=0.5)
    assert machines.seconds(5e13) == pytest.approx(1.0)
    graph, plan = build(Configuration(1024, 256, 2, held=False), machines)
    assert len(plan) == 16 and graph.halo.total == 160
    assert graph.gradient == 2 * forward_flops_per_pixel(graph.network, "relu5_1")


@pytest.fixture(autouse=True)
def _short_idle_watch(monkeypatch):
    monkeypatch.setattr(cluster_simulation, "IDLE_SECONDS", 0.5)


def test_the_schedulers_idle_cpu_is_not_counted_as_the_steps_work():
    """Heartbeats cost the scheduler CPU time at a steady rate: over a simulated step, far
    longer here than on GPUs, that rate times its wall time is background, not the step's."""
    step = Measured(wall=100.0, client_cpu=1.0, scheduler_cpu=5.0, between=0,
                    scheduler_background=0.03 * 100.0)  # fmt: skip
    assert step.scheduler_work == pytest.approx(2.0)
    noisy = Measured(wall=100.0, client_cpu=1.0, scheduler_cpu=2.9, between=0,
                     scheduler_background=3.0)  # fmt: skip
    assert noisy.scheduler_work == 0.0
    rate = cluster_simulation.idle_rate(psutil.Process(), 0.2)  # this process, asleep
    assert 0 <= rate < 0.5


def test_the_simulation_runs_the_engines_graphs_and_counts_their_bytes():
    rows = simulate([512], [128], [2], INSTANT, echo=lambda line: None)
    on_disk, held = rows
    assert on_disk["state"] == "on disk" and held["state"].startswith("held")
    assert on_disk["tiles"] == held["tiles"] == 16
    plan = geometry.TilePlan((512, 512), 128)
    adam = ADAM_BYTES_PER_PIXEL * 512 * 512
    # on disk: Adam's state, the canvas read by both passes and the content target, per step
    assert on_disk["run_dir_gb"] * 1e9 > adam
    # held: only the content target and a tenth of a checkpoint
    assert held["run_dir_gb"] < on_disk["run_dir_gb"] - adam / 1e9 * 0.9
    # held tiles read their neighbours' halos from other workers; on disk they read the store
    assert held["between_workers_gb"] > 0
    assert len(plan) == 16
    for row in rows:
        assert row["bottleneck"] in ("compute", "scheduler", "network", "disk")
        assert row["step_s"] > 0 and row["client_cpu_s"] > 0
        assert row["scheduler_cpu_s"] >= 0 and row["scheduler_background_s"] >= 0
        _check_projection(row)


def _check_projection(row):
    """The projection adds what runs in turn and takes the largest of what overlaps; at most,
    nothing overlaps."""
    overlapping = max(row["passes_s"], row["scheduler_cpu_s"], row["network_s"], row["disk_s"])
    serial = row["client_cpu_s"] + row["checkpoint_s"]
    assert row["projected_step_s"] == pytest.approx(serial + overlapping, abs=0.02)
    assert row["at_most_step_s"] >= row["projected_step_s"]
    whole = row["scheduler_cpu_s"] + row["scheduler_background_s"]  # at most: none background
    serial = row["client_cpu_s"] + row["passes_s"] + row["network_s"] + row["checkpoint_s"]
    assert row["at_most_step_s"] == pytest.approx(serial + whole, abs=0.03)
    assert row["passes_s"] >= row["critical_path_s"] - 1e-3


#: The passes of the simulated tiles that ran (True: a Gram pass's), and the real function.
RAN, SIMULATED_TILE = [], simulated_gpus._simulated_tile


def _counted_tile(statistics: bool, *args):
    RAN.append(statistics)  # importable: the in-process workers run this very function
    return SIMULATED_TILE(statistics, *args)


def test_a_simulated_step_runs_each_tile_once_in_each_pass(monkeypatch):
    RAN.clear()
    monkeypatch.setattr(simulated_gpus, "_simulated_tile", _counted_tile)
    simulate([512], [128], [2], INSTANT, echo=lambda line: None)
    runs = 2 * 2 * 16  # on disk and held, each step run twice (warm, measured), 16 tiles
    assert RAN.count(True) == RAN.count(False) == runs  # the gradient pass ran twice before


def test_the_command_asks_for_simulate(capsys):
    assert cli.main(["bench", "cluster", "--size", "512", "--tile", "128"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    said = "daskstyle: error: daskstyle bench cluster simulates its workers: give --simulate"
    assert err == [said]


def test_the_command_prints_and_writes_its_table(tmp_path, capsys):
    out = tmp_path / "cluster.csv"
    argv = ["bench", "cluster", "--simulate", "--workers", "2", "--size", "256", "--tile", "128",
            "--tflops", "1e9", "--disk-gbps", "1e9", "--csv", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("simulated GPUs: 1e+09 TFLOP/s at 30%")
    assert len(lines) == 3 and all("bottleneck" in line for line in lines[1:])
    assert out.read_text().splitlines()[0].startswith("size,tile,workers,state,tiles,step_s")


def test_a_level_in_one_tile_is_simulated_as_one_image():
    """The first levels of a production fit one tile: one whole-image task, held or on disk."""
    rows = simulate([256], [512], [2], INSTANT, echo=lambda line: None, states=(True,))
    assert [(row["tiles"], row["state"].split(",")[0]) for row in rows] == [(1, "held")]
    assert rows[0]["step_s"] > 0
    _check_projection(rows[0])

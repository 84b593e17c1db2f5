"""``--checkpoint-every``: a level's state held in memory between checkpoints on disk."""

import dask
import dask.array as da
import numpy as np
import pytest
from dask.delayed import Delayed

from daskstyle.compute import hardware
from daskstyle.compute.executor import MEMORY_SHARE
from daskstyle.core.errors import InputError
from daskstyle.engine.tiles import Blocks, StoreWindow, put_chunks, take_chunks
from daskstyle.frontends import cli
from daskstyle.io.images import read_image
from daskstyle.optimise.held import Checkpoints, HeldState, held_in_memory
from daskstyle.optimise.state import LevelState
from daskstyle.run import footprint

from .conftest import SHALLOW_RUN_OPTIONS, final_canvas
from .test_lagged import _level


class Killed(Exception):
    pass


def _canvas(path):
    return LevelState.open(path).canvas().compute()


def test_a_tile_task_gets_the_held_chunks_it_reads_as_its_own_arguments():
    """Dask finalises every collection nested in a task's argument, at each call: the held
    chunks that a tile's windows read are taken out, passed flat and put back in the task."""
    image = da.arange(6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3).rechunk((2, 3, 3))
    windows = [Blocks.of(image).window(slice(1, 5), slice(2, 7)), "a store's window"]
    bare, chunks = take_chunks(windows)
    assert len(chunks) == 3 * 3 and all(isinstance(c, Delayed) for c in chunks)
    assert not any(isinstance(c, Delayed) for row in bare[0].chunks for c in row)
    assert bare[1] == windows[1]
    computed = dask.compute(*chunks)
    (read, store) = put_chunks(bare, computed)
    assert store == windows[1]
    np.testing.assert_array_equal(read.read(), image[1:5, 2:7].compute())


@pytest.mark.parametrize("gram", ["exact", "lagged"])
def test_a_held_level_paints_the_on_disk_level_bit_for_bit(vgg19_state, images, tmp_path,
                                                          monkeypatch, gram):  # fmt: skip
    on_disk = list(_level(tmp_path / "disk", vgg19_state, images, gram, dtype=np.float32).steps())
    saved_at = []
    real_commit = LevelState.commit

    def recording(self, **changes):
        if "step" in changes:
            saved_at.append(changes["step"])
        real_commit(self, **changes)

    monkeypatch.setattr(LevelState, "commit", recording)
    level = _level(tmp_path / "held", vgg19_state, images, gram, dtype=np.float32,
                   checkpoint_every=2)  # fmt: skip
    assert isinstance(level.state, HeldState)
    held = list(level.steps())
    assert saved_at == [2, 4, 5]  # every second step, and the last
    assert [s.loss for s in held] == [s.loss for s in on_disk]
    assert np.array_equal(_canvas(tmp_path / "held"), _canvas(tmp_path / "disk"))
    history = [entry[:3] for entry in LevelState.open(tmp_path / "held").attrs["history"]]
    assert history == [entry[:3] for entry in LevelState.open(tmp_path / "disk").attrs["history"]]


def test_a_held_level_reads_its_content_target_once(vgg19_state, images, tmp_path,
                                                   monkeypatch):  # fmt: skip
    """Held with the state, the content target's windows are read when the level opens, not at
    each step, and the steps paint the on-disk level's picture; told not to, it reads them from
    disk at each step."""
    on_disk = list(_level(tmp_path / "disk", vgg19_state, images, "exact", steps=3,
                          dtype=np.float32).steps())  # fmt: skip
    level = _level(tmp_path / "held", vgg19_state, images, "exact", steps=3, dtype=np.float32,
                   checkpoint_every=2)  # fmt: skip
    windows = level.graph.content_windows(level.plan)
    assert len(level.plan) > 1 and len(level.held_target.held) == len(windows)
    held_bytes = sum(np.asarray(w.compute()).nbytes for w in level.held_target.held.values())
    assert footprint.held_target_bytes(level.plan, np.float32, level.graph) == held_bytes
    read, real_read = [], StoreWindow.read
    monkeypatch.setattr(StoreWindow, "read",
                        lambda window: read.append(str(window.array.store_path)) or real_read(window))  # fmt: skip
    held = list(level.steps())
    target = str(level.content_target.store_path)
    assert read and target not in read  # the canvas's first step came from disk, no target
    assert [s.loss for s in held] == [s.loss for s in on_disk]
    assert np.array_equal(_canvas(tmp_path / "held"), _canvas(tmp_path / "disk"))
    unheld = _level(tmp_path / "unheld", vgg19_state, images, "exact", steps=3,
                    dtype=np.float32, checkpoint_every=Checkpoints(steps=2, with_target=False))  # fmt: skip
    assert unheld.held_target is None
    list(unheld.steps())
    assert str(unheld.content_target.store_path) in read


def test_the_content_target_is_held_where_it_fits():
    every, state = Checkpoints(steps=5), 2 * 3 * 3 * 4 * 100 * 100  # both buffers, float32
    memory = (state + 1000) / (1 - MEMORY_SHARE)
    line, taken = held_in_memory((100, 100), np.float32, every, memory, 900)
    assert taken.with_target and line.endswith(", and the content target the tiles read, 0.9 kB")
    line, taken = held_in_memory((100, 100), np.float32, every, memory, 5000)
    assert not taken.with_target and taken.steps == 5
    assert "the content target is read from disk at each step" in line
    assert held_in_memory((100, 100), np.float32, every, None, 10**15)[1].with_target
    with pytest.raises(InputError, match="use --checkpoint-every 1"):
        held_in_memory((100, 100), np.float32, every, state / 2, 0)


@pytest.mark.parametrize("gram", ["exact", "lagged"])
def test_a_killed_held_level_resumes_from_its_checkpoint(vgg19_state, images, tmp_path,
                                                         monkeypatch, gram):  # fmt: skip
    list(_level(tmp_path / "whole", vgg19_state, images, gram, dtype=np.float32).steps())
    real_commit = HeldState.commit

    def commit_or_die(self, **changes):
        if changes.get("step") == 4:  # step 4 computed in memory; the checkpoint is step 3's
            raise Killed
        real_commit(self, **changes)

    monkeypatch.setattr(HeldState, "commit", commit_or_die)
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        list(_level(killed, vgg19_state, images, gram, dtype=np.float32,
                    checkpoint_every=3).steps())  # fmt: skip
    assert LevelState.open(killed).step == 3
    monkeypatch.setattr(HeldState, "commit", real_commit)
    list(_level(killed, vgg19_state, images, gram, dtype=np.float32, checkpoint_every=3).steps())
    assert LevelState.open(killed).step == 5
    assert np.array_equal(_canvas(killed), _canvas(tmp_path / "whole"))


def test_checkpoints_need_a_positive_interval(tmp_path, vgg19_state, images):
    level = _level(tmp_path / "level", vgg19_state, images, "exact")
    for bad in (0, "-2", "1.5", "min", "0min", "5 steps", True):
        with pytest.raises(InputError, match="1 or more, or minutes such as 15min"):
            HeldState(level.state, bad)
    assert Checkpoints.of("7") == Checkpoints(steps=7) and str(Checkpoints.of(7)) == "7 steps"
    assert Checkpoints.of("15min") == Checkpoints(minutes=15.0) == Checkpoints.of("15 min")
    assert str(Checkpoints.of("0.5min")) == "0.5 min" and not Checkpoints.of(1).held


def test_checkpoints_every_so_many_minutes(vgg19_state, images, tmp_path, monkeypatch):
    """A clock that moves 40 s per step: with checkpoints every 1.5 min the state goes to disk
    at the first step that ends 90 s after the last checkpoint, and at the level's end."""
    on_disk = list(_level(tmp_path / "disk", vgg19_state, images, "exact", steps=8,
                          dtype=np.float32).steps())  # fmt: skip
    saved_at, real_commit = [], LevelState.commit

    def recording(self, **changes):
        if "step" in changes:
            saved_at.append(changes["step"])
        real_commit(self, **changes)

    monkeypatch.setattr(LevelState, "commit", recording)
    level = _level(tmp_path / "held", vgg19_state, images, "exact", steps=8, dtype=np.float32,
                   checkpoint_every="1.5min")  # fmt: skip
    level.state.clock = lambda: 40.0 * level.state.step  # as if each step took 40 s
    level.state.saved_at = 0.0
    held = list(level.steps())
    assert saved_at == [3, 6, 8]
    assert [s.loss for s in held] == [s.loss for s in on_disk]
    assert np.array_equal(_canvas(tmp_path / "held"), _canvas(tmp_path / "disk"))


def _run_argv(pictures, weights_file, out, *extra):
    return ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "4",
            "--tile", "48", "--network", "vgg19", "--weights", str(weights_file),
            *SHALLOW_RUN_OPTIONS, *extra]  # fmt: skip


@pytest.mark.slow
def test_a_run_held_on_a_local_cluster_paints_the_on_disk_run(pictures, weights_file, tmp_path,
                                                              capsys):  # fmt: skip
    """Worker processes hold the state (persisted chunks) and write it every third step; the
    same cluster with the state on disk paints the same bytes."""
    on_disk, held = tmp_path / "disk.png", tmp_path / "held.png"
    assert cli.main(_run_argv(pictures, weights_file, on_disk, "--workers", "2")) == 0
    assert cli.main([*_run_argv(pictures, weights_file, held, "--checkpoint-every", "3",
                                "--workers", "2")]) == 0  # fmt: skip
    assert "Dask dashboard" in capsys.readouterr().out  # a local cluster of worker processes
    assert np.array_equal(final_canvas(f"{held}.daskstyle"), final_canvas(f"{on_disk}.daskstyle"))
    assert np.array_equal(read_image(held).compute(), read_image(on_disk).compute())


def test_the_plan_says_what_is_held_and_refuses_what_does_not_fit(pictures, weights_file,
                                                                  tmp_path, capsys, monkeypatch):  # fmt: skip
    out = tmp_path / "out.png"
    argv = _run_argv(pictures, weights_file, out, "--checkpoint-every", "5", "--dry-run")
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "state in memory, on disk every 5 steps and at each level's end: " in "\n".join(lines)
    assert cli.main(_run_argv(pictures, weights_file, out, "--checkpoint-every", "10min",
                              "--dry-run")) == 0  # fmt: skip
    assert "state in memory, on disk every 10 min and at each level's end: " in (
        capsys.readouterr().out
    )
    monkeypatch.setattr(hardware, "host_memory", lambda: 100_000)
    assert cli.main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].endswith("use --checkpoint-every 1 (state on disk)")
    assert cli.main([*argv[:-1], "--cluster", "slurm", "--dry-run"]) == 0  # memory elsewhere
    for bad in ("0", "-2", "soon"):
        assert cli.main(_run_argv(pictures, weights_file, out, "--checkpoint-every", bad)) == 1
        assert "--checkpoint-every must be a whole number of steps, 1 or more, or minutes" in (
            capsys.readouterr().err
        )

    assert not out.exists()


def test_a_production_holds_its_state_as_its_file_says(tmp_path):
    from daskstyle.frontends.pipeline import run_pipeline

    path = tmp_path / "held.toml"
    text = 'kind = "production"\ncontent = "example"\nstyle = "example"\noutput = "o.tif"\n'
    path.write_text(text + "checkpoint_every = 4\n")
    lines = []
    assert run_pipeline(path, echo=lines.append, dry_run=True) == []
    assert any(line.startswith("state in memory, on disk every 4 steps") for line in lines)
    path.write_text(text + 'checkpoint_every = "30min"\n')
    lines = []
    assert run_pipeline(path, echo=lines.append, dry_run=True) == []
    assert any(line.startswith("state in memory, on disk every 30 min") for line in lines)
    for bad in ("0", '"often"'):
        path.write_text(text + f"checkpoint_every = {bad}\n")
        with pytest.raises(Exception, match="checkpoint_every"):
            run_pipeline(path, dry_run=True)

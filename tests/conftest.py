import contextlib
import hashlib
import os
from pathlib import Path

import dask
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

if os.environ.get("PYTEST_XDIST_WORKER"):  # two test processes share the cores: one each
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def vgg19():
    """A torchvision VGG-19 with seeded random weights (exactness does not need trained ones)."""
    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None)


@pytest.fixture(scope="session")
def vgg19_state(vgg19):
    return vgg19.state_dict()


#: The layers of whole-run tests that are not about the network's depth: relu1_1, relu2_1 and
#: a halo of a few px instead of the default layers' 160 (their exactness is tested on its own).
SHALLOW_RUN = dict(content_layer="relu2_1", style_layers=("relu1_1", "relu2_1"))
SHALLOW_RUN_OPTIONS = ["--content-layer", "relu2_1", "--style-layers", "relu1_1,relu2_1"]
#: A small whole run on the command line: two levels of 3 steps, 32-px tiles, shallow layers.
SMALL_RUN_OPTIONS = ["--r0", "48", "--max-iters", "3", "--tile", "32", "--network", "vgg19",
                     *SHALLOW_RUN_OPTIONS]  # fmt: skip


def random_image(height, width, seed):
    return np.random.default_rng(seed).uniform(0, 255, (height, width, 3))


@pytest.fixture
def images():
    """A canvas, a content image and a style image of another size, for a canvas size."""

    def make(height, width, style_shape=(112, 96)):
        return (
            random_image(height, width, 1),
            random_image(height, width, 2),
            random_image(*style_shape, 3),
        )

    return make


@pytest.fixture
def count_tiles(monkeypatch):
    """Counts the network tasks of each kind that really ran (synchronous scheduler)."""
    from daskstyle.engine import kernels, remade

    names = ("tile_gradient", "tile_gradient_remaking_target", "tile_statistics",
             "tile_content_features")  # fmt: skip
    calls = dict.fromkeys(names, 0)

    def counting(original):
        def wrapper(*args, **kwargs):
            calls[original.__name__] += 1
            return original(*args, **kwargs)

        return wrapper

    for name in calls:
        module = remade if name == "tile_gradient_remaking_target" else kernels
        monkeypatch.setattr(module, name, counting(getattr(module, name)))
    with dask.config.set(scheduler="synchronous"):
        yield calls


@pytest.fixture(scope="session")
def hed_weights():
    """HED's converted VGG-16 weights from the daskstyle cache, or a skip that says how to get them."""
    from daskstyle.networks.catalog import default_weights_path, read_state_dict

    path = default_weights_path("hed-vgg16")
    if not path.is_file():
        pytest.skip(f"HED weights absent: run `daskstyle weights download hed-vgg16` (puts {path})")
    return read_state_dict(path)


@contextlib.contextmanager
def two_process_client():
    """A LocalCluster of two one-thread worker processes on 127.0.0.1, and its client."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        yield client


@pytest.fixture(scope="session")
def pictures(tmp_path_factory):
    """A small content (96 x 80) and style (64 x 72) picture as PNG files."""
    folder = tmp_path_factory.mktemp("pictures")
    y, x = np.mgrid[0:96, 0:80]
    content = np.stack([x * 3, y * 2, 128 + 100 * np.sin(x / 5.0)], -1)
    rng = np.random.default_rng(0)
    style = rng.uniform(0, 255, (64, 72, 3)) * (np.arange(72) % 8 < 4)[None, :, None]
    paths = folder / "content.png", folder / "style.png"
    for path, image in zip(paths, (content, style)):
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return paths


@pytest.fixture(scope="session")
def weights_file(vgg19_state, tmp_path_factory):
    """Seeded random VGG-19 ``features`` weights as a file (runs take weights by path)."""
    path = tmp_path_factory.mktemp("weights") / "vgg19-random.pth"
    torch.save({k: v for k, v in vgg19_state.items() if k.startswith("features.")}, path)
    return path


def final_canvas(workdir) -> np.ndarray:
    """The last committed canvas of the last level in the run directory ``workdir``."""
    from daskstyle.optimise.state import LevelState

    levels = sorted(Path(workdir).glob("level*/zarr.json"), key=lambda p: int(p.parent.name[5:]))
    return LevelState.open(levels[-1].parent).canvas().compute()


@pytest.fixture
def daskstyle_run(pictures, weights_file, monkeypatch, capsys):
    """``daskstyle run CONTENT STYLE -o OUT [options]`` (:data:`SMALL_RUN_OPTIONS`) on the
    threaded scheduler: (exit status, stderr). ``cluster_allowed=False``: the command must end
    before a cluster starts, that is before any work."""
    from daskstyle.compute import cluster
    from daskstyle.frontends import cli

    real_open_client, allowed = cluster.open_client, {"now": True}

    def open_client(*args, **kwargs):
        assert allowed["now"], "a cluster was started"
        return real_open_client(*args, **kwargs)

    monkeypatch.setattr(cluster, "open_client", open_client)

    def call(out, *options, content=None, style=None, cluster_allowed=True):
        allowed["now"] = cluster_allowed
        content, style = content or pictures[0], style or pictures[1]
        argv = ["run", str(content), str(style), "-o", str(out), *SMALL_RUN_OPTIONS,
                "--weights", str(weights_file), "--cluster", "threads", *map(str, options)]  # fmt: skip
        status = cli.main(argv)
        return status, capsys.readouterr().err

    return call


def snapshot(folder) -> dict:
    """Every entry under ``folder`` (links as links, folders as folders) and its bytes'
    checksum."""
    return {
        str(p.relative_to(folder)): "link" if p.is_symlink() else
        hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(Path(folder).rglob("*"))
    }  # fmt: skip


class Killed(Exception):
    """A process killed in a test."""


@contextlib.contextmanager
def killed_before_commit(commit: str, at_step: int):
    """While the block runs, a level state's commit that would write the attribute ``commit``
    at step ``at_step`` raises :class:`Killed`: the step's stores are done and its attributes
    unchanged, as a kill leaves them."""
    from daskstyle.optimise.state import LevelState

    real_commit = LevelState.commit

    def commit_or_die(self, **changes):
        if commit in changes and self.step == at_step:
            raise Killed
        real_commit(self, **changes)

    LevelState.commit = commit_or_die
    try:
        yield
    finally:
        LevelState.commit = real_commit


@pytest.fixture(scope="session")
def finished_run(pictures, weights_file, tmp_path_factory):
    """A small finished run (:data:`SMALL_RUN_OPTIONS` on threads) with a .tif output written
    with ``--pyramid``: (output, run directory)."""
    from daskstyle.frontends import cli

    out = tmp_path_factory.mktemp("finished") / "painting.tif"
    argv = ["run", *map(str, pictures), "-o", str(out), *SMALL_RUN_OPTIONS, "--weights",
            str(weights_file), "--cluster", "threads", "--pyramid"]  # fmt: skip
    assert cli.main(argv) == 0
    return out, out.with_name(out.name + ".daskstyle")


@pytest.fixture
def synthetic_run(tmp_path):
    """A run directory whose level 1 of 700 x 1000 px (160-px chunks, random values on
    -3..258) has its overview: (run directory, level state, canvas)."""
    import dask.array as da

    from daskstyle.api import level_plan
    from daskstyle.optimise import overview
    from daskstyle.optimise.state import LevelState

    workdir = tmp_path / "synthetic.daskstyle"
    workdir.mkdir()
    (workdir / "run.json").write_text('{"daskstyle": 1, "levels": 2}')
    canvas = np.random.default_rng(0).uniform(-3, 258, (700, 1000, 3)).astype(np.float32)
    array = da.from_array(canvas, chunks=(160, 160, 3))
    state = LevelState.create(workdir / "level1", array, array, level_plan((700, 1000), 160, 16))
    overview.keep_up(state)
    return workdir, state, canvas

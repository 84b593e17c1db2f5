"""What a step holds in memory at once: a tile's gradient should live only until its Adam
update has used it, so that a step's memory does not grow with the canvas."""

import threading
import weakref

import numpy as np
import pytest

from daskstyle.engine import remade
from daskstyle.frontends import cli


class _Counted(np.ndarray):
    """A gradient whose lifetime is counted (a subclass: plain arrays take no weak refs)."""


@pytest.mark.parametrize("checkpoint_every", ["1", "5"])  # the state on disk, held in memory
def test_a_step_holds_a_few_tiles_gradients_not_all(pictures, weights_file, tmp_path,
                                                    monkeypatch, checkpoint_every):  # fmt: skip
    alive, most, lock = [0], [0], threading.Lock()
    original = remade.tile_gradient_remaking_target

    def gone():
        with lock:
            alive[0] -= 1

    def counted(*args, **kwargs):
        grad, *rest = original(*args, **kwargs)
        grad = grad.view(_Counted)
        with lock:
            alive[0] += 1
            most[0] = max(most[0], alive[0])
        weakref.finalize(grad, gone)
        return (grad, *rest)

    monkeypatch.setattr(remade, "tile_gradient_remaking_target", counted)
    argv = ["run", *map(str, pictures), "-o", str(tmp_path / "out.png"), "--r0", "96",
            "--max-iters", "3", "--tile", "16", "--network", "vgg19", "--weights",
            str(weights_file), "--content-layer", "relu1_1", "--style-layers", "relu1_1",
            "--cluster", "threads", "--checkpoint-every", checkpoint_every]  # fmt: skip
    assert cli.main(argv) == 0  # 30 tiles of 16 px; steps 2 and 3 are ordinary Adam steps
    assert most[0] <= 4, most[0]  # two threads: two (29 on disk and 21 held, before each
    # chunk's update became one task that takes its gradient and reads its own state)

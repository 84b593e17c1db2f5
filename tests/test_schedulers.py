"""The same image on every scheduler, and after a worker is killed in the middle of an iteration.

float64, so that what is compared is the scheduling, not float32 rounding: worker processes
run torch with other thread counts, and in float32 that alone changes the last bits.
"""

import os
import signal
import threading

import dask
import numpy as np
import pytest

from daskstyle.run import painting
from daskstyle.run.rundir import default_workdir
from daskstyle.settings import Settings

from .conftest import final_canvas, two_process_client
from .test_run import SMALL

SETTINGS = Settings(**{**SMALL, "max_iters": 2, "dtype": "float64"}, tile=48)


def paint(pictures, weights_file, out, on_event=lambda event: None):
    painting.transfer(*pictures, out, settings=SETTINGS, weights=weights_file, on_event=on_event)
    return final_canvas(default_workdir(out))


@pytest.fixture(scope="module")
def cluster():
    with two_process_client() as client:
        yield client


def test_same_image_on_synchronous_threads_and_cluster(pictures, weights_file, tmp_path, cluster):
    with dask.config.set(scheduler="synchronous"):
        synchronous = paint(pictures, weights_file, tmp_path / "sync.png")
    with dask.config.set(scheduler="threads"):
        threads = paint(pictures, weights_file, tmp_path / "threads.png")
    on_cluster = paint(pictures, weights_file, tmp_path / "cluster.png")  # the active client
    assert np.abs(threads - synchronous).max() < 1e-6
    assert np.abs(on_cluster - synchronous).max() < 1e-6


def test_a_worker_killed_mid_iteration_changes_nothing(pictures, weights_file, tmp_path, cluster):
    undisturbed = paint(pictures, weights_file, tmp_path / "undisturbed.png")
    pids = cluster.run(os.getpid)
    killed = []

    def kill():
        # a worker holding the weights: they must come back (they are a task, not scattered data)
        holders = [w for key, ws in cluster.who_has().items() if "weights" in str(key) for w in ws]
        victim = pids[holders[0]]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    def kill_soon(event):
        if isinstance(event, painting.Stepped) and (event.level, event.step) == (0, 2):
            # level 1 is being set up and run now: kill a worker while its tiles run
            threading.Timer(0.3, kill).start()

    disturbed = paint(pictures, weights_file, tmp_path / "disturbed.png", kill_soon)
    assert killed
    assert killed[0] not in cluster.run(os.getpid).values()  # the nanny started a new worker
    assert np.abs(disturbed - undisturbed).max() < 1e-6

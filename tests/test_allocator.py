"""daskstyle.compute.allocator: the environment of the processes that run tiles."""

import os

from daskstyle.compute.allocator import REUSE_FREED_MEMORY, starting_workers, worker_environment


def test_ours_over_dask_but_the_users_own_values_win(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    environment = worker_environment({"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1})
    assert environment == {**REUSE_FREED_MEMORY, "MALLOC_ARENA_MAX": "4", "OMP_NUM_THREADS": "1"}


def test_the_environment_is_restored_after_the_workers_start(monkeypatch):
    for name in REUSE_FREED_MEMORY:
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    with starting_workers({"OMP_NUM_THREADS": 1}):
        assert os.environ["MALLOC_MMAP_MAX_"] == "0" and os.environ["OMP_NUM_THREADS"] == "1"
    assert dict(os.environ) == before


def test_freed_memory_kept_by_the_workers_allocator_is_given_back(tmp_path):
    """Under the workers' settings freed memory stays in the process; between levels it is
    given back, holes in the middle of the heap included."""
    import subprocess
    import sys

    script = """
import numpy as np, psutil
from daskstyle.compute.allocator import give_back_freed_memory
rss = lambda: psutil.Process().memory_info().rss
blocks = [np.ones(2**24) for _ in range(8)]  # 8 x 128 MiB
keep = np.ones(2**20)  # allocated last: the freed blocks below it are a hole, not the top
del blocks
kept = rss()
give_back_freed_memory()
print(kept - rss())
"""
    environment = {**os.environ, **REUSE_FREED_MEMORY}
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert int(done.stdout) > 768 * 2**20

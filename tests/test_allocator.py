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

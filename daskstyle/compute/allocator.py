"""How the processes that daskstyle starts to run tiles allocate memory: glibc keeps what they
free, for the next tensor.

A tile's forward and backward pass allocate and free many large tensors. By default glibc
serves each allocation over 32 MB with a fresh ``mmap`` and unmaps it when freed, and Dask
starts its workers returning freed heap memory to the system at once
(``MALLOC_TRIM_THRESHOLD_=65536``): the kernel then zeroes every page again when the next
tensor first touches it. Profiled with ``perf`` at 1024-px tiles in bf16 on 2 cores, zeroing
pages (``clear_page``) took 44 % of the CPU time. The processes daskstyle starts (the workers
of a local cluster, the benchmarks' children, and SLURM jobs, whose script exports the
variables before the YAML's prologue) run with one malloc arena, no ``mmap`` and no trimming
instead, so freed memory is used again: a process's memory stays at its peak, and
the peak rises a little with fragmentation (the figures are in docs/performance.md's speed table).
glibc reads these variables once, when a process starts; a variable set in daskstyle's own
environment keeps its value. ``--cluster threads`` and ``sync`` run tiles in the caller's own
process, whose allocator daskstyle leaves as it is (its memory would stay at its peak).

Kept memory is reused only by allocations that fit the holes it left: a level whose tiles
have another size than the last level's leaves the last level's holes unused and grows the
heap (a 16,384² canvas after levels of 1,376-px tiles, in 1,504-px tiles: 18 GiB of RSS where
its tiles need 13). So after a level's steps (before its preview and the output, which need
little) the workers give what they freed back to the system (:func:`give_back_freed_memory`):
its pages are zeroed again once, at the next level's first tiles. Within a level the holes
crept too, up to 17 GiB in a 16,384² level: glibc's per-thread cache and fast bins keep small
freed chunks apart from their neighbours, which splits the free space around them. The
processes run without them (``GLIBC_TUNABLES``), which costs no measurable time here
(docs/performance.md has the figures).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator, Mapping

#: mallopt(3)'s environment variables: one arena, every allocation from it, never trimmed;
#: and no per-thread cache or fast bins, whose freed chunks are never joined to their
#: neighbours and so break the heap's free space into holes (glibc's tunables; glibc 2.36
#: rewrites that variable as it reads it, and a process's /proc environ shows the first only).
REUSE_FREED_MEMORY = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(2**40),
    "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0",
}


def worker_environment(base: Mapping[str, object] = {}) -> dict[str, str]:
    """``base`` (such as Dask's pre-spawn environment) with :data:`REUSE_FREED_MEMORY` over
    it, but for those variables this process's environment sets itself."""
    own = {name: os.environ[name] for name in REUSE_FREED_MEMORY if name in os.environ}
    return {**{name: str(value) for name, value in base.items()}, **REUSE_FREED_MEMORY, **own}


def job_exports() -> list[str]:
    """Shell lines giving a batch job's worker :data:`REUSE_FREED_MEMORY` (this process's own
    values where it sets them): the first lines of a SLURM job script's prologue."""
    environment = worker_environment()
    return [f"export {name}={environment[name]}" for name in REUSE_FREED_MEMORY]


@contextlib.contextmanager
def starting_workers(base: Mapping[str, object] = {}) -> Iterator[None]:
    """This process's environment with :func:`worker_environment` while the block starts
    processes (which keep it); restored afterwards."""
    ours = dict(os.environ)
    os.environ.update(worker_environment(base))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(ours)


def give_back_freed_memory() -> None:
    """Hand the pages this process's allocator holds freed back to the system, wherever in
    the heap they lie (glibc's ``malloc_trim(0)``); nothing where the C library is not glibc."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)

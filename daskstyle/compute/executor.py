"""Where a run's Dask graphs compute: one object for the CLI, the pipelines and the benchmarks.

An :class:`Executor` says where (``local``, ``threads``, ``sync``, ``slurm``, or an existing
scheduler, see :func:`daskstyle.compute.cluster.open_client`) and how many tiles may run at once on
this machine's CPUs; :meth:`Executor.open` starts it and yields a :class:`Session`: the
client, the resources each network task asks for (``{"GPU": 1}`` where the workers have
GPUs), with task fusion off so that those resources stay on the tasks. The Python API, which
runs on whatever scheduler is current, asks the same questions through
:func:`current_client` and :func:`current_resources`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
from dask.base import get_scheduler
from dask.delayed import Delayed
from dask.system import CPU_COUNT

from daskstyle.core import geometry
from daskstyle.core.text import counted
from daskstyle.networks.catalog import (
    DEFAULT_CONTENT_LAYER,
    DEFAULT_STYLE_LAYERS,
    NETWORKS,
    get_network,
)

CPU_SPECS = ("local", "threads")  # where tiles share this machine's memory
STARTED_HERE = ("local", "slurm")  # clusters this process starts, with their dashboard or not
DASHBOARD_OFF = ("Dask dashboard: off, since it has no password (--dashboard, or dashboard = "
                 "true in [cluster], starts it)")  # fmt: skip
THIS_MACHINE_SPECS = (*CPU_SPECS, "sync")  # where tiles run on this machine (--tile auto)
MEMORY_SHARE = 0.8  # of this machine's memory, for the tiles that run at once


@dataclass(frozen=True)
class Session:
    """An open executor: its client (None on the local schedulers) and task resources."""

    client: object | None
    resources: dict | None
    lines: tuple[str, ...] = ()  # what the caller may tell the user: dashboard, memory cap


@dataclass(frozen=True)
class Executor:
    """Where and how wide to compute; the options of :func:`daskstyle.compute.cluster.open_client`.
    ``tile`` and ``dtype``: the run's, which size the tiles this machine's memory holds."""

    spec: str = "local"
    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: int | str | None = None
    jobs: int | None = None
    config: str | Path | None = None
    tls: bool = True
    dashboard: bool = False
    tile: int = 512
    dtype: str = "float32"

    @contextlib.contextmanager
    def open(self) -> Iterator[Session]:
        """Start the cluster (or join a scheduler); close what was started on exit."""
        from daskstyle.compute.cluster import dashboard_link, gpu_count, has_gpus, open_client

        slots = tiles_in_memory(self.tile, self.dtype)
        lines = []
        if slots < CPU_COUNT and self.spec in CPU_SPECS and not gpu_count():
            lines.append(f"memory holds {counted(slots, 'tile')} of {self.tile} px at once: "
                         f"{slots} of {CPU_COUNT} cores used (a smaller --tile uses more)")  # fmt: skip
        options = {
            "workers": self.workers, "threads_per_worker": self.threads_per_worker,
            "memory_limit": self.memory_limit, "jobs": self.jobs, "config": self.config,
        }  # fmt: skip
        options = {k: v for k, v in options.items() if v is not None}
        scheduler = {"scheduler": "synchronous"} if self.spec == "sync" else {}
        with (
            dask.config.set(scheduler),
            open_client(
                self.spec, tls=self.tls, dashboard=self.dashboard, max_tasks=slots, **options
            ) as client,  # fmt: skip
        ):
            lines.extend(self._dashboard_line(dashboard_link(client)))
            resources = {"GPU": 1} if has_gpus(client) else None
            with compute_settings(resources):
                yield Session(client, resources, tuple(lines))

    def _dashboard_line(self, link: str | None) -> list[str]:
        """What to say about the dashboard: its link, that anyone may open it, or that it is
        off (a scheduler started elsewhere has the dashboard its owner gave it)."""
        if self.spec not in STARTED_HERE:
            return [f"Dask dashboard: {link}"] if link else []
        if not self.dashboard:
            return [DASHBOARD_OFF]
        return [f"Dask dashboard: {link} (no password: anyone who can reach this port can open it)"]


def compute_settings(resources: dict | None):
    """The Dask settings under which graphs whose tasks ask for ``resources`` compute: with
    task fusion off, which would otherwise merge resource-annotated tasks away."""
    return dask.config.set({"optimization.fuse.active": False} if resources else {})


def share(value, name: str) -> Delayed:
    """``value`` (weights, style Grams) as one graph input that every task shares: on a
    distributed cluster persisted once (:func:`persist`)."""
    return persist(dask.delayed(value, name=name, traverse=False))


def persist(shared: Delayed) -> Delayed:
    """``shared`` persisted on the current client, if there is one: sent once, not with each
    iteration's graph, and as a task rather than scattered data, so the scheduler keeps its
    spec and recomputes it if the worker holding it dies."""
    client = current_client()
    if client is None:
        return shared
    with warnings.catch_warnings():  # sending it once is the point: no advice wanted
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        return client.persist(shared)


def current_client():
    """The ``distributed.Client`` that Dask computes with now, or None."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return None
    return client if get_scheduler() == client.get else None


def give_back_freed_memory() -> None:
    """Each worker of the current client, or else this process, hands the memory it freed back
    to the system (:func:`daskstyle.compute.allocator.give_back_freed_memory`)."""
    from daskstyle.compute import allocator

    client = current_client()
    if client is None:
        allocator.give_back_freed_memory()
    else:
        client.run(allocator.give_back_freed_memory)


def current_resources() -> dict | None:
    """``{"GPU": 1}`` when the current client's workers declare GPUs, else None."""
    from daskstyle.compute.cluster import has_gpus

    return {"GPU": 1} if has_gpus(current_client()) else None


def tiles_in_memory(tile: int, dtype: str, memory: float | None = None) -> int:
    """How many gradient tiles of ``tile`` px fit in :data:`MEMORY_SHARE` of ``memory`` (this
    machine's) at once, with the largest halo of the known networks."""
    from distributed.system import MEMORY_LIMIT

    itemsize = np.dtype(dtype).itemsize
    return geometry.concurrent_tiles(
        MEMORY_SHARE * (memory or MEMORY_LIMIT), tile, largest_halo(), itemsize
    )


def largest_halo() -> int:
    """The halo of the known network with the deepest default layers (the memory rules count
    every tile with it, whichever network runs)."""
    layers = (DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS)
    return max(get_network(name).halo(layers).total for name in NETWORKS)

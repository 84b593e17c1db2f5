"""A Dask cluster whose scheduler runs in a process of its own and whose workers are threads of
this process: the cluster simulation's, so that the scheduler's work is measured apart from the
workers' and the client's (on a real cluster the scheduler has a core to itself).

The scheduler listens on 127.0.0.1 only and, as every cluster daskstyle starts, requires TLS
with a certificate made for this cluster (:func:`daskstyle.compute.security.temporary`); its
HTTP port answers ``/health`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import Iterator

import dask
from distributed import Client, Scheduler, SpecCluster, Worker
from distributed.deploy.spec import ProcessInterface
from distributed.security import Security

from daskstyle.compute import security as credentials

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 120  # seconds for the scheduler's process to start listening, or to end


def _serve(security: Security, addresses) -> None:
    """Run a scheduler that requires ``security`` of every connection and put its address on
    ``addresses``; until the process is terminated."""

    async def main() -> None:
        async with Scheduler(host=LOOPBACK, port=0, security=security, dashboard=False,
                             dashboard_address=f"{LOOPBACK}:0") as scheduler:  # fmt: skip
            addresses.put(scheduler.address)
            await scheduler.finished()

    logging.getLogger("distributed").setLevel(logging.ERROR)  # as the workers' here
    with dask.config.set(credentials.http_settings(dashboard=False)):
        asyncio.run(main())


class SchedulerProcess(ProcessInterface):
    """A scheduler in a process of its own, as a :class:`SpecCluster` starts and closes one."""

    def __init__(self, security: Security):
        super().__init__()
        self.security = security
        self.process = None

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # nothing of this process's state
        addresses = context.Queue()
        self.process = context.Process(target=_serve, args=(self.security, addresses),
                                       daemon=True, name="daskstyle-scheduler")  # fmt: skip
        self.process.start()
        self.address = await asyncio.to_thread(addresses.get, True, START_TIMEOUT)
        await super().start()

    async def close(self) -> None:
        if self.process is not None:  # the cluster has told the scheduler to close
            await asyncio.to_thread(self.process.join, START_TIMEOUT)
            self.process.terminate()
        await super().close()


@contextlib.contextmanager
def threads_beside_a_scheduler(workers: int) -> Iterator[tuple[Client, int]]:
    """A client of ``workers`` workers of one thread each in this process, and a scheduler in
    a process of its own; yields the client and the scheduler's process id."""
    security = credentials.temporary()
    worker = {"cls": Worker, "options": {"nthreads": 1, "memory_limit": 0, "host": LOOPBACK,
                                         "security": security}}  # fmt: skip
    cluster = SpecCluster(workers={number: dict(worker) for number in range(workers)},
                          scheduler={"cls": SchedulerProcess, "options": {"security": security}},
                          security=security, silence_logs=logging.ERROR)  # fmt: skip
    with cluster, Client(cluster, security=security) as client:
        yield client, cluster.scheduler.process.pid

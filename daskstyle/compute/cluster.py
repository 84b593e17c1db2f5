"""Where the Dask graphs run: a local cluster (dask-cuda on GPUs), SLURM through dask-jobqueue,
or a scheduler that is already running.

Security default: clusters started here listen on 127.0.0.1 only (SLURM workers on other
nodes: ``interface:`` in the YAML), speak TLS with credentials only this run holds, and start
no dashboard unless asked for (:mod:`daskstyle.compute.security`).
No torch at import time: torch is imported only to count GPUs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import dask
from dask.system import CPU_COUNT
from dask.utils import parse_bytes
from distributed import Client, LocalCluster

from daskstyle.compute import allocator, joined, security
from daskstyle.core.data import DATA_DIR
from daskstyle.core.errors import DaskstyleError, InputError, SettingError
from daskstyle.core.text import one_line

LOOPBACK = "127.0.0.1"
DASHBOARD_PORT = 8787  # taken? distributed falls back to a free port
SLURM_CONFIG_ENV = "DASKSTYLE_SLURM_CONFIG"
SLURM_CONFIG_DEFAULT = DATA_DIR / "slurm.yaml"  # the template
ADAPT_MAX_JOBS = 8  # open_client("slurm", jobs=None) adapts between 1 and this many jobs
NO_CLIENT = (None, "sync", "threads")


def check_sizes(workers=None, threads_per_worker=None, memory_limit=None, jobs=None) -> None:
    """Raise a :class:`SettingError` naming the first size that cannot be used: ``workers``,
    ``threads_per_worker`` and ``jobs`` are whole numbers, 1 or more; ``memory_limit`` is
    ``"auto"``, bytes above 0 or a size such as ``"8GB"``. None leaves each to the cluster."""
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker),
                        ("jobs", jobs)):  # fmt: skip
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):  # fmt: skip
            raise SettingError(name, "must be a whole number, 1 or more", value)
    if memory_limit is None or memory_limit == "auto":
        return
    try:
        size = parse_bytes(memory_limit) if isinstance(memory_limit, str) else memory_limit
    except ValueError:
        size = None
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < math.inf:
        raise SettingError("memory_limit", 'must be a size such as "8GB", or bytes above 0',
                           memory_limit)  # fmt: skip


@contextlib.contextmanager
def open_client(
    spec: str | None = "local",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit=None,
    config: str | Path | None = None,
    tls: bool = True,
    dashboard: bool = False,
    jobs: int | None = None,
    max_tasks: int | None = None,
) -> Iterator[Client | None]:
    """A ``distributed.Client`` for ``spec``; clusters started here are closed on exit.

    ``spec``: ``"local"`` (worker processes on this machine: one per GPU, else one per 2
    cores), ``"slurm"`` (dask-jobqueue, settings from the YAML ``config``, else
    ``$DASKSTYLE_SLURM_CONFIG``, else ``cluster/slurm.yaml``; ``jobs`` SLURM jobs, or adaptive
    1 to ``ADAPT_MAX_JOBS`` jobs when None), ``"tcp://HOST:PORT"``, ``"tls://HOST:PORT"`` or a
    scheduler file ``*.json`` (an existing scheduler; TLS certificates from the Dask config),
    or ``None``/``"sync"``/``"threads"``: yields None, the caller keeps Dask's local scheduler.
    A cluster started here speaks TLS with credentials made for it, which only this process
    and its workers hold (:mod:`daskstyle.compute.security`); ``tls=False``: plain TCP, which
    any user who reaches the port can use to run code as you. ``dashboard=True`` starts the
    dashboard, which has no password. ``max_tasks``
    caps the tasks that run at once on this machine's CPUs (what fits in memory): a local
    CPU cluster's threads in all, or the threaded scheduler's.

    A local cluster's workers are out of reach of the signals sent to this process's group
    (Ctrl-C in a terminal): only this process gets them, and the exception they raise here
    closes the cluster. The workers are forked by a server that this process starts with its
    first local cluster, and they see the environment variables of that moment. When the
    block ends in an exception, the client and the cluster started here close without
    distributed's log lines about the work left undone; a local cluster's workers log errors
    only.
    """
    check_sizes(workers, threads_per_worker, memory_limit, jobs)
    slots = min(CPU_COUNT, max_tasks or CPU_COUNT)
    if spec in NO_CLIENT:
        with dask.config.set({"num_workers": slots} if spec == "threads" else {}):
            yield None
        return
    if spec.startswith(("tcp://", "tls://")) or spec.endswith(".json"):
        with joined.connect(spec) as client, _closed_quietly(client):
            yield client
        return
    if spec == "local":
        with _local_client(workers, threads_per_worker, memory_limit, tls, dashboard, slots) as c:
            yield c
        return
    if spec == "slurm":
        if workers is not None or threads_per_worker is not None or memory_limit is not None:
            raise InputError(
                "with --cluster slurm, set worker processes, threads (cores) and memory in the "
                "SLURM YAML, and the number of jobs with --jobs"
            )
        settings = read_slurm_config(config)
        with _slurm_cluster(settings, tls, dashboard) as cluster:
            _check_sbatch(cluster)
            if jobs is None:
                cluster.adapt(minimum_jobs=1, maximum_jobs=ADAPT_MAX_JOBS)
            else:
                cluster.scale(jobs=jobs)
            trusted = security.trusted(cluster.security if tls else None)
            with Client(cluster) as client, trusted, _closed_quietly(client, cluster):
                yield client
        return
    raise InputError(
        f"unknown cluster {spec!r}: use local, slurm, tcp://HOST:PORT, tls://HOST:PORT, "
        "a scheduler file (.json), or sync/threads for no cluster"
    )


def dashboard_link(client: Client | None) -> str | None:
    """The URL of the scheduler's HTTP server, or None without a client or HTTP server.

    (A cluster started here with ``dashboard=False`` answers only ``/health`` there; the
    dashboard pages themselves also need bokeh.)
    """
    if client is None or "dashboard" not in client.scheduler_info().get("services", {}):
        return None
    return client.dashboard_link


def has_gpus(client: Client | None) -> bool:
    """Whether workers declare a ``GPU`` resource (then compute with ``resources={"GPU": 1}``).

    Waits for the first worker when none is connected yet (a SLURM job still queued).
    """
    if client is None:
        return False
    client.wait_for_workers(1)
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers)


def gpu_count() -> int:
    """CUDA devices visible to this process (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


# --- closing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _closed_quietly(client: Client, cluster=None) -> Iterator[None]:
    """When the block ends in an exception (an error, Ctrl-C, SIGTERM), close ``client`` and
    ``cluster`` (started here: its workers too) without distributed's log lines about the
    tasks that were still running (cancelled tasks, closed connections, unretrieved futures):
    the exception is the one thing to report."""
    try:
        yield
    except BaseException:
        held = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        try:
            if cluster is not None:
                with contextlib.suppress(Exception):
                    client.run(logging.disable, logging.CRITICAL, on_error="ignore")
            client.close()
            if cluster is not None:
                cluster.close()
            gc.collect()  # asyncio logs unretrieved futures when they are collected
        finally:
            logging.disable(held)
        raise


# --- local -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _local_client(workers, threads_per_worker, memory_limit, tls, dashboard, slots):
    """A LocalCluster and its client. The worker processes are forked by a forkserver in a
    session of its own (:mod:`daskstyle.compute._forkserver`): a signal to this process's group
    (Ctrl-C in a terminal, ``kill -TERM -PGID``) reaches this process only, which then closes
    the cluster. A signal that arrives while the cluster starts acts once it has started."""
    received = []
    credentials = security.temporary() if tls else None
    forked = {"distributed.worker.multiprocessing-method": "forkserver"}
    with dask.config.set({**forked, **security.http_settings(dashboard)}):
        # held, not raised: an exception would leave the starting cluster half made
        with _signal_handler(lambda signum, frame: received.append(signum)):
            _start_forkserver()
            # each nanny sets Dask's pre-spawn variables in this process: restored after
            with allocator.starting_workers(), warnings.catch_warnings():
                # a taken dashboard port: distributed takes a free one; the link says which
                warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
                cluster = _local_cluster(
                    workers, threads_per_worker, memory_limit, credentials, dashboard, slots
                )
        trusted = security.trusted(credentials)
        with cluster, Client(cluster) as client, trusted, _closed_quietly(client, cluster):
            for signum in received[:1]:
                signal.raise_signal(signum)  # to the handler it was held from
            yield client


@contextlib.contextmanager
def _signal_handler(handler, signals=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """``handler`` for ``signals`` while the block runs, in the main thread (elsewhere Python
    neither delivers signals nor lets their handlers be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, previous in held.items():
            signal.signal(sig, previous)


def _start_forkserver() -> None:
    """Start this process's forkserver (once) with Ctrl-C ignored and with distributed's
    pre-spawn environment (one OpenMP thread, ...) and :mod:`daskstyle.compute.allocator`'s, which
    the processes it forks inherit; it moves itself to a session of its own first thing."""
    from multiprocessing import forkserver

    from distributed.utils import get_mp_context

    get_mp_context().set_forkserver_preload([f"{__package__}._forkserver", "distributed"])
    environ = dask.config.get("distributed.nanny.pre-spawn-environ")  # as a nanny sets it
    # the server keeps the environment it started with; this process keeps its own
    with allocator.starting_workers(environ), _signal_handler(signal.SIG_IGN, [signal.SIGINT]):
        forkserver.ensure_running()


def _local_cluster(
    workers, threads_per_worker, memory_limit, credentials, dashboard, slots
) -> LocalCluster:
    gpus = gpu_count()
    if workers is None:
        workers = gpus or max(1, slots // 2)
    threads = threads_per_worker or max(1, (CPU_COUNT if gpus else slots) // workers)
    options = {
        "n_workers": workers,
        "threads_per_worker": threads,
        "memory_limit": "auto" if memory_limit is None else memory_limit,
        "host": LOOPBACK,
        # without the dashboard the scheduler still serves /health: on a free port, not 8787
        "dashboard_address": f"{LOOPBACK}:{DASHBOARD_PORT if dashboard else 0}",
        "scheduler_kwargs": {"dashboard": dashboard},
        "security": credentials,
        "silence_logs": logging.ERROR,  # workers' warnings are not the user's business
    }
    if not gpus:
        return LocalCluster(processes=True, **options)
    options["resources"] = {"GPU": 1}  # dask-cuda does not declare it by itself
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        if workers > 1:
            raise DaskstyleError(
                f"{workers} GPU workers need dask-cuda (one GPU each): pip install 'daskstyle[gpu]'"
            ) from None
        return LocalCluster(processes=True, **options)  # one worker on the first GPU
    return LocalCUDACluster(**options)


# --- SLURM through dask-jobqueue -----------------------------------------------------------------


def read_slurm_config(config: str | Path | None = None) -> dict:
    """The ``jobqueue: slurm:`` settings of a dask-jobqueue YAML (``config``, else
    ``$DASKSTYLE_SLURM_CONFIG``, else the template shipped in the package, also at
    ``cluster/slurm.yaml`` of a source checkout)."""
    import yaml

    path = Path(config or os.environ.get(SLURM_CONFIG_ENV) or SLURM_CONFIG_DEFAULT)
    try:
        text = path.read_text()
    except OSError as err:
        raise DaskstyleError(
            f"cannot read the SLURM configuration {path} ({err.strerror}): pass another with "
            f"--slurm-config or ${SLURM_CONFIG_ENV}; cluster/slurm.yaml is the template"
        ) from None
    try:
        settings = (yaml.safe_load(text) or {})["jobqueue"]["slurm"]
    except yaml.YAMLError as err:
        raise DaskstyleError(f"{path} is not valid YAML: {one_line(err)}") from None
    except (KeyError, TypeError):
        raise DaskstyleError(
            f"{path} has no 'jobqueue: slurm:' section (see cluster/slurm.yaml)"
        ) from None
    if not isinstance(settings, dict):
        raise DaskstyleError(f"{path}: 'jobqueue: slurm:' must be a mapping of settings")
    return settings


@contextlib.contextmanager
def _slurm_cluster(settings: dict, tls: bool = True, dashboard: bool = False):
    """A SLURMCluster (no jobs yet) for ``settings``; the settings stay in the Dask config while
    it runs, because dask-jobqueue reads them again for every job it submits. With ``tls``,
    the jobs read the cluster's credentials from files only the user can read, under the
    YAML's ``shared-temp-directory`` (default ``~/.cache/daskstyle/tls``)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise DaskstyleError(
            "--cluster slurm needs dask-jobqueue: pip install 'daskstyle[slurm]'"
        ) from None
    settings = dict(settings)
    prologue = settings.get("job-script-prologue") or []  # the YAML's lines may override ours
    settings["job-script-prologue"] = [*allocator.job_exports(), *prologue]
    scheduler = dict(settings.pop("scheduler-options", None) or {})
    interface = settings.get("interface")
    if interface in (None, "lo"):  # single node: everything on the loopback interface
        settings["interface"] = "lo"
        scheduler.setdefault("host", LOOPBACK)
    elif "host" not in scheduler:
        scheduler.setdefault("interface", interface)
    host = scheduler.get("host") or _interface_ip(scheduler["interface"])
    scheduler.setdefault("dashboard_address", f"{host}:{DASHBOARD_PORT if dashboard else 0}")
    scheduler.setdefault("dashboard", dashboard)
    flat = {f"jobqueue.slurm.{key}": value for key, value in settings.items()}
    base = settings.get("shared-temp-directory")
    credentials = security.written(security.temporary(), base) if tls else contextlib.nullcontext()
    with credentials as files, dask.config.set({**flat, **security.http_settings(dashboard)}):
        # with security, jobqueue uses tls:// everywhere and passes the files to the workers
        cluster = SLURMCluster(scheduler_options=scheduler, security=files)
        with cluster:
            yield cluster


def slurm_job_script(config: str | Path | None = None, *, tls: bool = False) -> str:
    """The job script SLURM would get for ``config`` (nothing is submitted). A run's jobs get
    ``tls=True``'s: with the paths of its credential files (which exist while it runs)."""
    with _slurm_cluster(read_slurm_config(config), tls=tls, dashboard=False) as cluster:
        return cluster.job_script()


def _check_sbatch(cluster) -> None:
    """Ask SLURM whether it would accept the job (``sbatch --test-only``): a wrong partition,
    account or gres then fails here in one line instead of in a background task."""
    if shutil.which("sbatch") is None:
        raise DaskstyleError(
            "sbatch is not on PATH: run on a SLURM login node (a trial one-node SLURM: "
            "cluster/start-single-node-slurm.sh)"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as script:
        script.write(cluster.job_script())
        script.flush()
        test = subprocess.run(
            ["sbatch", "--test-only", script.name], check=False, capture_output=True, text=True
        )
    if test.returncode != 0:
        raise DaskstyleError(
            f"SLURM refuses the worker job: {one_line(test.stderr)} (edit the SLURM YAML)"
        )


def _interface_ip(interface: str) -> str:
    from distributed.utils import get_ip_interface

    try:
        return get_ip_interface(interface)
    except (KeyError, ValueError) as err:
        raise DaskstyleError(
            f"network interface {interface!r} of the SLURM YAML: {one_line(err)}"
        ) from None

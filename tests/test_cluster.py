"""daskstyle.compute.cluster: where clusters listen, that work runs on them, the SLURM job script, errors.

The real-SLURM test runs only where `sinfo` shows an idle node (cluster/start-single-node-slurm.sh).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dask
import dask.array as da
import distributed
import psutil
import pytest
import yaml

from daskstyle.compute import cluster
from daskstyle.compute.allocator import REUSE_FREED_MEMORY
from daskstyle.compute.cluster import (
    dashboard_link,
    has_gpus,
    open_client,
    read_slurm_config,
    slurm_job_script,
)
from daskstyle.core.errors import DaskstyleError, InputError

SHIPPED_YAML = Path(__file__).resolve().parent.parent / "cluster" / "slurm.yaml"
LOOPBACK_IPS = {"127.0.0.1", "::1"}


def listening():
    """(pid, ip, port) of the listening inet sockets of this process and its children."""
    me = psutil.Process()
    found = set()
    for proc in [me, *me.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((proc.pid, conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            pass
    return found


def host_of(address):
    return address.split("://")[1].rsplit(":", 1)[0]


def one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


def write_slurm_yaml(path, **settings):
    path.write_text(yaml.safe_dump({"jobqueue": {"slurm": settings}}))
    return path


def tiny_sum(client, **compute):
    x = da.arange(1000, chunks=100)
    assert client.compute(x.sum(), **compute).result() == 499500


# --- local ----------------------------------------------------------------------------------------


def test_local_cluster_listens_on_loopback_only():
    before = listening()
    with open_client("local") as client:
        opened = listening() - before
        info = client.scheduler_info()
        assert host_of(info["address"]) == "127.0.0.1"
        link = dashboard_link(client)
        assert link.startswith("http://127.0.0.1:")
        for worker in info["workers"]:
            assert host_of(worker) == "127.0.0.1"
        # every socket the cluster opened: scheduler, dashboard, nanny, worker
        ports = {port for _, _, port in opened}
        assert int(info["address"].rsplit(":", 1)[1]) in ports
        assert int(link.split(":")[2].split("/")[0]) in ports
        assert len(opened) >= 4, opened
        assert {ip for _, ip, _ in opened} <= LOOPBACK_IPS, opened

        tiny_sum(client)
        assert has_gpus(client) == (cluster.gpu_count() > 0)
        assert len(info["workers"]) == (cluster.gpu_count() or max(1, dask.system.CPU_COUNT // 2))
    assert listening() - before == set()  # and closed afterwards


def test_local_workers_keep_freed_memory_for_the_next_tensor():
    """daskstyle.compute.allocator's settings reach a local cluster's workers (over Dask's own
    MALLOC_TRIM_THRESHOLD_), and this process keeps its environment."""
    before = dict(os.environ)
    with open_client("local", workers=1, threads_per_worker=1, dashboard=False) as client:
        assert client.submit(_freed_memory_kept, pure=False).result()
        started_with = client.submit(_environment_at_start, pure=False).result()
        # glibc rewrites the variable as it reads it; the first tunable stays in view
        assert started_with["GLIBC_TUNABLES"].startswith("glibc.malloc.tcache_count=0")
    assert dict(os.environ) == before


def _environment_at_start() -> dict[str, str]:
    """The environment this process was started with, which glibc read (a Dask worker's
    ``os.environ`` is its nanny's, set again)."""
    with open("/proc/self/environ", "rb") as file:
        pairs = file.read().decode().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _freed_memory_kept() -> bool:
    """Whether 128 MiB freed stay in this process (glibc's default would unmap them)."""
    import numpy as np

    process = psutil.Process()
    before = process.memory_info().rss
    block = np.ones(2**27 // 8)
    del block
    return process.memory_info().rss - before > 2**26


def test_local_cluster_with_tls():
    pytest.importorskip("cryptography")
    with open_client("local", workers=1, threads_per_worker=1, tls=True, dashboard=False) as client:
        address = client.scheduler_info()["address"]
        assert address.startswith("tls://127.0.0.1:")
        assert all(w.startswith("tls://127.0.0.1:") for w in client.scheduler_info()["workers"])
        tiny_sum(client)


def test_gpu_workers_declare_the_gpu_resource(monkeypatch):
    """With GPUs and no dask-cuda: one worker with resources GPU=1; tasks asking for it run."""
    monkeypatch.setattr(cluster, "gpu_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # not importable
    with open_client("local", threads_per_worker=1, dashboard=False) as client:
        workers = client.scheduler_info()["workers"].values()
        assert [w["resources"] for w in workers] == [{"GPU": 1}]
        assert has_gpus(client)
        tiny_sum(client, resources={"GPU": 1})
    monkeypatch.setattr(cluster, "gpu_count", lambda: 2)
    with pytest.raises(DaskstyleError) as excinfo, open_client("local", dashboard=False):
        pass
    one_line_error(excinfo, "dask-cuda", "pip install")


@pytest.mark.parametrize("spec", [None, "sync", "threads"])
def test_no_cluster_yields_none(spec):
    with open_client(spec) as client:
        assert client is None
        assert dashboard_link(client) is None
        assert not has_gpus(client)


def test_connect_to_a_running_scheduler_by_address_and_by_file(tmp_path):
    with open_client("local", workers=1, threads_per_worker=1, dashboard=False) as first:
        address = first.scheduler_info()["address"]
        first.write_scheduler_file(str(tmp_path / "scheduler.json"))
        for spec in (address, str(tmp_path / "scheduler.json")):
            with open_client(spec) as client:
                assert client.scheduler_info()["address"] == address
                tiny_sum(client)
        assert first.status == "running"  # leaving the inner client left the cluster alone


# --- SLURM through dask-jobqueue ---------------------------------------------------------------


def test_shipped_slurm_yaml_gives_the_expected_job_script(monkeypatch, tmp_path):
    pytest.importorskip("dask_jobqueue")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: rendering submits nothing
    for name in REUSE_FREED_MEMORY:  # as a fresh process has them (a local nanny sets some)
        monkeypatch.delenv(name, raising=False)
    settings = yaml.safe_load(SHIPPED_YAML.read_text())["jobqueue"]["slurm"]
    script = slurm_job_script(SHIPPED_YAML)
    lines = script.splitlines()
    for line in (
        f"#SBATCH -p {settings['queue']}",
        f"#SBATCH -A {settings['account']}",
        f"#SBATCH -t {settings['walltime']}",
        f"#SBATCH --cpus-per-task={settings['job-cpu']}",
        "#SBATCH --gres=gpu:1",
        *settings["job-script-prologue"],
    ):
        assert line in lines, (line, script)
    exports = [f"export {name}={value}" for name, value in REUSE_FREED_MEMORY.items()]
    first = lines.index(settings["job-script-prologue"][0])
    assert lines[first - len(exports) : first] == exports  # malloc as local workers; YAML last
    worker = lines[-1]
    assert "--resources GPU=1" in worker
    assert f"--nthreads {settings['cores']}" in worker
    assert " tcp://127.0.0.1:" in worker and "--interface lo" in worker  # single node by default


def test_slurm_config_from_environment_and_tls_job_script(monkeypatch, tmp_path):
    pytest.importorskip("dask_jobqueue")
    pytest.importorskip("cryptography")
    config = write_slurm_yaml(
        tmp_path / "site.yaml", cores=2, memory="4GB", queue="short", account=None,
        **{"job-directives-skip": ["--mem"], "shared-temp-directory": str(tmp_path)},
    )  # fmt: skip
    monkeypatch.setenv(cluster.SLURM_CONFIG_ENV, str(config))
    assert read_slurm_config()["queue"] == "short"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # the user's own value reaches the jobs
    script = slurm_job_script(tls=True)
    assert "export MALLOC_ARENA_MAX=2" in script.splitlines()
    assert "#SBATCH -p short" in script
    assert "#SBATCH -A" not in script and "--mem" not in script.replace("--memory-limit", "")
    assert " tls://127.0.0.1:" in script and "--tls-ca-file" in script


def slurm_idle_reason():
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM here (sinfo/sbatch not on PATH); cluster/start-single-node-slurm.sh starts one"
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], check=False, capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 10 s"
    if not {"idle", "mixed"} & set(states.stdout.split()):
        said = " ".join((states.stdout or states.stderr).split())[:200]
        return f"no idle SLURM node (sinfo: {said}); cluster/start-single-node-slurm.sh starts one"
    return None


@pytest.mark.slow
def test_real_slurm_run(tmp_path):
    pytest.importorskip("dask_jobqueue")
    reason = slurm_idle_reason()
    if reason:
        pytest.skip(reason)
    settings = {"cores": 1, "memory": "1GB", "walltime": "00:05:00",
                "log-directory": str(tmp_path), "local-directory": str(tmp_path)}  # fmt: skip
    config = write_slurm_yaml(tmp_path / "one-node.yaml", **settings)
    with open_client("slurm", config=config, jobs=1) as client:
        job_id = client.submit(lambda: os.environ.get("SLURM_JOB_ID"), pure=False).result()
        assert job_id  # the task ran inside a SLURM job
        assert host_of(client.scheduler_info()["address"]) == "127.0.0.1"
        assert [host_of(w) for w in client.scheduler_info()["workers"]] == ["127.0.0.1"]
        assert dashboard_link(client).startswith("http://127.0.0.1:")
        tiny_sum(client)
        assert not has_gpus(client)

    write_slurm_yaml(config, **settings, queue="no-such-partition")
    with pytest.raises(DaskstyleError) as excinfo, open_client("slurm", config=config, jobs=1):
        pass
    one_line_error(excinfo, "SLURM refuses", "no-such-partition")


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_cluster_spec():
    with pytest.raises(InputError) as excinfo, open_client("kubernetes"):
        pass
    one_line_error(excinfo, "unknown cluster 'kubernetes'", "slurm", "tcp://")


@pytest.mark.parametrize(
    "text, words",
    [
        (None, ["cannot read", "missing.yaml"]),
        ("jobqueue: [unclosed\n  - x: :\n", ["not valid YAML"]),
        ("distributed:\n  workers: 2\n", ["no 'jobqueue: slurm:' section"]),
    ],
    ids=["missing", "invalid", "no-section"],
)
def test_bad_slurm_config(tmp_path, text, words):
    path = tmp_path / "missing.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DaskstyleError) as excinfo, open_client("slurm", config=path):
        pass
    one_line_error(excinfo, *words)


def test_missing_dask_jobqueue(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(DaskstyleError) as excinfo, open_client("slurm", config=SHIPPED_YAML):
        pass
    one_line_error(excinfo, "dask-jobqueue", "pip install")


def test_worker_options_with_slurm_are_refused():
    with pytest.raises(InputError) as excinfo, open_client("slurm", config=SHIPPED_YAML, workers=4):
        pass
    one_line_error(excinfo, "SLURM YAML", "--jobs")


def test_unreachable_scheduler():
    quick = dask.config.set({"distributed.comm.timeouts.connect": "0.5s"})
    with quick, pytest.raises(DaskstyleError) as excinfo, open_client("tcp://127.0.0.1:9"):
        pass
    one_line_error(excinfo, "cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def test_network_tasks_run_only_on_workers_with_a_gpu(vgg19_state, images, monkeypatch):
    """With a GPU worker in the cluster, every tile task asks for it (and fusion keeps that)."""
    import daskstyle
    from daskstyle.engine import featurenet

    ran_on = []
    original = featurenet.get_model

    def spy(spec, state):
        ran_on.append(distributed.get_worker().name)
        return original(spec, state)

    monkeypatch.setattr(featurenet, "get_model", spy)
    workers = {
        "gpu": {"cls": distributed.Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu": {"cls": distributed.Worker, "options": {"nthreads": 2}},
    }
    scheduler = {
        "cls": distributed.Scheduler,
        "options": {"host": "127.0.0.1", "dashboard_address": None},
    }
    canvas, content, style = images(64, 80)
    with (
        distributed.SpecCluster(workers=workers, scheduler=scheduler) as spec_cluster,
        distributed.Client(spec_cluster),
    ):
        layers = {"content_layer": "relu2_1", "style_layers": ("relu1_1", "relu2_1")}
        daskstyle.loss_and_grad(canvas, content, style, tile=16, weights=vgg19_state, **layers)
    assert set(ran_on) == {"gpu"}
    assert len(ran_on) == 20 + 20 + 42 + 20  # stats, gradients, style, content: each tile once


def test_without_dashboard_no_fixed_port_is_taken():
    before = listening()
    with open_client("local", workers=1, threads_per_worker=1, dashboard=False) as client:
        ports = {port for _, _, port in listening() - before}
        assert cluster.DASHBOARD_PORT not in ports, ports
        tiny_sum(client)


def test_a_single_tile_uses_every_thread_of_its_worker(vgg19_state, images, monkeypatch):
    """Workers run torch on one thread per task; a step's only network task takes them all."""
    import torch

    import daskstyle
    from daskstyle.engine import kernels

    seen = []
    original = kernels.whole_loss_and_grad

    def spy(*args):
        seen.append(torch.get_num_threads())
        return original(*args)

    monkeypatch.setattr(kernels, "whole_loss_and_grad", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker process
    try:
        canvas, content, style = images(32, 48)
        layers = {"content_layer": "relu1_1", "style_layers": ("relu1_1",)}
        with distributed.Client(processes=False, n_workers=1, threads_per_worker=3,
                                dashboard_address=None):  # fmt: skip
            daskstyle.loss_and_grad(canvas, content, style, weights=vgg19_state, **layers)
        assert seen == [3] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_local_cluster_runs_no_more_tasks_at_once_than_fit_in_memory():
    if cluster.gpu_count():
        pytest.skip("with GPUs a local cluster has one worker per GPU")
    with open_client("local", dashboard=False, max_tasks=1) as client:
        workers = client.scheduler_info()["workers"].values()
        assert [w["nthreads"] for w in workers] == [1]
    with open_client("threads", max_tasks=1):
        assert dask.config.get("num_workers") == 1


def test_the_default_slurm_config_ships_inside_the_package(monkeypatch):
    from daskstyle.compute import cluster

    monkeypatch.delenv(cluster.SLURM_CONFIG_ENV, raising=False)
    package = Path(cluster.__file__).parents[1]
    assert cluster.SLURM_CONFIG_DEFAULT.is_relative_to(package)  # a wheel has it
    assert read_slurm_config() == read_slurm_config(SHIPPED_YAML)  # cluster/slurm.yaml is it too

"""Who may use the clusters daskstyle starts: only its own process and workers (issue 28).

Another user of the machine reaches 127.0.0.1 as well as we do; here a second process plays
that user, without the credentials, and must neither connect nor run code.
"""

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import dask
import psutil
import pytest
import yaml

from daskstyle.compute import cluster, security
from daskstyle.compute.cluster import dashboard_link, open_client
from daskstyle.compute.executor import DASHBOARD_OFF, Executor
from daskstyle.compute.scheduler_process import threads_beside_a_scheduler
from daskstyle.core.errors import DaskstyleError
from daskstyle.frontends import cli

from .conftest import SHALLOW_RUN_OPTIONS

ATTACKER = r'''
"""Another user's process: try to run os.getpid on the scheduler's workers, on each worker and
on each nanny, with each kind of credentials, all at once; print what happened as JSON."""
import asyncio, json, os, pickle, ssl, sys, tempfile

from distributed.comm import connect
from distributed.security import Security

addresses, stolen = json.loads(sys.argv[1]), json.loads(sys.argv[2])


def context(ca=None, cert=None, key=None):
    """A TLS client context: checks the server with ``ca`` (else not at all), shows ``cert``."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if ca is None:
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


folder = tempfile.mkdtemp()
own = Security.temporary()  # a certificate of the attacker's own making
for name in ("cert", "key"):
    with open(f"{folder}/{name}", "w") as file:
        file.write(getattr(own, f"tls_client_{name}"))
KINDS = {
    "none": ("tls", context()),
    "plain-tcp": ("tcp", None),
    "own-certificate": ("tls", context(cert=f"{folder}/cert", key=f"{folder}/key")),
    "cluster-certificate-only": ("tls", context(ca=stolen["ca"])),
    "stolen-key": ("tls", context(ca=stolen["ca"], cert=stolen["cert"], key=stolen["key"])),
}
RUN = {"op": "run", "function": pickle.dumps(os.getpid), "reply": True}


async def attempt(role, address, protocol, ssl_context):
    address = protocol + "://" + address.split("://")[1]
    args = {"ssl_context": ssl_context} if ssl_context else {}
    try:
        comm = await connect(address, timeout=1, **args)
        message = {"op": "broadcast", "msg": RUN} if role == "scheduler" else RUN
        await comm.write(message)
        return "RAN " + repr(await asyncio.wait_for(comm.read(), 2))
    except Exception as err:
        return "refused " + type(err).__name__


async def main():
    tries = [(kind, role, address, *how) for kind, how in KINDS.items()
             for role, address in addresses]
    said = await asyncio.gather(*(attempt(*how) for _, *how in tries))
    return {f"{kind} {role}": what for (kind, role, *_), what in zip(tries, said)}


print(json.dumps(asyncio.run(main())))
'''


@pytest.fixture(scope="class")
def default_cluster():
    """The local cluster as ``--cluster local`` starts it, with one worker (this machine)."""
    with open_client("local", workers=1, threads_per_worker=1) as client:
        yield client


def attack(client, tmp_path):
    """What the second process got from each address of ``client``'s cluster with each kind
    of credentials; "stolen-key" has this process's own (files of mode 0600)."""
    info = client.scheduler_info()
    addresses = [("scheduler", info["address"])]
    for address, worker in info["workers"].items():
        addresses += [("worker", address)]
        addresses += [("nanny", worker["nanny"])] if worker.get("nanny") else []
    stolen = {}
    held = client.security
    for name, pem in [("ca", held.tls_ca_file), ("cert", held.tls_client_cert),
                      ("key", held.tls_client_key)]:  # fmt: skip
        path = tmp_path / f"{name}.pem"
        path.touch(mode=0o600)
        path.write_text(pem)
        stolen[name] = str(path)
    second = subprocess.run(
        [sys.executable, "-c", ATTACKER, json.dumps(addresses), json.dumps(stolen)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    return json.loads(second.stdout)


def http_status(client, path):
    port = client.scheduler_info()["services"]["dashboard"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


class TestTheDefaultLocalCluster:
    """Closed before the tests below start clusters of their own (two daskstyle clusters open
    in one process at once lose tasks, TLS or not)."""

    def test_another_process_without_the_credentials_can_neither_connect_nor_run_code(
        self, default_cluster, tmp_path
    ):
        said = attack(default_cluster, tmp_path)
        assert len(said) == 5 * 3  # scheduler, worker, nanny
        for attempt, what in said.items():
            if attempt.startswith("stolen-key"):
                # the same attack with the credentials runs code: the refusals are the TLS ones
                assert what.startswith("RAN ") and "'OK'" in what, (attempt, what)
            else:
                assert what.startswith("refused "), (attempt, what)
        worker_pid = int(said["stolen-key worker"].split("'result': ")[1].split("}")[0])
        assert worker_pid != os.getpid()

    def test_the_default_cluster_speaks_tls_everywhere(self, default_cluster):
        info = default_cluster.scheduler_info()
        addresses = [info["address"], *info["workers"]]
        addresses += [w["nanny"] for w in info["workers"].values()]
        assert all(a.startswith("tls://127.0.0.1:") for a in addresses), addresses
        assert default_cluster.security.require_encryption

    def test_daskstyle_clients_in_this_process_hold_the_credentials(
        self, default_cluster, tmp_path
    ):
        assert default_cluster.submit(os.getpid, pure=False).result() != os.getpid()
        address = default_cluster.scheduler_info()["address"]
        scheduler_file = tmp_path / "scheduler.json"
        scheduler_file.write_text(json.dumps({"type": "Scheduler", "address": address}))
        for spec in (address, str(scheduler_file)):  # what the Python API joins inside the block
            with open_client(spec) as second:
                assert second.submit(sum, [1, 2], pure=False).result() == 3

    @pytest.mark.parametrize(
        "path", ["/status", "/info/main/workers.html", "/json/identity.json", "/metrics"]
    )
    def test_the_dashboard_is_off_by_default(self, default_cluster, path):
        assert http_status(default_cluster, "/health") == 200  # the server answers: pages are off
        assert http_status(default_cluster, path) == 404


def test_the_simulations_cluster_is_as_closed_with_its_scheduler_in_a_process_apart(tmp_path):
    with threads_beside_a_scheduler(2) as (client, scheduler):
        assert scheduler != os.getpid() and psutil.pid_exists(scheduler)
        info = client.scheduler_info()
        assert all(a.startswith("tls://127.0.0.1:") for a in [info["address"], *info["workers"]])
        said = attack(client, tmp_path)
        assert len(said) == 5 * 2  # the scheduler and the workers (threads here: no nannies)
        for attempt, what in said.items():
            assert what.startswith("RAN " if attempt.startswith("stolen-key") else "refused ")
        assert http_status(client, "/health") == 200 and http_status(client, "/status") == 404
    assert not psutil.pid_exists(scheduler)  # ended with the cluster


def test_credentials_leave_with_the_cluster():
    with open_client("local", workers=1, threads_per_worker=1) as client:
        address = client.scheduler_info()["address"]
    quick = {"distributed.comm.timeouts.connect": "1s"}
    with dask.config.set(quick), pytest.raises(DaskstyleError) as excinfo:
        with open_client(address):  # closed; and this process no longer presents its key
            pass
    assert str(excinfo.value).startswith(f"the scheduler at {address} speaks TLS: give its CA")
    assert dask.config.get("distributed.comm.tls.client.key") is None


def test_the_cli_says_the_dashboard_is_off_and_the_run_paints(
    pictures, weights_file, tmp_path, capsys
):
    out = tmp_path / "out.png"
    argv = ["run", *map(str, pictures), "-o", str(out), "--network", "vgg19", "--weights",
            str(weights_file), "--r0", "48", "--max-iters", "2", "--workers", "1",
            *SHALLOW_RUN_OPTIONS]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert DASHBOARD_OFF in printed and "--dashboard" in DASHBOARD_OFF
    assert not any("http://" in line for line in printed)
    assert out.is_file()


# --- the TOML [cluster] keys ------------------------------------------------------------------


PRODUCTION = 'kind = "production"\ncontent = "example"\nstyle = "example"\noutput = "o.tif"\n'


@pytest.mark.parametrize(
    "table, protocol, pages",
    [
        ("", "tls", 404),  # the defaults
        ("tls = true\ndashboard = false\n", "tls", 404),
        ("tls = false\n", "tcp", 404),
        ("dashboard = true\n", "tls", 200),
    ],
    ids=["defaults", "explicit", "no-tls", "dashboard"],
)
def test_pipeline_cluster_keys(tmp_path, table, protocol, pages):
    from daskstyle.frontends.pipeline import load

    path = tmp_path / "p.toml"
    path.write_text(PRODUCTION + "[cluster]\nworkers = 1\nthreads_per_worker = 1\n" + table)
    options = load(path).cluster.model_dump(exclude_none=True)  # as a production passes them
    with Executor(**options).open() as session:
        assert session.client.scheduler_info()["address"].startswith(f"{protocol}://127.0.0.1:")
        assert http_status(session.client, "/info/main/workers.html") == pages
        said = [line for line in session.lines if line.startswith("Dask dashboard")]
        if pages == 404:
            assert said == [DASHBOARD_OFF]
        else:
            assert said == [f"Dask dashboard: {dashboard_link(session.client)} (no password: "
                            "anyone who can reach this port can open it)"]  # fmt: skip


# --- SLURM ------------------------------------------------------------------------------------


def worker_tls_files(script):
    words = script.splitlines()[-1].split()
    return {word: words[i + 1] for i, word in enumerate(words) if word.startswith("--tls-")}


@pytest.mark.parametrize("base", [None, "yaml"], ids=["home", "shared-temp-directory"])
def test_slurm_jobs_read_credentials_only_the_user_can_read(tmp_path, monkeypatch, base):
    pytest.importorskip("dask_jobqueue")
    monkeypatch.setattr(security, "CREDENTIALS_DIR", tmp_path / "home-cache")
    settings = {"cores": 1, "memory": "1GB", "queue": "debug", "account": None}
    if base:
        settings["shared-temp-directory"] = str(tmp_path / "shared")
    (tmp_path / "site.yaml").write_text(yaml.safe_dump({"jobqueue": {"slurm": settings}}))
    config = cluster.read_slurm_config(tmp_path / "site.yaml")
    with cluster._slurm_cluster(config) as slurm:  # as open_client("slurm") makes it
        script = slurm.job_script()
        assert slurm.scheduler_address.startswith("tls://127.0.0.1:")
        files = worker_tls_files(script)
        assert set(files) == {"--tls-ca-file", "--tls-cert", "--tls-key"}, script
        assert "PRIVATE KEY" not in script  # paths only, never the key itself
        folder = os.path.dirname(files["--tls-key"])
        assert os.path.dirname(folder) == str(tmp_path / ("shared" if base else "home-cache"))
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        for path in files.values():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert os.stat(path).st_uid == os.getuid()
        assert "PRIVATE KEY" in open(files["--tls-key"]).read()
    assert not os.path.exists(folder)  # gone with the cluster


def test_slurm_without_tls_on_request(tmp_path):
    pytest.importorskip("dask_jobqueue")
    settings = {"jobqueue": {"slurm": {"cores": 1, "memory": "1GB"}}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(settings))
    with cluster._slurm_cluster(cluster.read_slurm_config(tmp_path / "site.yaml"), tls=False) as s:
        assert s.scheduler_address.startswith("tcp://127.0.0.1:")
        assert worker_tls_files(s.job_script()) == {}


# --- a scheduler file that is not one ----------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [b"this is not json\n", b"", b"\x00\xff\xfe junk", b"[1, 2]", b'{"type": "Scheduler"}',
     b'{"address": 5}', b'{"address": "127.0.0.1"}'],
    ids=["text", "empty", "binary", "list", "no-address", "number", "no-protocol"],
)  # fmt: skip
def test_a_garbage_scheduler_file_is_one_line(pictures, weights_file, tmp_path, capsys, junk):
    scheduler_file = tmp_path / "sched.json"
    scheduler_file.write_bytes(junk)
    argv = ["run", *map(str, pictures), "-o", str(tmp_path / "out.png"), "--network", "vgg19",
            "--weights", str(weights_file), "--cluster", str(scheduler_file)]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"daskstyle: error: {scheduler_file} is not a Dask scheduler file")
    assert "tcp://HOST:PORT" in err
    assert scheduler_file.read_bytes() == junk  # the user's file untouched

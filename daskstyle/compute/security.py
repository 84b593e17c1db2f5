"""Who may use the clusters that daskstyle starts: this process and the workers it starts.

A Dask scheduler runs whatever code a client sends it, and any process that reaches its port
is a client: on a shared machine, every other user. So clusters started here speak TLS and
require a certificate signed by a key made for each cluster (``Security.temporary()``), held in
this process's memory, given to local workers as they are forked and to SLURM jobs in files
only the user can read. Without it a connection fails its handshake.

The dashboard has no authentication at all (TLS on its port would only encrypt it), so it is
off unless asked for; off, the scheduler's HTTP port answers ``/health`` only (no pages
listing workers, logs or call stacks).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dask
from distributed.security import Security

CREDENTIALS_DIR = Path.home() / ".cache" / "daskstyle" / "tls"  # seen from compute nodes
HEALTH_ONLY = {"distributed.scheduler.http.routes": ["distributed.http.health"]}
_ROLES = ("client", "scheduler", "worker")


def temporary() -> Security:
    """A fresh certificate and key for one cluster, required of every connection."""
    return Security.temporary()


def http_settings(dashboard: bool) -> dict:
    """The Dask settings under which a scheduler starts with or without its dashboard."""
    return {} if dashboard else HEALTH_ONLY


@contextlib.contextmanager
def trusted(security: Security | None) -> Iterator[None]:
    """While the block runs, clients made in this process without credentials of their own
    (``Client("tls://...")``, a scheduler file) present ``security``'s: the cluster's address
    is usable here, and only here."""
    if security is None:
        yield
        return
    settings = {
        "distributed.comm.tls.ca-file": security.tls_ca_file,
        "distributed.comm.tls.client.cert": security.tls_client_cert,
        "distributed.comm.tls.client.key": security.tls_client_key,
    }
    with dask.config.set(settings):
        yield


@contextlib.contextmanager
def written(security: Security, base: str | Path | None = None) -> Iterator[Security]:
    """``security`` as files for workers that start in SLURM jobs: mode 0600 in a fresh 0700
    directory under ``base`` (default :data:`CREDENTIALS_DIR`, which the compute nodes must
    see), removed when the block ends."""
    base = Path(os.path.expandvars(base or CREDENTIALS_DIR)).expanduser()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="cluster-", dir=base) as folder:  # 0700
        pems = {"ca.pem": security.tls_ca_file, "cert.pem": security.tls_worker_cert,
                "key.pem": security.tls_worker_key}  # fmt: skip
        for name, pem in pems.items():
            descriptor = os.open(Path(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(pem)
        paths = {f"tls_{role}_{part}": f"{folder}/{part}.pem"
                 for role in _ROLES for part in ("cert", "key")}  # fmt: skip
        yield Security(require_encryption=True, tls_ca_file=f"{folder}/ca.pem", **paths)

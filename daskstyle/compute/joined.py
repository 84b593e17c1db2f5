"""Joining a Dask scheduler that is already running, by address or by scheduler file.

Failures end in one line: an unreachable scheduler, a file that is not a scheduler file, a
``tls://`` scheduler without the certificates that it requires of its clients.
"""

from __future__ import annotations

import json
from pathlib import Path

from distributed import Client
from distributed.security import Security

from daskstyle.core.errors import DaskstyleError, InputError
from daskstyle.core.text import one_line


def connect(spec: str) -> Client:
    """A client of the scheduler at ``spec``: ``tcp://HOST:PORT``, ``tls://HOST:PORT`` (TLS
    certificates from the Dask config) or a scheduler file ``*.json``."""
    address = scheduler_address(spec) if spec.endswith(".json") else spec
    security = Security()  # the Dask config's
    if address.startswith("tls://") and not (security.tls_ca_file and security.tls_client_cert):
        raise DaskstyleError(
            f"the scheduler at {address} speaks TLS: give its CA file and a client certificate "
            "and key in the Dask config (distributed.comm.tls.ca-file, .client.cert, .client.key)"
        )
    try:
        return Client(address, security=security)
    except (OSError, TimeoutError) as err:
        raise DaskstyleError(f"cannot reach the Dask scheduler at {spec}: {one_line(err)}") from err


def scheduler_address(path: str) -> str:
    """The ``address`` in the JSON that ``dask scheduler --scheduler-file`` wrote."""
    if not Path(path).is_file():
        raise InputError(f"no scheduler file {path}: is the scheduler running?")
    try:
        address = json.loads(Path(path).read_bytes())["address"]
    except (ValueError, KeyError, TypeError):
        address = None
    if not isinstance(address, str) or "://" not in address:
        raise InputError(
            f"{path} is not a Dask scheduler file (JSON with the scheduler's address): pass the "
            "file that `dask scheduler --scheduler-file` wrote, or the address tcp://HOST:PORT"
        )
    return address

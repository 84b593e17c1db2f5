"""What every worker process of a local cluster starts with: this is the first module their
forkserver imports (its preload, see :func:`daskstyle.compute.cluster.open_client`), before it forks
them.

- A session of its own, out of reach of the signals sent to the command's process group
  (Ctrl-C in a terminal, ``kill -TERM -PGID``): the command stops its workers itself when it
  stops, and a killed command's workers exit when they lose it.
- No "Compute Failed" log record for a task that raised: the client raises the same error,
  which the caller reports once.
"""

import logging
import os


class _RaisedOnTheClient(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Compute Failed"))


os.setsid()
logging.getLogger("distributed.worker").addFilter(_RaisedOnTheClient())

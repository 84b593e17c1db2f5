"""Where the tiles run: the executor every caller goes through (local cluster,
SLURM, a scheduler, threads or synchronous), opening and closing clusters, who may use them
(security: TLS, no dashboard) and joining a running scheduler (joined), this machine's
hardware (memory, GPUs, bf16), the workers' allocator settings and the forkserver they start
from. It may import :mod:`daskstyle.networks` and the layers below it.
"""

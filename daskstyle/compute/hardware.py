"""What arithmetic this machine runs natively: bfloat16 on CUDA GPUs and on CPUs with
AVX512-BF16 or AMX; elsewhere torch emulates it, slower than float32."""

from __future__ import annotations

from pathlib import Path

#: CPU flags (as /proc/cpuinfo names them) under which bfloat16 convolutions run natively.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux), or an empty set where they cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def native_bf16() -> str | None:
    """Where bfloat16 runs natively on this machine, in words, or None."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return f"CUDA, {torch.cuda.get_device_name()}"
    found = [flag for flag in CPU_BF16_FLAGS if flag in cpu_flags()]
    return f"CPU with {' and '.join(found)}" if found else None


def precision_line(precision: str) -> str | None:
    """What ``precision`` means on this machine, as a line of a run's plan (None: exact)."""
    if precision == "bf16":
        where = native_bf16()
        if where is not None:
            return f"precision bf16: native on this machine ({where})"
        return ("precision bf16: emulated on this machine (no CUDA, AVX512-BF16 or AMX), "
                "slower than exact float32; use --precision exact")  # fmt: skip
    if precision == "tf32":
        return "precision tf32: TensorFloat-32 on CUDA GPUs, exact float32 elsewhere"
    return None


#: The part of the tiles' memory share that ``--tile auto`` plans with: the per-pixel bytes
#: of a gradient tile were measured at 512 px, and larger tiles on CPUs use up to 30 % more
#: (4096² in 1,376-px tiles, two at once: a peak of 18.8 GiB where 14 GiB were planned).
AUTO_HEADROOM = 0.75

#: A gradient tile's peak memory under each arithmetic, as a share of exact float32's: bf16
#: keeps activations in half the bytes but its backward still holds float32 copies (hed-vgg16,
#: whole 1024² and 2048² tiles on this CPU: 1393 and 1327 bytes per pixel against 1705 and
#: 1680 in float32, 0.79-0.82).
PRECISION_MEMORY_SHARE = {"exact": 1.0, "tf32": 1.0, "bf16": 0.82}


def tile_memory() -> tuple[float, str]:
    """The bytes one gradient tile may use on the device that runs it, and where that comes
    from in words: on a CUDA GPU its share of the GPU's memory (one tile at a time); on CPUs
    its share of this machine's memory, shared by its cores (a tile per core at once). The
    share is the tiles' (:data:`daskstyle.compute.executor.MEMORY_SHARE`) less the headroom of
    :data:`AUTO_HEADROOM`."""
    import torch
    from dask.system import CPU_COUNT

    from daskstyle.compute.executor import MEMORY_SHARE
    from daskstyle.core.text import readable

    fraction = MEMORY_SHARE * AUTO_HEADROOM
    share = f"{fraction * 100:.0f} %"
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        return fraction * total, f"{share} of the GPU's {readable(total)}"
    memory = host_memory()
    return (fraction * memory / CPU_COUNT,
            f"{share} of this machine's {readable(memory)} over {CPU_COUNT} cores")  # fmt: skip


def auto_tile(align: int, dtype: str, precision: str = "exact") -> tuple[int, str]:
    """``--tile auto``: the largest core tile side, on the tile grid (``align`` px or 16), whose
    gradient tile (with the largest halo of the known networks, state in ``dtype``, the
    network in ``precision``: :data:`PRECISION_MEMORY_SHARE`) fits :func:`tile_memory`; and
    why, in words."""
    import numpy as np

    from daskstyle.compute.executor import largest_halo
    from daskstyle.core import geometry
    from daskstyle.core.text import readable

    memory, where = tile_memory()
    itemsize, depth = np.dtype(dtype).itemsize, largest_halo()
    share = PRECISION_MEMORY_SHARE.get(precision, 1.0) if dtype == "float32" else 1.0
    multiple = max(geometry.TILE_MULTIPLE, align)
    tile = geometry.largest_tile(memory / share, depth, itemsize, multiple)
    needs = share * geometry.TILE_BYTES_PER_PIXEL * itemsize / 4 * (tile + 2 * depth) ** 2
    arithmetic = f"{precision} " if share != 1.0 else ""
    return tile, f"the largest whose {arithmetic}gradient tile ({readable(needs)}) fits {where}"


def host_memory() -> int:
    """This machine's memory in bytes (as Dask's workers count it: cgroup limits included)."""
    from distributed.system import MEMORY_LIMIT

    return MEMORY_LIMIT

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

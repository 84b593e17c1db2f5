"""The plan says whether bf16 runs natively on this machine, from the CPU's flags."""

from daskstyle.compute import hardware


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nflags : other\n")
    assert hardware.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert hardware.cpu_flags(tmp_path / "missing") == set()


def test_precision_line_says_native_or_emulated(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert (
        hardware.precision_line("bf16")
        == "precision bf16: native on this machine (CPU with amx_bf16)"
    )
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2"})
    line = hardware.precision_line("bf16")
    assert "emulated" in line and line.endswith("use --precision exact")
    assert hardware.precision_line("exact") is None
    assert "CUDA" in hardware.precision_line("tf32")

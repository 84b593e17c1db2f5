"""The package's folders are its layers: imports point only down (import-linter's layers
contract in pyproject.toml), and no module outgrows one job (400 lines)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_only_down_the_layers():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_every_module_stays_under_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "daskstyle").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}  # fmt: skip
    assert not long


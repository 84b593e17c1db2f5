"""Where the package's own files lie: the example pictures and the SLURM template."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

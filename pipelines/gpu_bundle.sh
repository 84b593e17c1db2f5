#!/usr/bin/env bash
# The wheels a lent GPU machine lacks (it has Python 3.12, torch, CuPy and no registry):
# dask, distributed, zarr and their small dependencies, at this environment's versions.
#   bash pipelines/gpu_bundle.sh [DIR]        (default .gpu-bundle, about 6 MB)
# then on the GPU machine, with DIR carried along:
#   pip install --no-index --no-deps DIR/*.whl && python pipelines/gpu_check.py --out "$OUT"
set -euo pipefail
dir=${1:-.gpu-bundle}
packages="dask distributed zarr donfig google-crc32c msgspec numcodecs tornado tblib zict
          locket partd platformdirs"
pins=$(python - $packages <<'PY'
import importlib.metadata as metadata, sys
installed = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
print(" ".join(f"{p}=={installed[p]}" for p in sys.argv[1:] if p in installed))
PY
)
rm -rf "$dir" && mkdir -p "$dir"
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform any -d "$dir" $pins
du -sh "$dir"

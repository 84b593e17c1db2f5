#!/usr/bin/env bash
# What a lent GPU machine (CPython 3.12 with torch, CuPy and NumPy; no registry) needs beside
# the source tree, in DIR (default .gpu-bundle, git-ignored: the device tool must be told to
# carry it, carry [".gpu-bundle"], or it stays behind):
# - the wheels that machine lacks, pinned here (CPython 3.12, manylinux x86_64 or pure Python);
# - hed-vgg16-relu5_1-float16.pth: HED's trained VGG-16 convolutions up to relu5_1 in float16,
#   for the precision figures of pipelines/gpu_check.py.
# Run it in the project's environment, after `daskstyle weights download hed-vgg16`:
#   bash pipelines/gpu_bundle.sh [DIR]
# It fails when a pinned wheel cannot be had, when a wheel needs a package that is neither in
# the bundle nor on that machine, without HED's weights, and when the bundle and the source
# tree together pass the 64 MiB that may travel. Then, with the device tool:
#   python3 -m pip install --no-index --no-deps --target .deps .gpu-bundle/*.whl;
#   PYTHONPATH=.:.deps python3 pipelines/gpu_check.py --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-bundle}
wheels=(dask==2026.8.0 distributed==2026.8.0 zarr==3.1.6 donfig==0.8.1.post1
        google-crc32c==1.9.0 numcodecs==0.16.6 tornado==6.6.1 tblib==3.2.2 zict==3.0.0
        locket==1.0.0 partd==1.4.2 platformdirs==4.14.9 packaging==26.4)
# On the GPU machine already: a wheel may need these without the bundle bringing them.
present="torch cupy numpy tifffile h5py pillow tqdm psutil pyyaml msgpack cloudpickle toolz
         fsspec click jinja2 sortedcontainers typing-extensions"
python3 -c "import daskstyle.networks.catalog, packaging" 2>/dev/null || {
    echo "gpu_bundle: run it in the project's environment (. .venv/bin/activate)" >&2; exit 1; }
rm -rf "$dir" && mkdir -p "$dir"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform any -d "$dir" "${wheels[@]}"
python3 - "$dir" "${#wheels[@]}" $present <<'PY'
import subprocess, sys, zipfile
from email.parser import Parser
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from daskstyle.networks.catalog import (build_features, default_weights_path, get_network,
                                load_weights, read_state_dict)

directory, pinned, present = Path(sys.argv[1]), int(sys.argv[2]), set(sys.argv[3:])
LIMIT = 64 * 2**20  # what may travel to the GPU machine: source tree and carried paths
TARGET = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "extra": "",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def fail(message):
    sys.exit(f"gpu_bundle: {message}")


wheels = sorted(directory.glob("*.whl"))
if len(wheels) != pinned:
    fail(f"{len(wheels)} wheels in {directory} for {pinned} pins")
versions = dict(parse_wheel_filename(wheel.name)[:2] for wheel in wheels)
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(archive.read(meta).decode())
    for line in headers.get_all("Requires-Dist") or []:
        need = Requirement(line)
        name = canonicalize_name(need.name)
        if need.marker and not need.marker.evaluate(TARGET):
            continue
        if name in versions and versions[name] not in need.specifier:
            fail(f"{wheel.name} needs {need}, the bundle has {name} {versions[name]}")
        if name not in versions and name not in present:
            fail(f"{wheel.name} needs {need}: neither in the bundle nor on the GPU machine")

network = get_network("hed-vgg16")
source = default_weights_path(network)
if not source.is_file():
    fail(f"no HED weights at {source}: run `daskstyle weights download hed-vgg16` first")
features = build_features(network, network.index("relu5_1"))
load_weights(features, read_state_dict(source), network, str(source))
half = {key: value.half() for key, value in features.state_dict().items()}
if not all(torch.isfinite(value).all() for value in half.values()):
    fail("HED's weights overflow float16")
torch.save(half, directory / "hed-vgg16-relu5_1-float16.pth")

listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        capture_output=True, check=True).stdout.decode().split("\0")
tree = sum(Path(p).stat().st_size for p in listed if p and Path(p).is_file())
bundle = {path.name: path.stat().st_size for path in directory.iterdir()}
total = tree + sum(bundle.values())
weights = bundle["hed-vgg16-relu5_1-float16.pth"]
print(f"{directory}: {len(wheels)} wheels {(sum(bundle.values()) - weights) / 1e6:.1f} MB, HED "
      f"float16 {weights / 1e6:.1f} MB; with the source tree ({tree / 1e6:.1f} MB) "
      f"{total / 2**20:.1f} MiB of the {LIMIT / 2**20:.0f} MiB that may travel")
if total > LIMIT:
    fail(f"{total / 2**20:.1f} MiB is over the {LIMIT / 2**20:.0f} MiB that may travel")
PY

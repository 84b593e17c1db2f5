"""Fetch the photograph and the painting of the gallery and the paper's experiments.

Both come from Debian's package mate-backgrounds 1.26.0-1 (GPL-2+, see pipelines/README.md
for the credits): "LadyBird" (a photograph by Charles Barbin, 2560 x 1600) and
"Elephants" (a painting by Wyng Stancikaite, 1920 x 1080). The package is downloaded with
``apt-get download``, its checksum and the two pictures' checksums are checked, and the
sizes the pipelines read are written as PNG into pipelines/photos/ (not committed). The
paper's 4K and 8K canvases (4096 x 2160 and 7680 x 4320) and the scaling canvases (4096² and
16,384²) are larger than any photograph found in Debian's packages: those are the photograph
cropped to their aspect ratio about its centre and enlarged with Lanczos (1.6x to 10x), and
say so in their names.

    python pipelines/fetch_photos.py            # about 10 s; nothing to do the second time
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

PACKAGE = "mate-backgrounds=1.26.0-1"
PACKAGE_SHA256 = "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"
SOURCES = {  # name: (path in the package, SHA-256)
    "ladybird": ("usr/share/backgrounds/mate/nature/LadyBird.jpg",
                 "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d"),
    "elephants": ("usr/share/backgrounds/mate/abstract/Elephants.jpg",
                  "b402668de7212c568090edc032288759029e15e5153f3ae43f079abfd44105a4"),
}  # fmt: skip
#: The files the pipelines read: name -> (source, long side in px, shape): shape "whole" keeps
#: the picture's, "square" takes its right-hand square (the ladybird is right of centre), and
#: (width, height) crops the centre to that aspect and resizes to exactly that size.
SIZES = {
    "ladybird_2048.png": ("ladybird", 2048, "whole"),
    "ladybird_1024.png": ("ladybird", 1024, "whole"),
    "ladybird_square_1024.png": ("ladybird", 1024, "square"),
    "ladybird_4096x2160_upscaled.png": ("ladybird", 4096, (4096, 2160)),
    "ladybird_7680x4320_upscaled.png": ("ladybird", 7680, (7680, 4320)),
    "ladybird_square_4096_upscaled.png": ("ladybird", 4096, (4096, 4096)),
    "ladybird_square_16384_upscaled.tif": ("ladybird", 16384, (16384, 16384)),  # a tiled BigTIFF
    "elephants_1920.png": ("elephants", 1920, "whole"),
    "elephants_1024.png": ("elephants", 1024, "whole"),
    "elephants_512.png": ("elephants", 512, "whole"),
    "elephants_256.png": ("elephants", 256, "whole"),
}
HERE = Path(__file__).resolve().parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(folder: Path) -> dict[str, Path]:
    """Download the package into ``folder``, check it, unpack it; the checked sources."""
    subprocess.run(["apt-get", "download", PACKAGE], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    (deb,) = folder.glob("mate-backgrounds_*.deb")
    if sha256(deb) != PACKAGE_SHA256:
        sys.exit(f"{deb.name} does not have the expected SHA-256: not using it")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / "root")], check=True)
    sources = {}
    for name, (inside, digest) in SOURCES.items():
        path = folder / "root" / inside
        if sha256(path) != digest:
            sys.exit(f"{inside} does not have the expected SHA-256: not using it")
        sources[name] = path
    return sources


def resized(path: Path, side: int, shape) -> Image.Image:
    """The picture at ``path`` cut to ``shape`` (see ``SIZES``) with long side ``side``
    (Lanczos; enlarged only to an exact (width, height))."""
    image = Image.open(path).convert("RGB")
    if shape == "square":
        image = image.crop((image.width - image.height, 0, image.width, image.height))
    if isinstance(shape, tuple):
        width = min(image.width, round(image.height * shape[0] / shape[1]))
        height = min(image.height, round(image.width * shape[1] / shape[0]))
        left, top = (image.width - width) // 2, (image.height - height) // 2
        image = image.crop((left, top, left + width, top + height))
        return image.resize(shape, Image.Resampling.LANCZOS)
    scale = min(1.0, side / max(image.size))
    size = tuple(round(n * scale) for n in image.size)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "photos", help="(pipelines/photos)")
    out = parser.parse_args().out
    missing = [name for name in SIZES if not (out / name).is_file()]
    if not missing:
        print(f"{out}: all {len(SIZES)} pictures are there")
        return
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="daskstyle-photos-") as folder:
        sources = extract(Path(folder))
        for name in missing:
            source, side, shape = SIZES[name]
            picture = resized(sources[source], side, shape)
            partial = out / f".{name}.tmp"
            if name.endswith(".tif"):  # beyond what daskstyle reads from a PNG
                tifffile.imwrite(partial, np.asarray(picture), bigtiff=True, tile=(512, 512))
            else:
                picture.save(partial, format="PNG")
            partial.replace(out / name)
            print(f"{out / name}: {picture.size[0]}x{picture.size[1]}")


if __name__ == "__main__":
    main()

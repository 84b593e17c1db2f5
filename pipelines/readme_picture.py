"""A large painting made small enough for the README: the whole picture scaled down (JPEG)
and a square of it at 1:1 (PNG).

    python pipelines/readme_picture.py pipelines/results/gallery.png --width 1024 \
        --crop 1300,450,512 --out docs/results/gallery
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

from daskstyle.io.files import write_atomically


def _crop(text: str) -> tuple[int, int, int]:
    x, y, side = (int(part) for part in text.split(","))
    return x, y, side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("picture", type=Path)
    parser.add_argument("--width", type=int, default=1024, help="of the whole picture (1024)")
    parser.add_argument("--crop", type=_crop, required=True, help="X,Y,SIDE of the 1:1 square")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.jpg, OUT-crop.png")
    args = parser.parse_args()
    picture = Image.open(args.picture).convert("RGB")
    height = round(picture.height * args.width / picture.width)
    whole = picture.resize((args.width, height), Image.Resampling.LANCZOS)
    x, y, side = args.crop
    crop = picture.crop((x, y, x + side, y + side))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path, image, kind, options in ((args.out.with_suffix(".jpg"), whole, "JPEG", {"quality": 88}),
                                       (args.out.with_name(args.out.name + "-crop.png"), crop, "PNG", {"optimize": True})):  # fmt: skip
        buffer = io.BytesIO()
        image.save(buffer, format=kind, **options)
        write_atomically(path, buffer.getvalue())
        print(f"wrote {path}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()

"""The figure of docs/controls.md's "Regions": one row of content, labels, the painting in
one style, the painting in two styles by region and a 1:1 crop across a border; and the
same crop of both paintings side by side at full size.

    python pipelines/regions/figure.py CONTENT LABELS SINGLE REGIONAL OUT.jpg CROP.png
"""

import sys

import numpy as np
from PIL import Image, ImageDraw

HEIGHT = 320  # of each panel in the row
CROP = (560, 200, 880, 520)  # left, top, right, bottom in the paintings' pixels: the ladybird
GAP = 8
LABEL_COLOURS = np.array([[40, 70, 160], [230, 120, 30]], np.uint8)  # label 0, label 1


def _panel(picture: Image.Image) -> Image.Image:
    width = round(picture.width * HEIGHT / picture.height)
    return picture.resize((width, HEIGHT), Image.Resampling.LANCZOS)


def _labels_over(content: Image.Image, labels: Image.Image) -> Image.Image:
    """The content, dimmed, with each label's colour laid over it."""
    colours = LABEL_COLOURS[np.asarray(labels.resize(content.size, Image.Resampling.NEAREST))]
    mixed = 0.35 * np.asarray(content, np.float32) + 0.65 * colours
    return Image.fromarray(mixed.astype(np.uint8))


def main(content, labels, single, regional, out, crop_out) -> None:
    content, single, regional = (Image.open(p).convert("RGB") for p in (content, single, regional))
    labels = Image.open(labels)
    boxed = regional.copy()
    ImageDraw.Draw(boxed).rectangle(CROP, outline=(255, 255, 255), width=3)
    crop = regional.crop(CROP)
    panels = [_panel(p) for p in (content, _labels_over(content, labels), single, boxed)]
    panels.append(crop.resize((HEIGHT, HEIGHT)) if crop.height != HEIGHT else crop)
    row = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1), HEIGHT),
                    "white")  # fmt: skip
    x = 0
    for panel in panels:
        row.paste(panel, (x, 0))
        x += panel.width + GAP
    row.save(out, quality=90)
    pair = Image.new("RGB", (2 * crop.width + GAP, crop.height), "white")
    pair.paste(single.crop(CROP), (0, 0))
    pair.paste(crop, (crop.width + GAP, 0))
    pair.save(crop_out)


if __name__ == "__main__":
    main(*sys.argv[1:7])

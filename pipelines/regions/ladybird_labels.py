"""Draw the label picture of pipelines/regions.toml by hand: on LadyBird (1024 x 640), the
ladybird with the grass blade and stems it sits on (label 1) and the blurred background
(label 0), as an 8-bit gray PNG. Polygons traced on the photograph; run from anywhere:

    python pipelines/regions/ladybird_labels.py pipelines/regions/ladybird_labels.png
"""

import sys

from PIL import Image, ImageDraw

SIZE = (1024, 640)  # the photograph's width and height
BLADE = [(212, 640), (262, 570), (318, 492), (368, 420), (398, 360), (414, 318), (426, 286),
         (440, 284), (460, 318), (472, 362), (474, 420), (468, 462), (448, 510), (412, 560),
         (384, 604), (372, 640)]  # fmt: skip
STEM = [(300, 178), (430, 238), (560, 296), (672, 334), (668, 352), (556, 314), (426, 258),
        (296, 194)]  # fmt: skip
LEAVES = [(676, 336), (760, 362), (830, 388), (900, 398), (960, 410), (1024, 420), (1024, 572),
          (980, 548), (930, 516), (876, 486), (820, 452), (760, 412), (712, 380)]  # fmt: skip
LADYBIRD = (668, 282, 770, 392)  # its shell, head and legs: an ellipse's bounding box


def main(output: str) -> None:
    labels = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(labels)
    for polygon in (BLADE, STEM, LEAVES):
        draw.polygon(polygon, fill=1)
    draw.ellipse(LADYBIRD, fill=1)
    labels.save(output)


if __name__ == "__main__":
    main(sys.argv[1])

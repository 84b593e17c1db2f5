"""Draw the built-in example pictures shipped in daskstyle/data/ (run once; deterministic).

content: a small landscape (sky, sun, hills, lake, a house, trees);
style:   swirling brush strokes in a night-sky palette;
style2:  a mosaic of warm tesserae (the second style of the blending example).
"""

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

DATA = Path(__file__).resolve().parents[1] / "daskstyle" / "data"


def content(width=384, height=256) -> Image.Image:
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):  # sky gradient
        t = y / height
        draw.line(
            [(0, y), (width, y)], fill=(int(90 + 120 * t), int(150 + 70 * t), int(235 - 20 * t))
        )
    draw.ellipse([290, 30, 340, 80], fill=(255, 225, 120))
    draw.polygon([(0, 170), (70, 95), (150, 160), (230, 80), (330, 165), (384, 120), (384, 256), (0, 256)],
                 fill=(70, 120, 70))  # fmt: skip
    draw.rectangle([0, 200, width, height], fill=(60, 110, 170))  # lake
    for x in range(0, width, 12):
        draw.line([(x, 212 + (x % 5)), (x + 7, 212 + (x % 5))], fill=(150, 190, 230))
    draw.rectangle([150, 140, 210, 195], fill=(220, 200, 170))  # house
    draw.polygon([(142, 142), (180, 110), (218, 142)], fill=(170, 50, 40))
    draw.rectangle([173, 165, 188, 195], fill=(90, 60, 40))
    draw.rectangle([157, 150, 168, 161], fill=(120, 170, 220))
    for cx, cy, r in ((60, 165, 22), (95, 175, 16), (255, 160, 20), (300, 172, 15)):
        draw.rectangle([cx - 3, cy, cx + 3, cy + r + 12], fill=(90, 60, 30))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(40, 95, 45))
    return image


def style(size=256, strokes=2600, seed=7) -> Image.Image:
    rng = random.Random(seed)
    palette = [(25, 45, 110), (40, 80, 160), (70, 120, 200), (235, 205, 80), (250, 235, 150),
               (20, 30, 60), (110, 160, 210), (200, 150, 40)]  # fmt: skip
    image = Image.new("RGB", (size, size), (30, 50, 100))
    draw = ImageDraw.Draw(image)
    for _ in range(strokes):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        color = rng.choice(palette)
        for _ in range(6):  # a stroke follows a swirling flow field
            angle = (
                math.sin(x / 23) * 2 + math.cos(y / 17) * 2 + math.atan2(y - size / 2, x - size / 2)
            )
            nx, ny = x + 5 * math.cos(angle), y + 5 * math.sin(angle)
            draw.line([(x, y), (nx, ny)], fill=color, width=3)
            x, y = nx, ny
    return image.filter(ImageFilter.SMOOTH)


def style2(size=256, tessera=11, seed=3) -> Image.Image:
    rng = random.Random(seed)
    palette = [(190, 60, 30), (225, 120, 40), (240, 190, 90), (150, 40, 40), (90, 50, 30),
               (230, 220, 190)]  # fmt: skip
    image = Image.new("RGB", (size, size), (60, 40, 30))  # the grout
    draw = ImageDraw.Draw(image)
    for row in range(-1, size // tessera + 1):
        shift = rng.uniform(0, tessera)
        for col in range(-1, size // tessera + 1):
            x, y = col * tessera + shift, row * tessera + rng.uniform(-1, 1)
            corners = [(x + rng.uniform(0, 2), y + rng.uniform(0, 2)),
                       (x + tessera - rng.uniform(1, 3), y + rng.uniform(0, 2)),
                       (x + tessera - rng.uniform(1, 3), y + tessera - rng.uniform(1, 3)),
                       (x + rng.uniform(0, 2), y + tessera - rng.uniform(1, 3))]  # fmt: skip
            draw.polygon(corners, fill=rng.choice(palette))
    return image


if __name__ == "__main__":
    DATA.mkdir(exist_ok=True)
    pictures = {"example_content.png": content(), "example_style.png": style(),
                "example_style2.png": style2()}  # fmt: skip
    for name, picture in pictures.items():
        picture.save(DATA / name, optimize=True)
        print("wrote", DATA / name)

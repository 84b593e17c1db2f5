"""The figure of a comparison: its paintings side by side, each under its name and numbers,
and optionally a crop of each at 1:1 below, drawn with Pillow so that pixels stay pixels."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

GAP = 16  # px between columns and around the figure
TITLE_SIZE, TEXT_SIZE = 20, 16  # font sizes in px
LINE = 1.35  # line height, in font sizes


@dataclass(frozen=True)
class Panel:
    """One column: a painting, its title and lines of numbers under the title."""

    painting: Path
    title: str
    numbers: tuple[str, ...]


def comparison_png(panels: list[Panel], crop: list[int] | None, column: int) -> bytes:
    """The figure as PNG bytes: each painting scaled to ``column`` px wide; with ``crop``
    ``[x, y, side]`` the same square of each painting at 1:1 below it."""
    pictures = [_scaled(Image.open(panel.painting), column) for panel in panels]
    crops = [_crop(Image.open(panel.painting), crop) for panel in panels] if crop else []
    title_font = ImageFont.load_default(size=TITLE_SIZE)
    text_font = ImageFont.load_default(size=TEXT_SIZE)
    lines = max(len(panel.numbers) for panel in panels)
    header = round(TITLE_SIZE * LINE + lines * TEXT_SIZE * LINE) + GAP // 2
    crop_label = round(TEXT_SIZE * LINE) if crop else 0
    height = (GAP + header + max(p.height for p in pictures) + GAP
              + (crop_label + crop[2] + GAP if crop else 0))  # fmt: skip
    figure = Image.new("RGB", (GAP + len(panels) * (column + GAP), height), "white")
    draw = ImageDraw.Draw(figure)
    for number, panel in enumerate(panels):
        left = GAP + number * (column + GAP)
        draw.text((left, GAP), panel.title, fill="black", font=title_font)
        for line, text in enumerate(panel.numbers):
            top = GAP + round(TITLE_SIZE * LINE + line * TEXT_SIZE * LINE)
            draw.text((left, top), text, fill="dimgray", font=text_font)
        figure.paste(pictures[number], (left, GAP + header))
        if crop:
            top = GAP + header + max(p.height for p in pictures) + GAP
            x, y, side = crop
            draw.text((left, top), f"1:1, {side} px at ({x}, {y})", fill="dimgray", font=text_font)
            figure.paste(crops[number], (left + (column - side) // 2, top + crop_label))
    buffer = io.BytesIO()
    figure.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _scaled(picture: Image.Image, width: int) -> Image.Image:
    picture = picture.convert("RGB")
    height = max(1, round(picture.height * width / picture.width))
    return picture.resize((width, height), Image.Resampling.LANCZOS)


def _crop(picture: Image.Image, crop: list[int]) -> Image.Image:
    x, y, side = crop
    return picture.convert("RGB").crop((x, y, x + side, y + side))

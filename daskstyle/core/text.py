"""Words for people: counts, sizes, durations, and an error as one line."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """``"1 tile"``, ``"2 tiles"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def readable(size: int) -> str:
    """``size`` bytes for people: "110.1 GB", "15.5 MB", "10.0 kB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale / 10:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def duration(seconds: float) -> str:
    """``seconds`` for people: "42 s", "7 min", "3.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def one_line(err: BaseException | str) -> str:
    """A text, or an error's (an OSError's strerror), on one line; an error without text
    says its type."""
    if isinstance(err, str):
        return " ".join(err.split())
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return " ".join(text.split()) or type(err).__name__

"""The samples of a picture file: 8 or 16 bits, and how a picture on 0-255 becomes them.

A 16-bit sample is the 8-bit value times 257 (65535 = 255 * 257), so reading divides by
:data:`SAMPLE_SCALE` and writing multiplies by it; every writer rounds and clips alike and
refuses a picture that is not finite.
"""

from __future__ import annotations

import numpy as np

from daskstyle.core.errors import DaskstyleError

#: Bits a sample -> the sample type written.
SAMPLE_TYPES = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16)}
#: Sample type -> what a value on 0-255 is multiplied by to become a sample of it.
SAMPLE_SCALE = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 257}


def to_samples(band: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``band`` on 0-255 as rounded, clipped samples of ``dtype`` (uint16: 65535 = 255 * 257)."""
    band = np.rint(band if dtype == np.uint8 else band.astype(np.float64) * SAMPLE_SCALE[dtype])
    return np.clip(band, 0, np.iinfo(dtype).max, out=band).astype(dtype)


def check_finite(band: np.ndarray, where: str) -> np.ndarray:
    """``band``, or a :class:`DaskstyleError` naming ``where`` (``"rows 0-511"``) when it holds
    a value that is not finite: such a picture is never written."""
    if not np.isfinite(band).all():
        raise DaskstyleError(f"{where} of the picture are not finite")
    return band

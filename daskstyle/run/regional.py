"""A run's regions: the label pictures read and checked once when the run is planned, and
each level's region guides computed once and kept beside the level's state."""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

from daskstyle.controls import regions
from daskstyle.core.errors import InputError
from daskstyle.engine.graph import Regions, StyleGraph
from daskstyle.optimise.state import create_array, open_array, store_with_checksums
from daskstyle.settings import Settings

#: The array of a level state that holds the level's region guides.
REGION_GUIDE = "region_guide"


@dataclass(frozen=True)
class RunRegions:
    """The labels of a run: ``labels`` (H, W) of the content, ``parts`` per style its labels
    (None: the whole style), each label's share of the pixels, and the content's size."""

    labels: np.ndarray
    parts: tuple[np.ndarray | None, ...]
    shares: tuple[float, ...]
    content: tuple[int, int]

    def level_graph(self, graph: StyleGraph, settings: Settings, shape: tuple[int, int],
                    chunks: int, folder: Path) -> StyleGraph:  # fmt: skip
        """``graph`` with the region guides of the level of (H, W) ``shape``, computed once
        into the level's ``folder`` (written under a temporary name, then renamed)."""
        path = folder / REGION_GUIDE
        if not path.is_dir():
            feather = regions.feather_at(settings.region_feather, max(shape), max(self.content))
            guide = regions.level_guide(self.labels, len(self.parts), shape, feather,
                                        settings.dtype).rechunk((chunks, chunks, -1))  # fmt: skip
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            array = create_array(tmp, guide.shape, guide.chunksize, guide.dtype)
            store_with_checksums([guide], [array])
            os.replace(tmp, path)
        return dataclasses.replace(graph, regions=Regions(open_array(path), settings.region_guides))

    def style_part(self, region: int, shape: tuple[int, int], dtype: str) -> da.Array | None:
        """The part of style ``region`` at (H, W) ``shape`` that its region takes (None: all)."""
        part = self.parts[region]
        return None if part is None else regions.style_guide(part, region, shape, dtype)


def plan_regions(settings: Settings, content: tuple[int, int], styles: list,
                 sources: dict) -> RunRegions | None:  # fmt: skip
    """The run's labels, read and checked against the content (H, W) and the ``styles`` (each
    (H, W, 3)); their files join ``sources`` (name: path), whose checksums a resume checks."""
    if settings.regions is None:
        return None
    labels = regions.read_labels(settings.regions)
    regions.check_labels(labels, len(styles), content)
    sources["regions"] = Path(settings.regions)
    paths = settings.style_regions or ("",) * len(styles)
    if len(paths) != len(styles):
        raise InputError(f"--style-regions names {len(paths)} pictures for "
                                 f"{len(styles)} styles: give one per style (empty: all)")  # fmt: skip
    parts = []
    for number, (path, style) in enumerate(zip(paths, styles), start=1):
        part = None
        if path:
            part = regions.read_labels(path)
            regions.check_labels(part, 256, tuple(style.shape[:2]), f"style regions {number}")
            if not (part == number - 1).any():
                raise InputError(f"the style regions {path} hold no pixel labelled {number - 1}: "
                                 f"mark the part of style {number} that its region takes")  # fmt: skip
            sources[f"style regions {number}"] = Path(path)
        parts.append(part)
    return RunRegions(labels, tuple(parts), regions.label_shares(labels, len(styles)), content)


def resolved(settings: Settings) -> Settings:
    """``settings`` with its label pictures' paths absolute, as run.json keeps them."""
    if settings.regions is None:
        return settings
    parts = settings.style_regions
    return dataclasses.replace(
        settings, regions=str(Path(settings.regions).resolve()),
        style_regions=parts and tuple(str(Path(p).resolve()) if p else "" for p in parts),
    )  # fmt: skip

"""A run's record, ``run.json``: how daskstyle reads it, and what it accepts as its own.

A record daskstyle could not have written (:class:`RunRecord`) stops a run in one line. One
written by an earlier daskstyle is read as today's: a setting added since then takes its
default, which is how that run painted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from daskstyle.core.errors import DamagedStateError, InputError
from daskstyle.settings import Settings

FORMAT = 1  # the "daskstyle" key of a run record
RECORD = "run.json"
MAX_LEVELS = 64  # each level doubles the long side: far beyond any picture


def _with_added_settings(settings: dict) -> dict:
    """A record's settings with each one added to daskstyle since it was written at its
    default (as the record keeps it: JSON)."""
    if not settings:
        return settings
    defaults = json.loads(json.dumps(dataclasses.asdict(Settings())))
    return {**{k: v for k, v in defaults.items() if k not in settings}, **settings}


class Written(BaseModel):
    """A file daskstyle wrote, as it was then."""

    model_config = ConfigDict(strict=True, extra="forbid")
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RunRecord(BaseModel):
    """What daskstyle reads of a run record, as it writes it (other keys are compared, not
    read): a record that breaks it was not written by daskstyle, or was edited since."""

    model_config = ConfigDict(strict=True, extra="allow")
    daskstyle: Literal[1]
    levels: int = Field(ge=1, le=MAX_LEVELS)
    finished: bool = False  # missing: not finished, so nothing of it is deleted
    settings: Annotated[dict, AfterValidator(_with_added_settings)] = {}
    inputs: dict[str, dict] = {}
    tile_px: int | None = Field(None, ge=1)
    run: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")  # None: begun before it was kept
    files: dict[Annotated[str, Field(pattern=r"^(loss\.csv|level[1-9][0-9]?\.png)$")], Written] = {}


def read_record(workdir: Path) -> dict | None:
    """The record of the run in ``workdir`` (None: there is none), or a one-line error when
    ``run.json`` is damaged, not daskstyle's or not a record daskstyle could have written."""
    path = workdir / RECORD
    refuse_link(path)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedStateError(
            f"{path} is damaged ({type(err).__name__}): its run cannot continue; start again "
            "in a new run directory (--workdir)"
        ) from None
    if not isinstance(record, dict) or record.get("daskstyle") != FORMAT:
        raise InputError(
            f"{path} was not written by this daskstyle: choose another run directory (--workdir)"
        )
    try:
        return RunRecord.model_validate(record).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the record"
        raise DamagedStateError(
            f"{path} is not a record daskstyle writes ({where}: {first['msg'].lower()}): put "
            "back the run.json daskstyle wrote, or start again in a new run directory (--workdir)"
        ) from None


def refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise InputError(
            f"{path} is a symbolic link, and daskstyle follows none out of a run directory: "
            "remove the link, or choose another run directory (--workdir)"
        )

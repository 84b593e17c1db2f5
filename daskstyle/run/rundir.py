"""The run directory and the user's files: what daskstyle writes, and what it never touches.

A run directory holds the names a run owns, and nothing else of daskstyle's: ``run.json``
(the run's record, marked as daskstyle's by its ``"daskstyle"`` key), ``loss.csv``, and for
each of the levels the record counts a zarr group ``level<N>/`` and a preview
``level<N>.png`` (N from 1, as the progress lines count) (with the hidden ``.<name>.*.part`` files of their atomic writes). It may be
a folder that holds other files too (``--workdir photos``): those are never read, replaced or
deleted. A run refuses to start where one of its names is taken by a file daskstyle did not
write; a new run into a directory with a finished run deletes that run's own files, and only
those. Every check here runs before any work.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

from daskstyle.core.errors import DamagedStateError, DaskstyleError, InputError
from daskstyle.io import files
from daskstyle.optimise.state import LevelState

FORMAT = 1  # the "daskstyle" key of a run record
RECORD = "run.json"
LOSS_CSV = "loss.csv"
COMPARED = ("settings", "network", "weights_digest", "content", "style", "experiment")


def default_workdir(output: Path) -> Path:
    return output.with_name(output.name + ".daskstyle")


def level_dir(workdir: Path, level: int) -> Path:
    """The state of level ``level`` (counted from 0), named as people count: ``level1``."""
    return workdir / f"level{level + 1}"


def preview_path(workdir: Path, level: int) -> Path:
    return workdir / f"level{level + 1}.png"


def owned_names(levels: int) -> list[str]:
    """The names in a run directory that a run of ``levels`` levels writes."""
    names = [RECORD, LOSS_CSV]
    for level in range(levels):
        names += [level_dir(Path(), level).name, preview_path(Path(), level).name]
    return names


def fingerprint(path: Path) -> dict:
    """Path, size and SHA-256 of an input file, to know on ``--resume`` that it has not
    changed."""
    stat, file = path.stat(), str(path.resolve())
    return {"file": file, **_fingerprint(file, stat.st_size, stat.st_mtime_ns)}


@functools.lru_cache(maxsize=8)
def _fingerprint(path: str, size: int, mtime_ns: int) -> dict:
    with open(path, "rb") as fh:
        return {"bytes": size, "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}


def check_paths(output: Path, workdir: Path, sources: dict[str, Path]) -> None:
    """Raise an :class:`InputError` when the output would replace one of ``sources`` (the
    input pictures, the weights: name -> path) or land inside the run directory."""
    for name, source in sources.items():
        if _same_file(output, source):
            raise InputError(f"the output {output} is the {name} file: choose another output")
    if output.resolve().is_relative_to(workdir.resolve()):
        raise InputError(
            f"the output {output} is inside the run directory {workdir}: write it elsewhere, "
            "or choose another run directory (--workdir)"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def read_record(workdir: Path) -> dict | None:
    """The record of the run in ``workdir`` (None: there is none), or a one-line error when
    ``run.json`` is damaged or not daskstyle's."""
    path = workdir / RECORD
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
    return record


def unfinished(workdir: Path) -> bool:
    """Whether ``workdir`` holds the record of a run that has not finished (a damaged record,
    or one not daskstyle's, is not one: resuming would refuse it)."""
    try:
        record = read_record(workdir)
    except DaskstyleError:
        return False
    return record is not None and not record.get("finished")


def write_record(workdir: Path, record: dict) -> None:
    files.write_atomically(workdir / RECORD, json.dumps(record, indent=2).encode())


def check(workdir: Path, record: dict, resume: bool) -> dict | None:
    """Whether a run with ``record`` can use ``workdir`` as ``resume`` asks: the record of an
    earlier, finished run there that a new run replaces (or None), else an error that says
    what to do."""
    _check_writable(workdir)
    earlier = read_record(workdir)
    if resume:
        if earlier is None:
            raise InputError(f"nothing to resume: {workdir / RECORD} does not exist")
        _check_same_run(workdir, earlier, record)
        return None
    if earlier is not None and not earlier.get("finished"):
        raise InputError(
            f"{workdir} holds an unfinished run: continue it with --resume (resume = true in a "
            f"pipeline), or delete {_what_to_delete(workdir, earlier['levels'])} to start again"
        )
    earlier_names = set(owned_names(earlier["levels"])) if earlier else set()
    for name in owned_names(record["levels"]):
        if name not in earlier_names and (workdir / name).exists():
            raise InputError(
                f"{workdir / name} was not written by daskstyle and a run would replace it: "
                "move it, or choose another run directory (--workdir)"
            )
    return earlier


def _what_to_delete(workdir: Path, levels: int) -> str:
    """``workdir`` when it holds nothing but a run's files, else those files by name."""
    owned = set(owned_names(levels))
    present = sorted(p.name for p in workdir.iterdir() if not p.name.endswith(".part"))
    if set(present) <= owned:
        return str(workdir)
    return "its files " + ", ".join(name for name in present if name in owned)


def _check_same_run(workdir: Path, earlier: dict, record: dict) -> None:
    changed = [key for key in COMPARED if earlier.get(key) != record.get(key)]  # same on resume
    if changed:
        raise InputError(f"cannot resume {workdir}: {', '.join(changed)} differ from its run")
    for name, now in record["inputs"].items():
        if earlier.get("inputs", {}).get(name) != now:
            raise InputError(
                f"cannot resume {workdir}: the {name} file {now['file']} changed since the run "
                "began: put the original back, or start again in a new run directory"
            )


def _check_writable(workdir: Path) -> None:
    base = files.nearest_existing(workdir)
    if not base.is_dir():
        raise InputError(
            f"the run directory {workdir} cannot be made: {base} is a file; choose another "
            "run directory (--workdir)"
        )
    why = files.not_writable(base)
    if why:
        raise InputError(
            f"cannot write the run directory {workdir}: {base} {why}; choose another run "
            "directory (--workdir)"
        )


def prepare(workdir: Path, record: dict, resume: bool) -> None:
    """Make ``workdir`` ready for the run of ``record``: check it; remove the files of an
    earlier finished run there (only its own); write the record of a new run."""
    earlier = check(workdir, record, resume)
    if earlier is not None:
        remove_run(workdir, earlier["levels"])
    if not resume:
        workdir.mkdir(parents=True, exist_ok=True)
        write_record(workdir, record)


def remove_run(workdir: Path, levels: int) -> None:
    """Delete what a finished run of ``levels`` levels wrote into ``workdir`` (its record
    last), leaving every other file there as it is."""
    for name in reversed(owned_names(levels)):
        for leftover in workdir.glob(f".{name}.*.part"):
            leftover.unlink(missing_ok=True)
        path = workdir / name
        if path.is_dir() and (path / "zarr.json").is_file():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()


def owned_bytes(workdir: Path) -> int:
    """Bytes of the earlier run in ``workdir`` (none if there is none): what a new run frees
    or a resumed run reuses."""
    try:
        earlier = read_record(workdir)
    except (InputError, DamagedStateError):
        return 0
    if earlier is None:
        return 0
    total = 0
    for name in owned_names(earlier["levels"]):
        path = workdir / name
        files = path.rglob("*") if path.is_dir() else [path]
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total


def write_loss_csv(workdir: Path, upto_level: int) -> None:
    """loss.csv from the committed histories of levels 0..``upto_level`` (written atomically;
    levels numbered from 1, as the progress lines count): each step's loss, pixel changes,
    rate and seconds."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["level", "step", "loss", "max_change", "mean_change", "lr", "seconds"])
    for level in range(upto_level + 1):
        state = LevelState.open(level_dir(workdir, level))
        for step, (max_change, mean_change, loss, *seconds) in enumerate(
            state.attrs["history"], start=1
        ):  # a run begun before daskstyle kept seconds has none
            writer.writerow([level + 1, step, loss, max_change, mean_change, state.lr, *seconds])
    files.write_atomically(workdir / LOSS_CSV, text.getvalue().encode())

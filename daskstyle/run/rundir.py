"""The run directory and the user's files: what daskstyle writes, and what it never touches.

A run directory holds ``run.json`` (the run's record, marked by its ``"daskstyle"`` key),
``loss.csv``, and for each level a zarr group ``level<N>/`` and a preview ``level<N>.png``
(N from 1), with the hidden ``.<name>.*.part`` files of their atomic writes. It may be a
folder of other files too (``--workdir photos``): those are never read, replaced or deleted.

What is daskstyle's is what it recorded when it wrote it, never a name: the record keeps the
run's id (``"run"``) and each file's size and SHA-256 (``"files"``: a preview once written,
``loss.csv`` once the run has finished), and each level's ``zarr.json`` carries the id
(:data:`MARKER`). A new run deletes only the files of a finished run that are as recorded
and the level folders that carry its id; any other file under a name it writes, a symbolic
link under a run's name, or a record daskstyle could not have written (:mod:`~daskstyle.run.record`)
stops it in one line before any work. A run begun before these records is resumed as
before (its names are its own while unfinished); once finished, none of its files is
deleted: a new run stops at the first one it would replace.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import shutil
import stat
import uuid
from pathlib import Path

from daskstyle.core.errors import DamagedStateError, DaskstyleError, InputError
from daskstyle.io import files
from daskstyle.optimise.state import LevelState, open_array
from daskstyle.run.record import RECORD, read_record, refuse_link

LOSS_CSV = "loss.csv"
COMPARED = ("settings", "network", "weights_digest", "content", "style", "experiment", "levels")
MARKER = "daskstyle_run"  # the attribute of a level's zarr.json: the id of the run that made it
_UNRECORDED = f" (its {RECORD} is an earlier daskstyle's, which recorded no checksums)"


def default_workdir(output: Path) -> Path:
    return output.with_name(output.name + ".daskstyle")


def level_dir(workdir: Path, level: int) -> Path:
    """The state of level ``level`` (counted from 0), named as people count: ``level1``."""
    return workdir / f"level{level + 1}"


def preview_path(workdir: Path, level: int) -> Path:
    return workdir / f"level{level + 1}.png"


def file_names(levels: int) -> list[str]:
    """The files (not folders) a run of ``levels`` levels writes beside its record."""
    return [LOSS_CSV, *(preview_path(Path(), level).name for level in range(levels))]


def run_names(levels: int) -> list[str]:
    """The names a run of ``levels`` levels writes beside its record: files and folders."""
    return [*file_names(levels), *(level_dir(Path(), level).name for level in range(levels))]


def fingerprint(path: Path) -> dict:
    """Path, size and SHA-256 of an input file, to know on ``--resume`` that it has not
    changed."""
    stat_, file = path.stat(), str(path.resolve())
    return {"file": file, **_fingerprint(file, stat_.st_size, stat_.st_mtime_ns)}


@functools.lru_cache(maxsize=8)
def _fingerprint(path: str, size: int, mtime_ns: int) -> dict:
    with open(path, "rb") as fh:
        return {"bytes": size, "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}


def _written(path: Path) -> dict | None:
    """Size and SHA-256 of ``path`` if it is a regular file (a link is not followed)."""
    info = path.lstat() if os.path.lexists(path) else None
    if info is None or not stat.S_ISREG(info.st_mode):
        return None
    return _fingerprint(str(path), info.st_size, info.st_mtime_ns)


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


def unfinished(workdir: Path) -> bool:
    """Whether ``workdir`` holds the record of a run that has not finished (a damaged record,
    or one not daskstyle's, is not one: resuming would refuse it)."""
    try:
        record = read_record(workdir)
    except DaskstyleError:
        return False
    return record is not None and not record["finished"]


def write_record(workdir: Path, record: dict) -> None:
    files.write_atomically(workdir / RECORD, json.dumps(record, indent=2).encode())


def check(workdir: Path, record: dict, resume: bool) -> dict | None:
    """Whether a run with ``record`` can use ``workdir`` as ``resume`` asks: the record of
    the run it resumes, or of an earlier, finished run that a new run replaces (or None),
    else an error that says what to do."""
    _check_writable(workdir)
    earlier = read_record(workdir)
    if resume:
        if earlier is None:
            raise InputError(f"nothing to resume: {workdir / RECORD} does not exist")
        _check_same_run(workdir, earlier, record)
        _check_resumable(workdir, earlier)
        return earlier
    if earlier is not None and not earlier["finished"]:
        raise InputError(
            f"{workdir} holds an unfinished run: continue it with --resume (resume = true in a "
            f"pipeline), or delete {_what_to_delete(workdir, earlier)} to start again"
        )
    earlier_names = run_names(earlier["levels"]) if earlier else []
    for name in [*run_names(record["levels"]), *earlier_names]:
        refuse_link(workdir / name)
    ours = set(owned(workdir, earlier)) if earlier else set()
    for name in run_names(record["levels"]):
        if name not in ours and os.path.lexists(workdir / name):
            why = "" if earlier is None or earlier["run"] else _UNRECORDED
            raise InputError(
                f"{workdir / name} was not written by daskstyle{why} and a run would replace "
                "it: move it, or choose another run directory (--workdir)"
            )
    return earlier


def owned(workdir: Path, earlier: dict) -> list[str]:
    """The names in ``workdir`` that the run of record ``earlier`` wrote, as it recorded
    them: files whose size and SHA-256 are the record's, level folders whose ``zarr.json``
    carries its id; while the run is unfinished, its ``loss.csv`` too. A run begun before
    daskstyle kept these records: its names while unfinished, nothing once finished."""
    run, levels = earlier["run"], earlier["levels"]
    if run is None:
        return [] if earlier["finished"] else _present(workdir, levels)
    names = [n for n, kept in earlier["files"].items() if _written(workdir / n) == kept]
    if not earlier["finished"] and LOSS_CSV not in names and _written(workdir / LOSS_CSV):
        names.append(LOSS_CSV)
    return names + [
        level_dir(Path(), level).name
        for level in range(levels)
        if _marker(level_dir(workdir, level)) == run
    ]


def _present(workdir: Path, levels: int) -> list[str]:
    """The names of a run of ``levels`` levels in ``workdir`` (links aside)."""
    paths = [workdir / name for name in run_names(levels)]
    return [path.name for path in paths if path.exists() and not path.is_symlink()]


def _marker(level: Path) -> str | None:
    """The run id in the ``zarr.json`` of the level folder ``level``, if any."""
    try:
        if level.is_symlink() or (level / "zarr.json").is_symlink():
            return None
        return json.loads((level / "zarr.json").read_text(encoding="utf-8"))["attributes"][MARKER]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _what_to_delete(workdir: Path, earlier: dict) -> str:
    """``workdir`` when it holds nothing but a run's files, else those files by name."""
    mine = {RECORD, *owned(workdir, earlier)}
    present = sorted(p.name for p in workdir.iterdir() if not p.name.endswith(".part"))
    if set(present) <= mine:
        return str(workdir)
    return "its files " + ", ".join(name for name in present if name in mine)


def _check_same_run(workdir: Path, earlier: dict, record: dict) -> None:
    changed = [key for key in COMPARED if earlier.get(key) != record.get(key)]  # same on resume
    if changed:
        raise InputError(f"cannot resume {workdir}: {', '.join(changed)} differ from its run")
    for name, now in record["inputs"].items():
        if earlier["inputs"].get(name) != now:
            raise InputError(
                f"cannot resume {workdir}: the {name} file {now['file']} changed since the run "
                "began: put the original back, or start again in a new run directory"
            )


def _check_resumable(workdir: Path, earlier: dict) -> None:
    """Raise for a name of the run to resume that holds a link, a file where a level folder
    goes, a level of another run, or a file unlike its record."""
    levels, run, kept = earlier["levels"], earlier["run"], earlier["files"]
    for name in run_names(levels):
        path = workdir / name
        refuse_link(path)
        if not os.path.lexists(path):
            continue
        if name in file_names(levels):
            foreign = _written(path) is None or (name in kept and _written(path) != kept[name])
        elif (path / "zarr.json").is_file():
            foreign = run is not None and _marker(path) not in (None, run)
        else:  # a folder daskstyle begins holds its zarr.json first
            foreign = not path.is_dir() or any(path.iterdir())
        if foreign:
            raise InputError(
                f"{path} was not written by daskstyle for this run and resuming would replace "
                "it: move it, or choose another run directory (--workdir)"
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


def prepare(workdir: Path, record: dict, resume: bool) -> dict:
    """Make ``workdir`` ready for the run of ``record``: check it; remove the files of an
    earlier finished run there (only its own); write the record of the run, with its id
    (kept on resume) and what it has written so far. Return that record."""
    earlier = check(workdir, record, resume)
    if resume:
        record = {**record, "run": earlier["run"] or uuid.uuid4().hex,
                  "files": earlier["files"], "finished": earlier["finished"]}  # fmt: skip
    else:
        if earlier is not None:  # a finished run's
            remove_run(workdir, earlier)
        record = {**record, "run": uuid.uuid4().hex, "files": {}}
        workdir.mkdir(parents=True, exist_ok=True)
    write_record(workdir, record)
    return record


def remove_run(workdir: Path, earlier: dict) -> None:
    """Delete what the finished run of record ``earlier`` wrote into ``workdir`` (as
    :func:`owned` tells it), leaving every other file there as it is."""
    for name in owned(workdir, earlier):
        path = workdir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in run_names(earlier["levels"]):
        for leftover in workdir.glob(f".{name}.*.part"):
            if _written(leftover):
                leftover.unlink()


def owned_bytes(workdir: Path) -> int:
    """Bytes of the earlier run in ``workdir`` (none if there is none): what a new run frees
    or a resumed run reuses (of a run of an earlier daskstyle, all its names: a new run stops
    at them, see :func:`check`, until the user deletes them)."""
    try:
        earlier = read_record(workdir)
    except DaskstyleError:
        return 0
    if earlier is None:
        return 0
    legacy = earlier["run"] is None
    names = _present(workdir, earlier["levels"]) if legacy else owned(workdir, earlier)
    found = [f for p in (workdir / n for n in names) for f in (p.rglob("*") if p.is_dir() else [p])]
    return sum(f.lstat().st_size for f in found if _written(f))


def mark_level(state: LevelState, run: str) -> None:
    """Mark the level state ``state`` as one of the run ``run`` (in its ``zarr.json``)."""
    if state.attrs.get(MARKER) != run:
        state.commit(**{MARKER: run})


def check_level_shape(path: Path, shape: tuple[int, int], level: int) -> None:
    """Raise a :class:`DamagedStateError` naming an array's ``zarr.json`` at ``path`` whose
    shape is not the level's: ``shape`` (H, W) in RGB."""
    for name in ["content", *(f"{b}{i}" for b in LevelState.BUFFERS for i in (0, 1))]:
        if (path / name / "zarr.json").is_file():
            found = open_array(path / name).shape
            if found != (*shape, 3):
                raise DamagedStateError(
                    f"{path / name / 'zarr.json'} gives the shape {found} and level {level + 1} "
                    f"of this run is {(*shape, 3)}"
                )


def record_file(workdir: Path, name: str) -> None:
    """Add the size and SHA-256 of ``name``, just written into ``workdir``, to the record."""
    record = read_record(workdir)
    write_record(workdir, {**record, "files": {**record["files"], name: _written(workdir / name)}})


def finish(workdir: Path) -> dict:
    """The run's record, finished, with the size and SHA-256 of loss.csv and the previews."""
    record = read_record(workdir)
    kept = {name: _written(workdir / name) for name in file_names(record["levels"])}
    return {**record, "finished": True, "files": {n: w for n, w in kept.items() if w}}


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

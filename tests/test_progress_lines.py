"""Logs fit for batch jobs: where stderr is not a terminal (a SLURM log, CI), a run's progress
is plain lines, with no carriage returns, at most one per step, or one every so many seconds
when steps are fast."""

import re
from pathlib import Path

from daskstyle.frontends import cli, progress
from daskstyle.frontends.progress import Progress
from daskstyle.run.events import LevelFinished, LevelStarted, Stepped

from .conftest import SHALLOW_RUN_OPTIONS

STEP_LINE = re.compile(
    r"^level (\d) step (\d): loss \S+, mean change \S+, \d+\.\d\d s, level done in at most \d+ s$"
)


def _step_lines(lines):
    return [line for line in lines if re.match(r"level \d+ step ", line)]


def _run(pictures, weights_file, out, capsys):
    argv = ["run", *map(str, pictures), "-o", str(out), "--r0", "48", "--max-iters", "3",
            "--tile", "48", "--network", "vgg19", "--weights", str(weights_file),
            "--cluster", "threads", *SHALLOW_RUN_OPTIONS]  # fmt: skip
    assert cli.main(argv) == 0
    return capsys.readouterr()


def test_without_a_terminal_each_step_is_one_plain_line(pictures, weights_file, tmp_path, capsys,
                                                        monkeypatch):  # fmt: skip
    monkeypatch.setattr(progress, "BATCH_EVERY", 0.0)  # steps as slow as a real run's
    printed = _run(pictures, weights_file, tmp_path / "out.png", capsys)
    assert "\r" not in printed.out + printed.err
    steps = [STEP_LINE.match(line) for line in _step_lines(printed.out.splitlines())]
    assert all(steps), printed.out
    assert [(m[1], m[2]) for m in steps] == [("1", "1"), ("1", "2"), ("1", "3"),
                                              ("2", "1"), ("2", "2"), ("2", "3")]  # fmt: skip
    assert "level 2/2: 80x96 px" in printed.out and "level 2 done: preview" in printed.out


def test_fast_steps_are_one_line_every_so_many_seconds(pictures, weights_file, tmp_path, capsys):
    printed = _run(pictures, weights_file, tmp_path / "out.png", capsys)  # steps well under 10 s
    steps = _step_lines(printed.out.splitlines())
    assert [line.split(":")[0] for line in steps] == ["level 1 step 1", "level 2 step 1"]
    assert "\r" not in printed.out + printed.err


def test_step_lines_keep_their_distance_and_say_the_most_time_left():
    now = [0.0]
    lines = []
    lines_of = Progress(lines.append, every=10.0, clock=lambda: now[0])
    lines_of(LevelStarted(0, 1, (96, 80), 9, 0, 100))
    for step in range(1, 9):
        now[0] = 4.0 * step  # a step every 4 s
        lines_of(Stepped(0, step, 1.0, 2.0, 0.5, 0.1, 4.0))
    lines_of(LevelFinished(0, Path("level1.png")))
    steps = _step_lines(lines)
    assert [line.split(":")[0] for line in steps] == ["level 1 step 1", "level 1 step 4",
                                                      "level 1 step 7"]  # fmt: skip
    assert steps[0].endswith("4.00 s, level done in at most 7 min")  # 99 steps of 4 s
    assert lines[-1] == "level 1 done: preview level1.png"


def test_each_stage_besides_the_steps_says_how_long_it_took(pictures, weights_file, tmp_path,
                                                            capsys):  # fmt: skip
    lines = _run(pictures, weights_file, tmp_path / "out.png", capsys).out.splitlines()
    stages = [m.groups() for m in map(re.compile(r"^level (\d): (.+) in \d+\.\d\d s$").match, lines)
              if m]  # fmt: skip
    # and "overview" whenever one is written: not for levels of at most 256 px, as these
    per_level = ["state", "style Grams", "content target", "preview"]
    assert stages == [("1", s) for s in per_level] + [("2", s) for s in per_level] + [("2", "output")]

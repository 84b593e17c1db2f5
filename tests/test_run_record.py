"""run.json as daskstyle reads it: a record of an earlier daskstyle is read as today's."""

import dataclasses
import json

from daskstyle.run import record as run_record
from daskstyle.settings import Settings


def _write(workdir, settings: dict) -> None:
    text = {"daskstyle": run_record.FORMAT, "levels": 2, "settings": settings}
    (workdir / run_record.RECORD).write_text(json.dumps(text))


def test_settings_added_since_a_run_began_take_their_defaults(tmp_path):
    today = json.loads(json.dumps(dataclasses.asdict(Settings(max_iters=7))))
    earlier = {k: v for k, v in today.items() if k != "dpi"}  # begun before --dpi existed
    _write(tmp_path, earlier)
    settings = run_record.read_record(tmp_path)["settings"]
    assert settings == today  # its own max_iters kept, dpi at its default: resumes as the same
    assert settings["dpi"] == Settings().dpi


def test_a_recorded_setting_is_never_replaced_by_its_default(tmp_path):
    today = json.loads(json.dumps(dataclasses.asdict(Settings(dpi=600))))
    _write(tmp_path, today)
    assert run_record.read_record(tmp_path)["settings"]["dpi"] == 600

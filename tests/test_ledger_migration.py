"""Schema 1 -> 2: a ledger written by the schema-1 code (tests/fixtures/ledger_v1, made at tag layout-v1)
migrates in place on first open, keeps a backup, and reads back exactly what the old code read."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers.mturk import make_cfg
from mturk_eval.actions import status as status_mod
from mturk_eval.errors import UserError
from mturk_eval.ledger import SCHEMA_VERSION, Ledger, ledger_path

FIXTURE = Path(__file__).parent / "fixtures" / "ledger_v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def v1(tmp_path):
    cfg = make_cfg(tmp_path)
    path = ledger_path(cfg, "local")
    path.parent.mkdir(parents=True)
    shutil.copy(FIXTURE / "ledger.local.sqlite", path)
    return cfg, path


def _version(path: Path) -> str:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    finally:
        conn.close()


def test_schema1_ledger_migrates_in_place_and_reads_back_the_same(v1):
    cfg, path = v1
    assert _version(path) == "1"
    with Ledger.open(path) as led:
        assert led.get_meta("schema_version") == str(SCHEMA_VERSION) == "2"
        assert led.get_meta("platform") == "mturk" and led.get_meta("experiment") == "exp1"
        assert led.get_meta("instance") is None  # a schema-1 "local" ledger never named its URL
        assert led.ratings() == EXPECTED["ratings"] and len(EXPECTED["ratings"]) == 108
        assert led.batches() == EXPECTED["batches"]
        tasks = [{"hit_key": t.task_key, "batch": t.batch, "request_token": t.request_token,
                  "annotation": t.annotation, "hit_id": t.task_id, "hit_type_id": t.type_id,
                  "hit_group_id": t.group_id, "state": t.state, "max_assignments": t.places, "reward": t.reward,
                  "first_attempt_at": t.first_attempt_at, "item_ids": t.item_ids} for t in led.tasks()]
        assert tasks == EXPECTED["hits"]
        subs = [{"assignment_id": s.submission_id, "hit_id": s.task_id, "worker_id": s.rater_id,
                 "status": s.status, "valid": s.valid, "error": s.error, "simulated": s.simulated,
                 "attention_passed": s.attention_passed, "review_action": s.review_action,
                 "submit_time": s.submit_time, "work_time_s": s.work_time_s} for s in led.submissions()]
        assert subs == EXPECTED["assignments"]
        bonuses = [dict(b) for b in led.bonuses()]
        assert [{"assignment_id" if k == "submission_id" else "worker_id" if k == "rater_id" else k: v
                 for k, v in b.items()} for b in bonuses] == EXPECTED["bonuses"]
        assert {t: led.task_items(t) for t in EXPECTED["hit_items"]} == EXPECTED["hit_items"]
        # the stored QuestionFormAnswers were read into fields: every valid submission has its scores there
        first = led.submissions()[0]
        fields = led.submission_fields(first.submission_id)
        assert fields["mturk_eval_simulated"] == "1" and {f"i0_{a}" for a in ("fluency", "persona")} <= set(fields)
    # the backup is the untouched schema-1 file
    backup = path.with_name(path.name + ".schema1.bak")
    assert _version(backup) == "1"
    conn = sqlite3.connect(str(backup))
    try:
        assert conn.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == len(EXPECTED["assignments"])
    finally:
        conn.close()
    # a second open finds schema 2: nothing migrates again, the backup stays as it was
    stamp = backup.stat().st_mtime_ns
    with Ledger.open(path) as led:
        assert led.ratings() == EXPECTED["ratings"]
    assert backup.stat().st_mtime_ns == stamp and _version(path) == "2"


def test_workflow_verbs_read_a_migrated_ledger(v1):
    cfg, _ = v1
    rep = status_mod.status(cfg, target="local", offline=True)
    by_status: dict[str, int] = {}
    for a in EXPECTED["assignments"]:
        by_status[a["status"]] = by_status.get(a["status"], 0) + 1
    assert rep.assignments_by_status == by_status
    assert rep.hits_by_state == {"expired": len(EXPECTED["hits"])}
    # the first verb with a platform records nothing but still checks it: another platform is refused
    from helpers.mturk import FakeMTurk

    class Other(FakeMTurk):
        name = "links"

    with pytest.raises(UserError, match=r"ledger belongs to platform 'mturk', not 'links'"):
        status_mod.status(cfg, target="local", platform=Other())


def test_unknown_schema_is_refused(tmp_path):
    path = tmp_path / "l.sqlite"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '7')")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match=r"ledger schema version 7, expected 2"):
        Ledger.open(path)

"""The ledger API other parts rely on (docs/architecture.md section 5/6) and its invariants."""
from __future__ import annotations

import pytest

from helpers.mturk import make_cfg, response_row
from mturk_eval.config import ASPECTS
from mturk_eval.errors import UserError
from mturk_eval.ledger import Ledger, ledger_path


def _ledger(tmp_path, n=2, attention=False):
    led = Ledger.open(tmp_path / "l.sqlite")
    led.bind("exp1", "sandbox")
    items = [response_row(i) for i in range(n)]
    if attention:
        items.append({**response_row(99, method="attention_check", model="attention_check"),
                      "attention_check": {"aspects": {"fluency": 2}, "kind": "garbled"}})
    ids = [it["item_id"] for it in items]
    led.add_plan(items, [{"task_key": "main/00000", "batch": "main", "request_token": "t0", "annotation": "a0",
                          "places": 5, "reward": "0.05", "item_ids": ids}])
    led.record_created("main/00000", "3HIT1", "3TYPE", "3GROUP")
    return led, ids


def test_ledger_path_per_target(tmp_path):
    cfg = make_cfg(tmp_path)
    assert ledger_path(cfg, "sandbox") == tmp_path / "runs" / "exp1" / "ledger.sandbox.sqlite"
    assert ledger_path(cfg, "live").name == "ledger.live.sqlite"
    assert ledger_path(cfg, "local").name == "ledger.local.sqlite"
    with pytest.raises(UserError, match="target: expected one of sandbox, live, local"):
        ledger_path(cfg, "prod")


def test_hit_items_in_slot_order_with_attention_checks(tmp_path):
    led, ids = _ledger(tmp_path, 2, attention=True)
    items = led.task_items("3HIT1")
    assert [it["item_id"] for it in items] == ids and [it["slot"] for it in items] == [0, 1, 2]
    assert items[0]["attention_check"] is None and items[0]["persona"] == ["i like cats.", "i am a nurse."]
    assert items[0]["utterance"] and items[0]["response"] and items[0]["method"] == "prompt_tuning"
    assert items[2]["attention_check"]["aspects"] == {"fluency": 2}
    assert led.task_items("main/00000") == items  # by hit_key too
    assert led.task_items("3NOPE") == []


def test_ratings_long_format(tmp_path):
    led, ids = _ledger(tmp_path, 1, attention=True)
    scores = {0: dict(zip(ASPECTS, (4, 3, 5, 2))), 1: dict(zip(ASPECTS, (1, 1, 1, 1)))}
    led.store_submission(submission_id="3A1", task_id="3HIT1", rater_id="AW1", status="Submitted", accept_time=100.0,
                         submit_time=130.0, raw_answer="<x/>", scores=scores, error=None, simulated=True,
                         attention_passed=True)
    rows = led.ratings()
    assert len(rows) == 8
    assert list(rows[0]) == ["item_id", "eval_set", "method", "model", "persona_id", "worker_id", "assignment_id",
                             "aspect", "score", "attention_check", "attention_passed", "simulated", "work_time_s",
                             "status"]
    assert [r["aspect"] for r in rows[:4]] == list(ASPECTS) and [r["score"] for r in rows[:4]] == [4, 3, 5, 2]
    first = rows[0]
    assert (first["item_id"], first["eval_set"], first["method"], first["model"], first["persona_id"]) == (
        ids[0], "persona", "prompt_tuning", "smollm2-135m", "p1")
    assert (first["worker_id"], first["assignment_id"], first["attention_check"], first["attention_passed"],
            first["simulated"], first["work_time_s"], first["status"]) == ("AW1", "3A1", 0, 1, 1, 30.0, "Submitted")
    assert all(r["attention_check"] == 1 for r in rows[4:])


def test_store_assignment_is_idempotent_and_invalid_answers_have_no_ratings(tmp_path):
    led, _ = _ledger(tmp_path, 1)
    s = {0: dict(zip(ASPECTS, (4, 3, 5, 2)))}
    kw = dict(task_id="3HIT1", rater_id="AW1", accept_time=1.0, submit_time=2.0, raw_answer="<x/>", error=None,
              simulated=False, attention_passed=None)
    assert led.store_submission(submission_id="3A1", status="Submitted", scores=s, **kw) is True
    assert led.store_submission(submission_id="3A1", status="Approved", scores=s, **kw) is False
    assert len(led.ratings()) == 4 and led.ratings()[0]["status"] == "Approved"
    led.store_submission(submission_id="3A2", status="Submitted", scores=None, **{**kw, "error": "i0_persona: missing"})
    assert len(led.ratings()) == 4
    bad = [a for a in led.submissions() if a.submission_id == "3A2"][0]
    assert not bad.valid and bad.error == "i0_persona: missing" and led.answer_count("3A2") == 0


def test_bind_refuses_another_experiment_or_target(tmp_path):
    led, _ = _ledger(tmp_path)
    led.close()
    led = Ledger.open(tmp_path / "l.sqlite")
    with pytest.raises(UserError, match="ledger belongs to experiment 'exp1', not 'other'"):
        led.bind("other", "sandbox")
    with pytest.raises(UserError, match="ledger belongs to target 'sandbox', not 'live'"):
        led.bind("exp1", "live")


def test_open_errors(tmp_path):
    with pytest.raises(UserError, match="no ledger here yet"):
        Ledger.open(tmp_path / "missing.sqlite", create=False)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match="not a readable ledger"):
        Ledger.open(junk)


def test_a_failed_transaction_writes_nothing(tmp_path):
    led, _ = _ledger(tmp_path, 1)
    with pytest.raises(Exception):
        # The second HIT reuses a request token: the whole plan is rolled back.
        led.add_plan([response_row(5)], [
            {"task_key": "main/00001", "batch": "main", "request_token": "t1", "annotation": "a1",
             "places": 5, "reward": "0.05", "item_ids": [response_row(5)["item_id"]]},
            {"task_key": "main/00002", "batch": "main", "request_token": "t1", "annotation": "a2",
             "places": 5, "reward": "0.05", "item_ids": [response_row(5)["item_id"]]}])
    assert [h.task_key for h in led.tasks()] == ["main/00000"]
    assert response_row(5)["item_id"] not in led.known_item_ids()

"""collect: paged ListAssignmentsForHIT under the Stubber, validation, simulated and attention marks,
idempotence, the batch-results CSV export; status from the ledger."""
from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from helpers.mturk import (FakeMTurk, assignment, hit_response, make_cfg, qfa_xml, rating_fields, stubbed,
                           write_responses)
from mturk_eval.actions import collect as col
from mturk_eval.actions import publish as pub
from mturk_eval.actions import status as st
from mturk_eval.cli import main
from mturk_eval.errors import UserError
from mturk_eval.ledger import Ledger, ledger_path

STATUSES = ["Submitted", "Approved", "Rejected"]
GOOD = {"fluency": 4, "engagingness": 3, "relevance": 5, "persona": 2}


def _published(tmp_path, n=2, **hit):
    cfg = make_cfg(tmp_path, **hit)
    responses = write_responses(tmp_path / "r.jsonl", n)
    pub.publish(cfg, responses, platform=FakeMTurk(), echo=lambda s: None, progress=False)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        return cfg, led.tasks()


def _open_hit(n, **kw):
    """GetHIT's answer for a HIT that expires a day from now (helpers' NOW is a fixed date)."""
    r = hit_response(n, **kw)
    r["HIT"]["Expiration"] = time.time() + 86400
    return r


def _stub_hit(stub, hid, pages):
    for i, page in enumerate(pages):
        params = {"HITId": hid, "MaxResults": 100, "AssignmentStatuses": STATUSES}
        if i:
            params["NextToken"] = f"t{i}"
        resp = {"Assignments": page, "NumResults": len(page)}
        if i + 1 < len(pages):
            resp["NextToken"] = f"t{i + 1}"
        stub.add_response("list_assignments_for_hit", resp, params)


def test_collect_stores_valid_invalid_and_simulated_answers(tmp_path):
    cfg, hits = _published(tmp_path)
    h0, h1 = hits[0].task_id, hits[1].task_id
    plat, stub = stubbed()
    _stub_hit(stub, h0, [[assignment("3A1", h0, "AW1", qfa_xml(rating_fields(GOOD)))],
                         [assignment("3A2", h0, "AW2", qfa_xml(rating_fields(GOOD, simulated=True)))]])
    _stub_hit(stub, h1, [[assignment("3A3", h1, "AW1", qfa_xml({"i0_fluency": "9"}))]])
    res = col.collect(cfg, platform=plat, progress=False)
    stub.assert_no_pending_responses()
    assert (res.hits, res.new, res.updated, res.invalid, res.simulated) == (2, 3, 0, 1, 1)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        rows = led.ratings()
        assert len(rows) == 8 and {r["assignment_id"] for r in rows} == {"3A1", "3A2"}
        assert {r["simulated"] for r in rows if r["assignment_id"] == "3A2"} == {1}
        assert rows[0]["work_time_s"] == 42.0 and rows[0]["worker_id"] == "AW1"
        bad = [a for a in led.submissions() if a.submission_id == "3A3"][0]
        assert not bad.valid and "i0_fluency: expected an integer 1..5, got 9" in bad.error

    # Idempotent: the same submissions again change nothing but statuses.
    plat, stub = stubbed()
    _stub_hit(stub, h0, [[assignment("3A1", h0, "AW1", qfa_xml(rating_fields(GOOD)), "Approved"),
                          assignment("3A2", h0, "AW2", qfa_xml(rating_fields(GOOD, simulated=True)))]])
    _stub_hit(stub, h1, [[]])
    res = col.collect(cfg, platform=plat, progress=False)
    assert (res.new, res.updated) == (0, 2)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert len(led.ratings()) == 8
        assert {r["status"] for r in led.ratings() if r["assignment_id"] == "3A1"} == {"Approved"}


def test_attention_results_are_stored(tmp_path):
    cfg, hits = _published(tmp_path, n=1, items_per_hit=2, attention_check_rate=0.5)
    (h,) = hits
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        items = led.task_items(h.task_id)
    k = next(i for i, it in enumerate(items) if it["attention_check"])
    aspect, limit = next(iter(items[k]["attention_check"]["aspects"].items()))
    passing = [dict(GOOD), dict(GOOD)]
    passing[k][aspect] = limit
    failing = [dict(GOOD), dict(GOOD)]
    failing[k][aspect] = 5
    plat, stub = stubbed()
    _stub_hit(stub, h.task_id, [[assignment("3A1", h.task_id, "AW1", qfa_xml(rating_fields(passing))),
                                assignment("3A2", h.task_id, "AW2", qfa_xml(rating_fields(failing)))]])
    res = col.collect(cfg, platform=plat, progress=False)
    assert res.attention_failed == 1
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        by = {r["assignment_id"]: r for r in led.ratings()}
        assert by["3A1"]["attention_passed"] == 1 and by["3A2"]["attention_passed"] == 0
        assert sum(r["attention_check"] for r in led.ratings()) == 8


def test_export_batch_csv(tmp_path):
    from mturk_eval.analysis.batch_csv import BATCH_FIXED_COLUMNS, read_batch_csv
    cfg, hits = _published(tmp_path, n=1)
    h = hits[0].task_id
    plat, stub = stubbed()
    _stub_hit(stub, h, [[assignment("3A1", h, "AW1", qfa_xml(rating_fields(GOOD)))]])
    out = tmp_path / "batch.csv"
    res = col.collect(cfg, platform=plat, export_csv=out, progress=False)
    assert res.exported == out
    b = read_batch_csv(out)
    assert b.columns[:27] == list(BATCH_FIXED_COLUMNS) and b.columns[-2:] == ["Approve", "Reject"]
    row = b.rows[0]
    # The export leaves the machine: worker and assignment ids as the experiment's pseudonyms.
    from mturk_eval.privacy import Pseudonymiser
    pseud = Pseudonymiser.for_run(cfg.run_dir)
    assert row["HITId"] == h and row["WorkerId"] == pseud.rater("AW1") and row["Reward"] == "$0.05"
    assert row["AssignmentId"] == pseud.submission("3A1") and "AW1" not in out.read_text()
    assert row["Answer.i0_fluency"] == "4" and row["WorkTimeInSeconds"] == "42"
    assert row["Input.i0_item_id"].startswith("persona.p1.") and row["SubmitTime"].endswith("UTC 2026")


def test_one_website_time_format_for_the_export_and_the_local_mturk():
    """`collect --export-csv` (platforms/mturk/batch_export.py) and the local MTurk's own download
    (emulators/mturk/batch_results.py) write times with the same formatter: the website's."""
    from mturk_eval.emulators.mturk import batch_results
    from mturk_eval.platforms.mturk import batch_export
    assert batch_export.website_time(1572532868) == "Thu Oct 31 14:41:08 UTC 2019"
    assert batch_export.website_time(None) == ""
    assert batch_results.website_time is batch_export.website_time
    assert not hasattr(col, "batch_rows")  # the MTurk file format lives with the MTurk platform


def test_collect_without_a_ledger_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no ledger here yet"):
        col.collect(make_cfg(tmp_path), platform=FakeMTurk(), progress=False)


def test_status_counts_cost_and_eta(tmp_path):
    cfg, hits = _published(tmp_path, n=2)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        t0 = led.task_status_rows()[0]["created_at"]
        for n, aid in enumerate(["3A1", "3A2", "3A3"]):
            led.store_submission(submission_id=aid, task_id=hits[0].task_id, rater_id=f"AW{n}",
                                 status="Approved" if n < 2 else "Submitted", accept_time=t0, submit_time=t0 + 60,
                                 raw_answer="<x/>", scores={0: GOOD}, error=None, simulated=False,
                                 attention_passed=None)
    plat, stub = stubbed()
    # MTurk: HIT 0 has 3 finished (2 approved = "completed", 1 submitted), all collected; HIT 1 has 2
    # submitted that collect has not fetched yet.
    for h, (available, completed) in zip(hits, [(1, 2), (2, 0)]):
        stub.add_response("get_hit", _open_hit(int(h.task_id[4:]), status="Assignable", pending=1,
                                               available=available, completed=completed), {"HITId": h.task_id})
    rep = st.status(cfg, platform=plat, now=t0 + 300)
    stub.assert_no_pending_responses()
    assert rep.hits_by_state == {"created": 2} and rep.hits_by_status == {"Assignable": 2}
    assert rep.assignments_total == 10 and rep.assignments_by_status == {"Approved": 2, "Submitted": 1}
    assert (rep.in_progress, rep.available) == (2, 3)
    assert rep.mturk_finished == (5, 5) and rep.uncollected == (2, 2)
    assert str(rep.cost_so_far) == "0.12"        # 2 approved x ($0.05 + $0.01)
    assert str(rep.cost_committed) == "0.60"     # 10 assignments x $0.06
    assert rep.eta_s == pytest.approx(300.0)     # 5 left at 5 (finished on MTurk) per 300 s
    text = rep.format()
    assert "cost so far: $0.12" in text and "estimated time left: 5m 00s" in text
    assert ("assignments on MTurk: 5 of 10 finished (submitted, approved or rejected); 2 in progress,"
            " 3 available") in text
    assert ("assignments collected: 3 (Approved 2, Submitted 1); 2 finished on MTurk not collected yet:"
            " run `mturk-eval collect`") in text
    offline = st.status(cfg, offline=True, now=t0 + 300)
    assert offline.assignments_by_status == rep.assignments_by_status
    assert offline.mturk_finished == rep.mturk_finished and "(as last asked, " in offline.format()


def test_status_counts_a_deleted_hit_once_as_deleted(tmp_path):
    """After ``expire --delete`` a deleted HIT keeps its last-seen MTurk status in the ledger; status must
    not count it again under that status (it showed "Reviewable 94" for 47 HITs on the server)."""
    cfg, hits = _published(tmp_path, n=2)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        for h in hits:
            led.record_task_status(h.task_id, "Reviewable", 0, 0, 5, None)
        led.set_task_state(hits[0].task_id, "deleted")
    plat, stub = stubbed()
    stub.add_response("get_hit", hit_response(int(hits[1].task_id[4:]), status="Reviewable", pending=0, available=0,
                                              completed=0), {"HITId": hits[1].task_id})  # only the live one
    rep = st.status(cfg, platform=plat)
    stub.assert_no_pending_responses()
    assert rep.hits_by_state == {"created": 1, "deleted": 1}
    assert rep.hits_by_status == {"Reviewable": 1, "deleted": 1}
    assert "HITs (MTurk):  Reviewable 1, deleted 1" in rep.format()
    assert st.status(cfg, offline=True).hits_by_status == {"Reviewable": 1, "deleted": 1}


def test_status_after_workers_finished_but_before_collect(tmp_path):
    """The walkthrough's case: every assignment submitted on MTurk (HITs Reviewable), none collected."""
    cfg, hits = _published(tmp_path, n=2)
    plat, stub = stubbed()
    for h in hits:
        stub.add_response("get_hit", _open_hit(int(h.task_id[4:]), status="Reviewable", pending=0, available=0,
                                               completed=0), {"HITId": h.task_id})
    text = st.status(cfg, platform=plat).format()
    assert ("assignments on MTurk: 10 of 10 finished (submitted, approved or rejected); 0 in progress,"
            " 0 available") in text
    assert ("assignments collected: 0 (none); 10 finished on MTurk not collected yet: run `mturk-eval collect`"
            in text)
    assert "estimated time left: done" in text
    # --offline before any status has asked MTurk says so
    cfg2, _ = _published(tmp_path / "b", n=1)
    assert "assignments on MTurk: not asked yet (run status without --offline)" in st.status(cfg2, offline=True).format()


def test_status_of_expired_hits_before_and_after_collect(tmp_path):
    """An expired HIT's GetHIT cannot tell never-taken assignments from submitted ones: status gives a
    range until a complete collect after the expiry settles it."""
    cfg, hits = _published(tmp_path, n=1)
    past = 1_000_000.0
    plat, stub = stubbed()
    shape = hit_response(int(hits[0].task_id[4:]), status="Reviewable", pending=0, available=0, completed=0)
    shape["HIT"]["Expiration"] = past
    stub.add_response("get_hit", shape, {"HITId": hits[0].task_id})
    rep = st.status(cfg, platform=plat)
    assert rep.mturk_finished == (0, 5) and rep.uncollected == (0, 5)
    text = rep.format()
    assert "0 to 5 of 5 finished" in text and "never taken" in text
    assert "up to 5 finished on MTurk may not be collected yet: run `mturk-eval collect`" in text
    plat, stub = stubbed()
    _stub_hit(stub, hits[0].task_id, [[]])
    col.collect(cfg, platform=plat, progress=False)
    rep = st.status(cfg, offline=True)
    assert rep.mturk_finished == (0, 0) and rep.uncollected == (0, 0)
    assert "collected: 0 (none)\n" in rep.format()


def test_cli_status_and_collect_help(tmp_path):
    runner = CliRunner()
    for verb, opts in (("status", ["--offline", "--endpoint-url", "--sandbox / --live"]),
                       ("collect", ["--export-csv", "--endpoint-url"])):
        r = runner.invoke(main, [verb, "--help"])
        assert r.exit_code == 0 and all(o in r.output for o in opts)
    cfg, _ = _published(tmp_path, n=1)
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n')
    r = runner.invoke(main, ["status", "--config", str(conf), "--offline"])
    assert r.exit_code == 0 and "HITs (ledger): created 1" in r.output
    r = runner.invoke(main, ["status", "--config", str(conf), "--offline", "--live"])
    assert r.exit_code == 2 and "no ledger here yet" in r.output

"""review and expire: dry run by default, approval only of stored answers, opt-in rejection with
readable feedback, bonuses paid once (token + ledger), blocks, expire/delete under the Stubber."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from helpers.mturk import FakeMTurk, hit_response, make_cfg, stubbed, write_responses
from mturk_eval.actions import expire as ex
from mturk_eval.actions import publish as pub
from mturk_eval.actions import review as rv
from mturk_eval.cli import main
from mturk_eval.errors import UserError
from mturk_eval.ledger import Ledger, ledger_path

GOOD = {"fluency": 4, "engagingness": 3, "relevance": 5, "persona": 2}


def _setup(tmp_path):
    """Three stored assignments: 3A1 good, 3A2 failed an attention check, 3A3 invalid answer."""
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 1)
    pub.publish(cfg, responses, platform=FakeMTurk(), echo=lambda s: None, progress=False)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        hid = led.hits()[0].hit_id
        for aid, worker, scores, passed in (("3A1", "AW1", {0: GOOD}, None), ("3A2", "AW2", {0: GOOD}, False),
                                            ("3A3", "AW3", None, None)):
            led.store_assignment(assignment_id=aid, hit_id=hid, worker_id=worker, status="Submitted", accept_time=1.0,
                                 submit_time=2.0, answer_xml="<x/>", scores=scores,
                                 error=None if scores else "i0_persona: missing", simulated=False,
                                 attention_passed=passed)
    return cfg, hid


def test_dry_run_by_default_makes_no_call(tmp_path):
    cfg, _ = _setup(tmp_path)
    plat, stub = stubbed()  # any call would fail: nothing is stubbed
    acts = rv.review(cfg, platform=plat)
    assert [(a.kind, a.assignment_id) for a in acts] == [("approve", "3A1"), ("approve", "3A2"), ("skip", "3A3")]
    assert "failed attention check" in acts[1].detail and "i0_persona: missing" in acts[2].detail
    assert not any(a.done for a in acts)


def test_apply_approves_rejects_with_feedback_bonuses_and_blocks(tmp_path):
    cfg, _ = _setup(tmp_path)
    plat, stub = stubbed()
    stub.add_response("approve_assignment", {}, {"AssignmentId": "3A1"})
    stub.add_response("reject_assignment", {}, {"AssignmentId": "3A2", "RequesterFeedback": rv.DEFAULT_REJECT_FEEDBACK})
    token = rv.bonus_token("exp1", "sandbox", "3A1", "bonus")
    assert len(token) <= 64
    stub.add_response("send_bonus", {}, {"WorkerId": "AW1", "BonusAmount": "0.10", "AssignmentId": "3A1",
                                         "Reason": "Thanks for careful work", "UniqueRequestToken": token})
    stub.add_response("create_worker_block", {}, {"WorkerId": "AW2", "Reason": rv.DEFAULT_BLOCK_REASON})
    acts = rv.review(cfg, platform=plat, apply=True, reject_failed_attention=True, block_failed_attention=True,
                     bonus="0.10", bonus_reason="Thanks for careful work")
    stub.assert_no_pending_responses()
    assert [(a.kind, a.done) for a in acts] == [("approve", True), ("reject", True), ("skip", False),
                                                ("bonus", True), ("block", True)]
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        st = {a.assignment_id: a.status for a in led.assignments()}
        assert st == {"3A1": "Approved", "3A2": "Rejected", "3A3": "Submitted"}
        assert [b["state"] for b in led.bonuses()] == ["paid"] and led.block("AW2")["state"] == "blocked"
        assert led.assignment_record("3A2")["feedback"] == rv.DEFAULT_REJECT_FEEDBACK

    # A rerun, even with another amount, pays no second bonus and repeats nothing.
    plat, stub = stubbed()
    acts = rv.review(cfg, platform=plat, apply=True, reject_failed_attention=True, block_failed_attention=True,
                     bonus="0.50", bonus_reason="again")
    assert [a.kind for a in acts] == ["skip"]
    stub.assert_no_pending_responses()


def test_bonus_crash_between_ledger_and_call_does_not_pay_twice(tmp_path):
    cfg, _ = _setup(tmp_path)
    fake = FakeMTurk()
    rv.review(cfg, platform=fake, apply=True)  # approve 3A1, 3A2
    token = rv.bonus_token("exp1", "sandbox", "3A1", "bonus")
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        led.add_bonus(token, "3A1", "AW1", "0.10", "thanks")  # crashed after the call, before 'paid'
    plat, stub = stubbed()
    stub.add_client_error("send_bonus", "RequestError", "The UniqueRequestToken has already been used", 400,
                          expected_params={"WorkerId": "AW1", "BonusAmount": "0.10", "AssignmentId": "3A1",
                                           "Reason": "thanks", "UniqueRequestToken": token})
    stub.add_response("send_bonus", {}, {"WorkerId": "AW2", "BonusAmount": "0.10", "AssignmentId": "3A2",
                                         "Reason": "thanks",
                                         "UniqueRequestToken": rv.bonus_token("exp1", "sandbox", "3A2", "bonus")})
    rv.review(cfg, platform=plat, apply=True, bonus="0.10", bonus_reason="thanks")
    stub.assert_no_pending_responses()
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert [b["state"] for b in led.bonuses()] == ["paid", "paid"]


def test_resumed_pending_bonus_is_sent_as_stored_not_with_new_options(tmp_path):
    cfg, _ = _setup(tmp_path)
    rv.review(cfg, platform=FakeMTurk(), apply=True)  # approve 3A1, 3A2
    token = rv.bonus_token("exp1", "sandbox", "3A1", "bonus")
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        led.add_bonus(token, "3A1", "AW1", "0.10", "thanks")  # crashed before the SendBonus call
    plat, stub = stubbed()
    stub.add_response("send_bonus", {}, {"WorkerId": "AW1", "BonusAmount": "0.10", "AssignmentId": "3A1",
                                         "Reason": "thanks", "UniqueRequestToken": token})
    stub.add_response("send_bonus", {}, {"WorkerId": "AW2", "BonusAmount": "0.50", "AssignmentId": "3A2",
                                         "Reason": "new reason",
                                         "UniqueRequestToken": rv.bonus_token("exp1", "sandbox", "3A2", "bonus")})
    acts = rv.review(cfg, platform=plat, apply=True, bonus="0.50", bonus_reason="new reason")
    stub.assert_no_pending_responses()
    resumed = [a for a in acts if a.assignment_id == "3A1"][0]
    assert "stored amount and reason are sent, not --bonus 0.50" in resumed.detail
    assert rv.bonus_total(acts, "0.50") == (2, rv.Decimal("0.72"))  # 0.10 + 0.01 fee, 0.50 + 0.10 fee
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert {(b["assignment_id"], b["amount"], b["reason"], b["state"]) for b in led.bonuses()} == {
            ("3A1", "0.10", "thanks", "paid"), ("3A2", "0.50", "new reason", "paid")}


def test_old_pending_bonus_found_by_list_bonus_payments_is_not_sent_again(tmp_path):
    cfg, _ = _setup(tmp_path)
    rv.review(cfg, platform=FakeMTurk(), apply=True)
    token = rv.bonus_token("exp1", "sandbox", "3A1", "bonus")
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        led.add_bonus(token, "3A1", "AW1", "0.10", "thanks")  # paid, but the run died before 'paid'
        led.conn.execute("UPDATE bonuses SET created_at = created_at - 2 * 86400")  # token forgotten by now
        led.conn.commit()
    plat, stub = stubbed()
    stub.add_response("list_bonus_payments", {"NumResults": 1, "BonusPayments": [
        {"WorkerId": "AW1", "BonusAmount": "0.10", "AssignmentId": "3A1", "Reason": "thanks"}]},
        {"AssignmentId": "3A1", "MaxResults": 100})
    # 3A2's bonus is new (no lookup): it is sent; 3A1's is found paid and not sent again.
    stub.add_response("send_bonus", {}, {"WorkerId": "AW2", "BonusAmount": "0.10", "AssignmentId": "3A2",
                                         "Reason": "thanks",
                                         "UniqueRequestToken": rv.bonus_token("exp1", "sandbox", "3A2", "bonus")})
    acts = rv.review(cfg, platform=plat, apply=True, bonus="0.10", bonus_reason="thanks")
    stub.assert_no_pending_responses()
    bonuses = [a for a in acts if a.kind == "bonus"]
    assert [(a.assignment_id, a.done) for a in bonuses] == [("3A1", True), ("3A2", True)]
    assert "found already paid (ListBonusPayments), not sent again" in bonuses[0].detail
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert [b["state"] for b in led.bonuses()] == ["paid", "paid"]


def test_never_approves_without_stored_answers(tmp_path):
    cfg, hid = _setup(tmp_path)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        led.conn.execute("DELETE FROM answers WHERE assignment_id='3A1'")
    plat, stub = stubbed()
    stub.add_response("approve_assignment", {}, {"AssignmentId": "3A2"})
    acts = rv.review(cfg, platform=plat, apply=True)
    stub.assert_no_pending_responses()
    assert ("skip", "3A1") in [(a.kind, a.assignment_id) for a in acts]


@pytest.mark.parametrize("opts, message", [
    ({"bonus": "ten"}, "--bonus: expected dollars"),
    ({"bonus": "0.10"}, "--bonus-reason: workers see it"),
    ({"reject_failed_attention": True, "feedback": " "}, "--feedback: a rejected worker must be told why"),
    ({"block_workers": ("bob",)}, "--block: expected a worker id"),
])
def test_review_option_errors(tmp_path, opts, message):
    cfg, _ = _setup(tmp_path)
    with pytest.raises(UserError, match=message):
        rv.review(cfg, platform=FakeMTurk(), **opts)


def test_expire_and_delete(tmp_path):
    cfg, hid = _setup(tmp_path)
    plat, stub = stubbed()
    from mturk_eval.platforms.mturk.mturk_platform import EXPIRE_AT
    stub.add_response("update_expiration_for_hit", {}, {"HITId": hid, "ExpireAt": EXPIRE_AT})
    out = ex.expire(cfg, platform=plat)
    assert [(o.hit_id, o.action) for o in out] == [(hid, "expired")]
    assert ex.expire(cfg, platform=plat) == []  # already expired: no second call
    n = int(hid[4:])
    stub.add_response("get_hit", hit_response(n, status="Reviewable", available=0), {"HITId": hid})
    out = ex.expire(cfg, platform=plat, delete=True)
    assert out[0].action == "skipped" and "not yet approved or rejected" in out[0].detail
    rv.review(cfg, platform=FakeMTurk(), apply=True, reject_failed_attention=True)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        led.set_assignment_status("3A3", "Rejected")
    stub.add_response("get_hit", hit_response(n, status="Reviewable", available=0), {"HITId": hid})
    stub.add_response("delete_hit", {}, {"HITId": hid})
    out = ex.expire(cfg, platform=plat, delete=True)
    assert out[0].action == "deleted"
    stub.assert_no_pending_responses()
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert led.hits()[0].state == "deleted"


def test_delete_refuses_a_hit_with_completed_assignments_not_collected(tmp_path):
    """Auto-approved assignments never collected are not 'Submitted' in the ledger: deleting their HIT
    would lose their answers."""
    cfg, hid = _setup(tmp_path)
    rv.review(cfg, platform=FakeMTurk(), apply=True, reject_failed_attention=True)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        led.set_assignment_status("3A3", "Rejected")  # 3 stored, all decided
    n = int(hid[4:])
    plat, stub = stubbed()
    stub.add_response("get_hit", hit_response(n, status="Reviewable", available=0, completed=5), {"HITId": hid})
    out = ex.expire(cfg, platform=plat, delete=True)
    stub.assert_no_pending_responses()
    assert out[0].action == "skipped" and "MTurk has 5 completed assignments but the ledger only 3: run collect" \
        in out[0].detail
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert led.hits()[0].state != "deleted"
    stub.add_response("get_hit", hit_response(n, status="Reviewable", available=0, completed=3), {"HITId": hid})
    stub.add_response("delete_hit", {}, {"HITId": hid})
    assert [o.action for o in ex.expire(cfg, platform=plat, delete=True)] == ["deleted"]
    stub.assert_no_pending_responses()


def test_cli_review_dry_run(tmp_path, monkeypatch):
    cfg, _ = _setup(tmp_path)
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n')
    import mturk_eval.actions.review as review_mod
    monkeypatch.setattr(review_mod, "make_platform", lambda *a, **k: pytest.fail("dry run must not connect"))
    r = CliRunner().invoke(main, ["review", "--config", str(conf)])
    assert r.exit_code == 0, r.output
    assert "would  approve 3A1" in r.output and "dry run (use --apply): approve 2, skip 1" in r.output
    r = CliRunner().invoke(main, ["review", "--config", str(conf), "--bonus", "1.5"])
    assert r.exit_code == 2 and "--bonus-reason" in r.output
    h = CliRunner().invoke(main, ["review", "--help"]).output
    for opt in ("--apply", "--reject-failed-attention", "--feedback", "--block", "--bonus", "--bonus-reason"):
        assert opt in h
    h = CliRunner().invoke(main, ["expire", "--help"]).output
    assert "--delete" in h and "--dry-run" in h


def test_cli_live_bonuses_show_cost_and_need_yes(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 1)
    pub.publish(cfg, responses, target="live", platform=FakeMTurk(), yes=True, echo=lambda s: None, progress=False)
    with Ledger.open(ledger_path(cfg, "live")) as led:
        hid = led.hits()[0].hit_id
        led.store_assignment(assignment_id="3A1", hit_id=hid, worker_id="AW1", status="Approved", accept_time=1.0,
                             submit_time=2.0, answer_xml="<x/>", scores={0: GOOD}, error=None, simulated=False,
                             attention_passed=None)
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n')
    fake = FakeMTurk()
    import mturk_eval.actions.review as review_mod
    monkeypatch.setattr(review_mod, "make_platform", lambda *a, **k: fake)
    args = ["review", "--config", str(conf), "--live", "--apply", "--bonus", "1.00", "--bonus-reason", "great"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "1 bonuses of $1.00 cost $1.20 with MTurk's fee" in r.output and "--yes" in r.output
    with Ledger.open(ledger_path(cfg, "live")) as led:
        assert led.bonuses() == []
    r = CliRunner().invoke(main, args + ["--yes"])
    assert r.exit_code == 0 and "applied: bonus 1 (bonuses $1.20 with fees)" in r.output

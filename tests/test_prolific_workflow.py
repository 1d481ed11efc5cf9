"""End to end on the Prolific emulator through the CLI: publish, participants (some return, some walk
away and time out), status, collect, review with rejections, bonuses and blocks, expire, report; and
the exactly-once rules of a rerun."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from click.testing import CliRunner

from mturk_eval.cli import main
from mturk_eval.emulators.prolific.participants import simulate_participants, store_items
from mturk_eval.emulators.simulate import RatingModel
from mturk_eval.ledger import Ledger
from mturk_eval.platforms.prolific import fees
from mturk_eval.platforms.prolific.records import Records
from mturk_eval.platforms.prolific.workflow import ledger_file
from tests.helpers.prolific import emulator, load, site_for, write_config, write_responses


def run(*args: str) -> str:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def money(line_re: str, out: str) -> Decimal:
    return Decimal(re.search(line_re, out).group(1))


@pytest.fixture
def study(tmp_path):
    extra = '[report]\nbootstrap_samples = 50'
    cfg_path = write_config(tmp_path, k=2, per_task=2, attention=0.25, extra=extra)
    cfg = load(tmp_path, k=2, per_task=2, attention=0.25, extra=extra)
    responses = write_responses(tmp_path, 6)
    with emulator() as emu, site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox", "--api-url", emu.url]
        yield cfg, cfg_path, responses, emu, site, base


def test_a_study_from_publish_to_report(study):
    cfg, cfg_path, responses, emu, site, base = study
    out = run("publish", *base, "--responses", str(responses), "--public-url", site.url)
    assert "created and published" in out
    shown_publish = money(r"cost of this run: .*\(counted: £([0-9.]+)\)", out)
    state = emu.state()
    (st,) = state["studies"]
    places = st["total_available_places"]
    assert places == 4 * 2 and st["status"] == "ACTIVE"  # 6 items + 2 checks in 4 tasks, 2 participants each

    # First wave: some return, some walk away mid-task.
    model = RatingModel(careless_share=0.3)
    first = simulate_participants(emu.url, st["id"], 6, seed=5, model=model, return_share=0.2, abandon_share=0.2,
                                  items_of=store_items(site.store))
    assert first.returned and first.abandoned and first.completed
    emu.backend.advance_clock(21 * 60)  # past maximum_allowed_time: the walk-aways time out
    out = run("collect", *base)
    assert f"{len(first.returned) + len(first.abandoned)} tasks freed" in out
    statuses = {s["status"] for s in emu.state()["submissions"]}
    assert {"RETURNED", "TIMED-OUT", "AWAITING REVIEW"} <= statuses

    # Second wave fills the freed places; everybody sees the code the site gave.
    second = simulate_participants(emu.url, st["id"], 12, seed=6, model=model, items_of=store_items(site.store))
    assert len(first.completed) + len(second.completed) == places
    assert set(first.completed.values()) | set(second.completed.values()) <= {c["code"] for c in
                                                                               emu.backend.study(st["id"])["completion_codes"]}
    out = run("status", *base)
    assert "AWAITING REVIEW 8" in out and "8/8 places taken" in out
    run("collect", *base)

    out = run("review", *base, "--bonus", "0.30", "--reject-failed-attention", "--block-failed-attention")
    assert "dry run" in out
    assert not any(s["status"] in ("APPROVED", "REJECTED") for s in emu.state()["submissions"])
    out = run("review", *base, "--bonus", "0.30", "--reject-failed-attention", "--block-failed-attention", "--apply")
    rejected = int(re.search(r"reject (\d+)", out).group(1))
    approved = int(re.search(r"approve (\d+)", out).group(1))
    assert approved + rejected == places and approved >= 1
    shown_bonus = money(r"bonus \d+ x 0.30 = .* = £([0-9.]+)", out)
    again = run("review", *base, "--bonus", "0.30", "--apply")
    assert "approve 0, reject 0, bonus 0" in again

    s = emu.state()
    subs = [x for x in s["submissions"] if x["status"] in ("APPROVED", "REJECTED")]
    assert sum(x["status"] == "APPROVED" for x in subs) == approved
    paid = [p["submission_id"] for p in s["bonus_payments"]]
    assert sorted(paid) == sorted(x["id"] for x in subs if x["status"] == "APPROVED")  # each bonus once
    spent = sum(Decimal(str(c["rewards"] + c["fees"] + c["vat"])) for c in s["charges"])
    assert fees.Cost(spent, Decimal(0), Decimal(0)).major() == shown_publish + shown_bonus  # shown = spent
    assert len(s["studies"]) == 1
    with Ledger.open(ledger_file(cfg, True)) as ledger:
        rec = Records(ledger.conn).study("main")
        assert Decimal(str(rec.shown_cost)) == Decimal(str(s["charges"][0]["rewards"] + s["charges"][0]["fees"]))
        assert len(ledger.ratings()) == places * 2 * 4
    if rejected:
        assert "blocked" in out
        group = emu.backend.list_groups(None)[0]
        assert group["participant_count"] >= 1

    out = run("report", "--config", str(cfg_path), "--target", "prolific-emulator", "--no-plots", "--quiet")
    assert "is COMPLETED: nothing to pause" in run("expire", *base)


def test_expire_pauses_and_stop_is_final_and_confirmed(study):
    cfg, cfg_path, responses, emu, site, base = study
    run("publish", *base, "--responses", str(responses), "--public-url", site.url)
    assert "paused; status PAUSED" in run("expire", *base)
    r = CliRunner().invoke(main, ["expire", *base, "--stop"])
    assert r.exit_code == 2 and "STOP is final" in r.output and "not confirmed" in r.output
    assert emu.state()["studies"][0]["status"] == "PAUSED"
    out = run("expire", *base, "--stop", "--yes")
    assert "stopped; status COMPLETED" in out
    assert [c["kind"] for c in emu.state()["charges"]] == ["publish", "refund"]  # unused places come back


def test_a_second_publish_makes_no_second_study_and_places_only_grow(study):
    cfg, cfg_path, responses, emu, site, base = study
    run("publish", *base, "--responses", str(responses), "--public-url", site.url)
    out = run("publish", *base, "--responses", str(responses), "--public-url", site.url)
    assert "already published" in out and "0 places: rewards £0.00" in out
    assert len(emu.state()["studies"]) == 1 and len(emu.state()["charges"]) == 1
    fewer = write_config(cfg_path.parent, k=1, per_task=2, attention=0.25)
    r = CliRunner().invoke(main, ["publish", "--config", str(fewer), *base[2:], "--responses", str(responses),
                                  "--public-url", site.url])
    assert r.exit_code == 2 and "only lets places grow" in r.output and len(r.output.strip().splitlines()) == 1
    assert len(emu.state()["charges"]) == 1


def test_dry_run_and_max_cost_send_nothing(study):
    cfg, cfg_path, responses, emu, site, base = study
    out = run("publish", *base, "--responses", str(responses), "--public-url", site.url, "--dry-run")
    assert "dry run: nothing was written or sent" in out and "£" in out
    r = CliRunner().invoke(main, ["publish", *base, "--responses", str(responses), "--public-url", site.url,
                                  "--max-cost", "1"])
    assert r.exit_code == 2 and "--max-cost" in r.output
    calls = emu.app.calls
    assert not any(k in calls for k in ("create-study", "transition-study", "create-participant-group"))
    assert not ledger_file(cfg, True).exists()

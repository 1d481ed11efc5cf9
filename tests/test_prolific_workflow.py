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

    r = CliRunner().invoke(main, ["report", "--config", str(cfg_path), "--target", "prolific-emulator", "--no-plots"])
    assert r.exit_code == 0 and "not collected first" not in r.output and "Table 2" in r.output, r.output
    # Prolific's money in the study's currency and with Prolific's fee name, never MTurk's "$" or fees.
    md = (cfg.run_dir / "report" / "report.md").read_text()
    cost_line = next(line for line in md.splitlines() if line.startswith("- Total cost:"))
    assert cost_line.startswith("- Total cost: £") and f"({approved} approved submissions)" in cost_line
    assert "Prolific service fees + VAT £" in cost_line and "$" not in cost_line and "MTurk" not in cost_line
    pay_line = next(line for line in md.splitlines() if line.startswith("- Effective hourly pay:"))
    assert "reward £1.00 per submission" in pay_line and "$" not in pay_line
    cost = __import__("json").loads((cfg.run_dir / "report" / "report.json").read_text())["workers"]["cost"]
    assert cost["currency"] == "GBP" and cost["fee_label"] == "Prolific service fees + VAT"
    # Fees at the config's fee_rate (1/3) and VAT 0: £0.34 on each £1.00 reward, £0.10 on each £0.30 bonus.
    assert cost["approved_assignments"] == approved and cost["bonuses_paid"] == len(paid)
    assert cost["fees"] == pytest.approx(approved * 0.34 + len(paid) * 0.10)
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


def test_a_participant_who_declines_consent_gets_the_no_consent_code(tmp_path):
    import requests
    from lxml import html

    (tmp_path / "consent.md").write_text("Do you agree to rate replies?\n")
    extra = f'[site]\nconsent_file = "{tmp_path / "consent.md"}"'
    cfg_path = write_config(tmp_path, extra=extra)
    cfg = load(tmp_path, extra=extra)
    responses = write_responses(tmp_path, 2)
    with emulator() as emu, site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox", "--api-url", emu.url]
        run("publish", *base, "--responses", str(responses), "--public-url", site.url)
        study = emu.state()["studies"][0]
        s = requests.Session()
        page = s.get(f"{emu.url}/_prolific/studies/{study['id']}/take?PROLIFIC_PID={'c' * 24}")
        form = html.fromstring(page.text).get_element_by_id("consent-form")
        fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
        done = s.post(site.url + "/consent", data={**fields, "decision": "decline"})
        assert done.url.startswith(emu.url + "/submissions/complete?cc=N")
        (sub,) = emu.state()["submissions"]
        assert sub["status"] == "AWAITING REVIEW" and sub["study_code"].startswith("N")
        assert "1 declined consent" in run("collect", *base)
        assert "approve 0" in run("review", *base, "--apply")


def test_sandbox_without_api_url_uses_the_bundled_server(tmp_path):
    from mturk_eval.emulators.background import read_record

    cfg_path = write_config(tmp_path)
    cfg = load(tmp_path)
    responses = write_responses(tmp_path, 2)
    with site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox"]
        try:
            out = run("publish", *base, "--responses", str(responses), "--public-url", site.url)
            rec = read_record(cfg.run_dir)
            assert f"started the bundled MTurk-compatible sandbox on {rec.url}" in out
            assert f"participants open it at {rec.url}/_prolific/studies/" in out
            out = run("sandbox", "participants", "--config", str(cfg_path))
            assert "2 completed" in out
            run("collect", *base)
            assert "approve 2" in run("review", *base, "--apply")
            assert "APPROVED 2" in run("status", *base)
        finally:
            run("sandbox", "stop", "--config", str(cfg_path))


def test_blocked_participants_are_kept_out_of_later_studies(study):
    cfg, cfg_path, responses, emu, site, base = study
    run("publish", *base, "--responses", str(responses), "--public-url", site.url)
    first = emu.state()["studies"][0]["id"]
    done = simulate_participants(emu.url, first, 8, seed=9, items_of=store_items(site.store))
    pid = sorted(done.completed)[0]
    run("collect", *base)
    out = run("review", *base, "--apply", "--block", pid)
    assert "blocked 1 participants" in out
    run("publish", *base, "--responses", str(responses), "--public-url", site.url, "--batch", "b2")
    second = emu.state()["studies"][1]["id"]
    (group,) = emu.backend.list_groups(None)
    assert {"filter_id": "participant_group_blocklist", "selected_values": [group["id"]]} in \
        emu.backend.study(second)["filters"]
    import requests

    r = requests.get(f"{emu.url}/_prolific/studies/{second}/take?PROLIFIC_PID={pid}", allow_redirects=False)
    assert r.status_code == 409 and "not eligible" in r.text
    assert requests.get(f"{emu.url}/_prolific/studies/{second}/take?PROLIFIC_PID={'e' * 24}",
                        allow_redirects=False).status_code == 302


def test_places_are_only_raised(study):
    from mturk_eval.platforms.prolific.workflow import connect, settings_of

    cfg, cfg_path, responses, emu, site, base = study
    plat = connect(cfg, sandbox=True, api_url=emu.url, echo=lambda s: None)
    body = plat.study_body(experiment="pro", batch="grow", title="t", description="d", places=2,
                           public_url=site.url + "/p/grow", filters=[])
    with Ledger.open(ledger_file(cfg, True)) as ledger:
        records = Records(ledger.conn)
        first = plat.ensure_study(records, "grow", body)
        assert (first.created, first.published, first.places) == (True, True, 2)
        again = plat.ensure_study(records, "grow", body | {"total_available_places": 5})
        assert (again.created, again.raised_by, again.places, again.study_id) == (False, 3, 5, first.study_id)
        with pytest.raises(Exception, match="only lets places grow"):
            plat.ensure_study(records, "grow", body)
    assert [c["kind"] for c in emu.state()["charges"]] == ["publish", "places"]
    assert settings_of(cfg).reward == "1.00"


def test_a_failed_attention_check_gets_the_failed_attention_check_code(study):
    """The site decides at submit time from the stored answers: a participant whose answers break a task's
    attention check is sent back with the study's FAILED_ATTENTION_CHECK code (AWAITING REVIEW, as its
    MANUALLY_REVIEW action says); collect counts it as failed and review --reject-failed-attention rejects
    exactly those submissions with Prolific's FAILED_CHECK category."""
    import requests
    from lxml import html

    from mturk_eval.platforms.prolific.prolific_platform import completion_codes

    cfg, cfg_path, responses, emu, site, base = study
    run("publish", *base, "--responses", str(responses), "--public-url", site.url)
    study_id = emu.state()["studies"][0]["id"]
    codes = completion_codes(cfg.name, "main")
    given: dict[str, str] = {}   # participant -> code, for the two who met an attention check
    for n in range(8):
        pid = "%024x" % (0xabc000 + n)
        s = requests.Session()
        page = s.get(f"{emu.url}/_prolific/studies/{study_id}/take?PROLIFIC_PID={pid}")
        form = html.fromstring(page.text).get_element_by_id("mturk_form")
        hidden = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
        items = site.store.task_items(hidden["task"])
        checks = [k for k, it in enumerate(items) if it.get("attention_check")]
        fail = bool(checks) and "fail" not in given.values()
        data = {**hidden, **{f"i{k}_{a}": ("5" if fail and k in checks else "1" if k in checks else "3")
                             for k in range(len(items)) for a in ("fluency", "engagingness", "relevance", "persona")}}
        done = s.post(site.url + form.get("action"), data=data)
        code = done.url.split("cc=")[-1]
        assert done.url.startswith(emu.url + "/submissions/complete?cc=") and done.status_code == 200
        if checks:
            given[pid] = "fail" if fail else "pass"
            assert code == (codes["FAILED_ATTENTION_CHECK"] if fail else codes["COMPLETED"])
        else:
            assert code == codes["COMPLETED"]
        if set(given.values()) == {"fail", "pass"}:
            break
    assert set(given.values()) == {"fail", "pass"}
    failed = next(p for p, v in given.items() if v == "fail")
    subs = {x["participant_id"]: x for x in emu.state()["submissions"]}
    assert subs[failed]["status"] == "AWAITING REVIEW" and subs[failed]["study_code"] == codes["FAILED_ATTENTION_CHECK"]
    # A reload of the finished task hands out the same code again.
    a = site.store.by_ref("prolific", subs[failed]["id"])
    again = requests.get(f"{site.url}/t/{a.assignment_id}?done=1", allow_redirects=False)
    assert again.headers["Location"].endswith("cc=" + codes["FAILED_ATTENTION_CHECK"])
    out = run("collect", *base)
    assert "1 failed an attention check, 1 of them with the FAILED_ATTENTION_CHECK code" in out
    out = run("review", *base)
    assert "1 submissions to approve failed an attention check" in out and "--reject-failed-attention" in out
    run("review", *base, "--reject-failed-attention", "--apply")
    subs = {x["participant_id"]: x for x in emu.state()["submissions"]}
    assert subs[failed]["status"] == "REJECTED"
    assert {x["status"] for p, x in subs.items() if p != failed} == {"APPROVED"}

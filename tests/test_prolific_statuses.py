"""One study through the CLI with submissions in all nine of the contract's statuses (§7), more of them
than one page in both paging styles: ``status`` counts each, ``collect`` stores what
workflow.STATUS_TO_LEDGER says, leaves RESERVED/ACTIVE pending, frees the site task of RETURNED,
TIMED-OUT and SCREENED OUT, and stores nothing twice. The statuses the simulated flow never reaches are
set through the emulator's admin route ``POST /_prolific/submissions/<id>/status``."""
from __future__ import annotations

import contextlib

import requests
from lxml import html

from mturk_eval.ledger import Ledger
from mturk_eval.platforms.prolific import contract
from mturk_eval.platforms.prolific.client import ProlificClient
from mturk_eval.platforms.prolific.workflow import STATUS_TO_LEDGER, connect, ledger_file
from tests.helpers.prolific import emulator, load, site_for, write_config, write_responses
from tests.test_prolific_workflow import run

ANSWERED = ("AWAITING REVIEW", "APPROVED", "PARTIALLY APPROVED", "REJECTED")


@contextlib.contextmanager
def published(tmp_path, k: int):
    """6 items + 2 attention checks in 4 tasks of 2, ``k`` participants each, published on a fresh emulator."""
    cfg_path = write_config(tmp_path, k=k, per_task=2, attention=0.25)
    cfg = load(tmp_path, k=k, per_task=2, attention=0.25)
    responses = write_responses(tmp_path, 6)
    with emulator() as emu, site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox", "--api-url", emu.url]
        run("publish", *base, "--responses", str(responses), "--public-url", site.url)
        yield cfg, cfg_path, emu, site, base


def test_every_submission_status_through_status_and_collect(tmp_path, monkeypatch):
    monkeypatch.setattr(ProlificClient, "submissions_limit", 4)      # 9 submissions: 3 pages each way
    monkeypatch.setattr(ProlificClient, "submissions_page_size", 4)
    with published(tmp_path, k=3) as (cfg, cfg_path, emu, site, base):
        study_id = emu.state()["studies"][0]["id"]
        sub_of: dict[str, str] = {}   # wanted status -> submission id
        for n, wanted in enumerate(contract.SUBMISSION_STATUSES):
            pid = "%024x" % (0xfeed00 + n)
            s = requests.Session()
            page = s.get(f"{emu.url}/_prolific/studies/{study_id}/take?PROLIFIC_PID={pid}")
            form = html.fromstring(page.text).get_element_by_id("mturk_form")
            hidden = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
            sid = s.cookies["prolific_session"]
            if wanted in ANSWERED:
                items = site.store.task_items(hidden["task"])
                data = {**hidden, **{f"i{k}_{a}": ("1" if it.get("attention_check") else "3")
                                     for k, it in enumerate(items)
                                     for a in ("fluency", "engagingness", "relevance", "persona")}}
                done = s.post(site.url + form.get("action"), data=data)
                assert done.url.startswith(emu.url + "/submissions/complete?cc="), done.url
            if wanted == "RETURNED":
                r = requests.post(f"{emu.url}/_prolific/submissions/{sid}/return")
            elif wanted not in ("ACTIVE", "AWAITING REVIEW"):
                r = requests.post(f"{emu.url}/_prolific/submissions/{sid}/status", json={"status": wanted})
            else:
                r = None
            assert r is None or r.status_code == 200, r.text
            sub_of[wanted] = sid
        subs = {x["id"]: x["status"] for x in emu.state()["submissions"]}
        assert {subs[sid] for sid in sub_of.values()} == set(contract.SUBMISSION_STATUSES)
        assert all(subs[sid] == st for st, sid in sub_of.items())
        r = requests.post(f"{emu.url}/_prolific/submissions/{sid}/status", json={"status": "DONE"})
        assert r.status_code == 400 and "not a valid choice" in r.text

        out = run("status", *base)
        for st in contract.SUBMISSION_STATUSES:
            assert f"{st} 1" in out, (st, out)

        calls = dict(emu.app.calls)
        out = run("collect", *base)
        assert emu.app.calls["get-study-submissions"] - calls.get("get-study-submissions", 0) == 3  # 4 + 4 + 1
        assert f"collected {len(ANSWERED)} submissions with answers ({len(ANSWERED)} new" in out
        assert "3 tasks freed" in out  # RETURNED, TIMED-OUT, SCREENED OUT
        with Ledger.open(ledger_file(cfg, True)) as ledger:
            stored = {a.submission_id: a.status for a in ledger.submissions()}
            assert stored == {sub_of[st]: STATUS_TO_LEDGER[st] for st in ANSWERED}
            assert stored[sub_of["REJECTED"]] == "Rejected"
            assert stored[sub_of["PARTIALLY APPROVED"]] == "Approved"
            n_ratings = len(ledger.ratings())
        for st in ("RESERVED", "ACTIVE"):
            assert site.store.by_ref("prolific", sub_of[st]).state == "reserved", st
        for st in ("RETURNED", "TIMED-OUT", "SCREENED OUT"):
            assert site.store.by_ref("prolific", sub_of[st]).state == "returned", st
        assert site.store.by_ref("prolific", sub_of["APPROVED"]).answers

        out = run("collect", *base)
        assert f"({len(ANSWERED)} new" not in out and "(0 new" in out and "0 tasks freed" in out
        with Ledger.open(ledger_file(cfg, True)) as ledger:
            assert len(ledger.submissions()) == len(ANSWERED) and len(ledger.ratings()) == n_ratings

        # The other paging style (page/page_size on GET /submissions/) sees the same nine.
        plat = connect(cfg, sandbox=True, api_url=emu.url, echo=lambda s: None)
        before = emu.app.calls.get("get-submissions", 0)
        assert sorted(x["id"] for x in plat.client.submissions(study_id)) == sorted(sub_of.values())
        assert emu.app.calls["get-submissions"] - before == 3



def test_sandbox_participants_set_status(tmp_path):
    from click.testing import CliRunner

    from mturk_eval.cli import main

    with published(tmp_path, k=2) as (cfg, cfg_path, emu, site, base):
        sim = ["sandbox", "participants", "--config", str(cfg_path), "--endpoint", emu.url]
        r = CliRunner().invoke(main, [*sim, "--set-status", "FINISHED=1"])
        assert r.exit_code == 2 and "--set-status: expected STATUS=N" in r.output
        assert len(r.output.strip().splitlines()) == 1 and not emu.state()["submissions"]
        out = run(*sim, "--participants", "8", "--abandon-share", "0.5", "--seed", "1",
                  "--set-status", "SCREENED OUT=1", "--set-status", "reserved=1", "--set-status", "PARTIALLY_APPROVED=1")
        assert "set (emulator only) SCREENED OUT 1, RESERVED 1, PARTIALLY APPROVED 1" in out, out
        out = run("status", *base)
        assert "SCREENED OUT 1" in out and "RESERVED 1" in out and "PARTIALLY APPROVED 1" in out, out
        r = CliRunner().invoke(main, [*sim, "--participants", "1", "--set-status", "APPROVED=50"])
        assert r.exit_code == 2 and "has only" in r.output and "AWAITING REVIEW" in r.output, r.output


def test_a_submission_returned_after_it_was_collected_is_not_approved(tmp_path):
    """Prolific lets a participant return an AWAITING REVIEW submission: collect already stored it as
    Submitted, so the next collect must take it out of review (approving a RETURNED one is refused)."""
    from mturk_eval.emulators.prolific.participants import simulate_participants, store_items

    with published(tmp_path, k=2) as (cfg, cfg_path, emu, site, base):
        study_id = emu.state()["studies"][0]["id"]
        simulate_participants(emu.url, study_id, 3, seed=2, items_of=store_items(site.store))
        run("collect", *base)
        first, second, third = [x["id"] for x in emu.state()["submissions"]]
        assert requests.post(f"{emu.url}/_prolific/submissions/{first}/return").status_code == 200
        r = requests.post(f"{emu.url}/_prolific/submissions/{second}/status", json={"status": "SCREENED OUT"})
        assert r.status_code == 200
        freed_before = {sid: site.store.by_ref("prolific", sid).task_id for sid in (first, second)}
        out = run("collect", *base)
        assert "2 stored earlier, now withdrawn (answers dropped)" in out and "2 tasks freed" in out, out
        # Their places on the site are free again (issue #12); the answers stay in the store's history.
        for sid in (first, second):
            a = site.store.by_ref("prolific", sid)
            assert a.state == "returned" and a.answers, (sid, a.state)
        assert site.store.by_ref("prolific", third).state == "submitted"
        before = site.store.assignments(batch_id=site.store.batches()[0].batch_id)
        out = run("collect", *base)
        assert "withdrawn" not in out and "0 tasks freed" in out, out
        assert site.store.assignments(batch_id=site.store.batches()[0].batch_id) == before
        with Ledger.open(ledger_file(cfg, True)) as ledger:
            stored = {a.submission_id: a.status for a in ledger.submissions()}
            rated = {r["assignment_id"] for r in ledger.ratings()}
        assert stored == {first: "Returned", second: "Screened out", third: "Submitted"} and rated == {third}
        out = run("review", *base, "--apply")
        assert "approve 1," in out
        subs = {x["id"]: x["status"] for x in emu.state()["submissions"]}
        assert subs == {first: "RETURNED", second: "SCREENED OUT", third: "APPROVED"}
        # New participants fill every place, the freed ones included: each item ends with exactly k ratings.
        # (Prolific still counts the SCREENED OUT one as a taken place: the researcher adds one there.)
        k = 2
        plat = connect(cfg, sandbox=True, api_url=emu.url, echo=lambda s: None)
        plat.client.update_study(study_id, {"total_available_places": 4 * k + 1})
        late = simulate_participants(emu.url, study_id, 4 * k - 1, seed=3, items_of=store_items(site.store))
        assert len(late.completed) == 4 * k - 1, late
        taken = {a.task_id for a in site.store.assignments() if a.state == "submitted" and a.ref not in (first, second)}
        assert set(freed_before.values()) <= taken
        assert set(site.store.item_counts().values()) == {k}
        out = run("collect", *base)
        assert f"({4 * k - 1} new" in out and "0 tasks freed" in out and "withdrawn" not in out, out
        with Ledger.open(ledger_file(cfg, True)) as ledger:
            per_item: dict[str, set] = {}
            for r in ledger.ratings():
                if not r["attention_check"]:
                    per_item.setdefault(r["item_id"], set()).add(r["assignment_id"])
            n_ratings = len(ledger.ratings())
        assert len(per_item) == 6 and {len(v) for v in per_item.values()} == {k}, per_item
        assert not any({first, second} & v for v in per_item.values())
        out = run("collect", *base)
        assert "(0 new" in out and "0 tasks freed" in out and "withdrawn" not in out, out
        with Ledger.open(ledger_file(cfg, True)) as ledger:
            assert len(ledger.ratings()) == n_ratings
        assert set(site.store.item_counts().values()) == {k}

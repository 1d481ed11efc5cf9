"""A real browser (Playwright + Debian's chromium) takes a Prolific study on the emulator: it arrives
with PROLIFIC_PID, STUDY_ID and SESSION_ID, rates on the rating site, is redirected with the study's
code, appears as AWAITING REVIEW, and is approved and bonused exactly once."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from mturk_eval.cli import main
from tests.helpers.browser import launch, radio_names, sync_api
from tests.helpers.prolific import emulator, load, site_for, write_config, write_responses

pytestmark = pytest.mark.browser


def test_a_browser_takes_the_study_and_is_paid_once(tmp_path):
    pw = sync_api()
    cfg_path = write_config(tmp_path, k=1, per_task=2)
    cfg = load(tmp_path, k=1, per_task=2)
    responses = write_responses(tmp_path, 2)
    pid = "ab" * 12
    with emulator() as emu, site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox", "--api-url", emu.url]
        r = CliRunner().invoke(main, ["publish", *base, "--responses", str(responses), "--public-url", site.url])
        assert r.exit_code == 0, r.output
        study = emu.state()["studies"][0]
        with pw.sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page()
                page.goto(f"{emu.url}/_prolific/studies/{study['id']}/take?PROLIFIC_PID={pid}")
                page.wait_for_selector("#submitButton")
                assert page.url.startswith(site.url + "/t/")
                (sub,) = emu.state()["submissions"]
                assert sub["status"] == "ACTIVE" and sub["participant_id"] == pid
                a = site.store.by_ref("prolific", sub["id"])  # the site got SESSION_ID and STUDY_ID
                assert a.rater_id == pid and a.extra == {"STUDY_ID": study["id"], "SESSION_ID": sub["id"]}
                for name in radio_names(page):
                    page.check(f"input[name='{name}'][value='4']")
                page.click("#submitButton")
                page.wait_for_selector("#code")
                assert page.url.startswith(emu.url + "/submissions/complete?cc=")
                code = page.inner_text("#code")
            finally:
                browser.close()
        (sub,) = emu.state()["submissions"]
        assert sub["status"] == "AWAITING REVIEW" and sub["study_code"] == code
        assert code == emu.backend.study(study["id"])["completion_codes"][0]["code"]
        for args in (["collect", *base], ["review", *base, "--apply", "--bonus", "0.20"],
                     ["review", *base, "--apply", "--bonus", "0.20"]):
            r = CliRunner().invoke(main, args)
            assert r.exit_code == 0, r.output
        state = emu.state()
        assert [s["status"] for s in state["submissions"]] == ["APPROVED"]
        assert [e["kind"] for e in state["events"]] == ["approved"]
        assert [(b["submission_id"], b["amount"]) for b in state["bonus_payments"]] == [(sub["id"], 20)]

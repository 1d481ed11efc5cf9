"""A real browser (Playwright + Debian's chromium) works a HIT on the sandbox's worker site.

The HIT is published by ``mturk-eval publish`` from a responses file whose texts carry ``<script>`` and
``<img onerror>``; the worker previews it, accepts it, finds submit blocked until every question is
answered, clicks the radios, submits, and ``mturk-eval collect`` brings the answer back into the ledger.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.browser import launch, sync_api
from helpers.sandbox import sandbox_server

pytestmark = pytest.mark.browser

EVIL_SCRIPT = "<script>window.__pwned = 1; alert('script ran');</script>"
EVIL_IMG = "<img src=x onerror=\"window.__pwned = 2; alert('onerror ran')\">"


def write_experiment(tmp_path: Path, assignments: int = 2) -> tuple[Path, Path]:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"""
[experiment]
name = "browser"
runs_dir = "{tmp_path / 'runs'}"

[hit]
assignments_per_hit = {assignments}
items_per_hit = 1
attention_check_rate = 0.0
publish_rate = 1000.0
""")
    row = {"item_id": "persona.p1.p1-0001.prompt_tuning.tiny", "persona_id": "p1",
           "persona": ["i like cats.", f"i write {EVIL_IMG} code."], "eval_set": "persona", "pair_id": "p1-0001",
           "method": "prompt_tuning", "model": "tiny", "utterance": f"hi {EVIL_SCRIPT} there",
           "response": f"hello {EVIL_SCRIPT} and {EVIL_IMG}!"}
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps(row) + "\n")
    return cfg, responses


def task_frame(page):
    """The HIT's frame on the worker page, once its form has loaded."""
    frame = page.wait_for_selector("iframe#task").content_frame()
    frame.wait_for_selector("#submitButton")
    return frame


def test_browser_works_a_hit_and_collect_gets_the_answer(tmp_path):
    pw = sync_api()
    from mturk_eval.cli import main
    from mturk_eval.config import load_config
    from mturk_eval.ledger import Ledger, ledger_path

    cfg_path, responses = write_experiment(tmp_path)
    runner = CliRunner()
    with sandbox_server() as srv:
        r = runner.invoke(main, ["publish", "--config", str(cfg_path), "--responses", str(responses),
                                 "--endpoint-url", srv.url, "--no-progress"])
        assert r.exit_code == 0, r.output
        dialogs: list[str] = []
        with pw.sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page()
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(srv.url + "/?workerId=ABROWSERWORKER1")
                page.click("a.preview")
                page.wait_for_url("**/mturk/preview?hitId=*")
                # preview: the task shows, submitting is disabled
                frame = task_frame(page)
                assert frame.is_disabled("#submitButton")
                page.click("#accept")
                page.wait_for_url("**/mturk/work?assignmentId=*")
                frame = task_frame(page)
                assert frame.is_enabled("#submitButton")
                # the texts are shown literally; nothing in them ran
                shown = frame.inner_text(".response")
                assert "<script>" in shown and "onerror" in shown
                assert frame.evaluate("typeof window.__pwned") == "undefined"
                assert frame.locator(".response img").count() == 0 and frame.locator(".item script").count() == 0
                # submit is blocked until every question has an answer
                frame.click("#submitButton")
                assert srv.store.counts()["assignments"] == 1
                scores = {"fluency": "4", "engagingness": "2", "relevance": "5", "persona": "3"}
                for aspect in ("fluency", "engagingness", "relevance"):
                    frame.check(f"input[name='i0_{aspect}'][value='{scores[aspect]}']")
                frame.click("#submitButton")
                page.wait_for_timeout(300)
                assert frame.evaluate("document.querySelectorAll('input:invalid').length") == 5
                a = srv.store.db.execute("SELECT status FROM assignments").fetchone()
                assert a["status"] == "Accepted"  # still not submitted
                frame.check(f"input[name='i0_persona'][value='{scores['persona']}']")
                frame.click("#submitButton")
                frame.wait_for_selector("#submitted")
                assert frame.evaluate("typeof window.__pwned") == "undefined"
            finally:
                browser.close()
        assert dialogs == []
        r = runner.invoke(main, ["collect", "--config", str(cfg_path), "--endpoint-url", srv.url, "--no-progress"])
        assert r.exit_code == 0, r.output
        assert "1 new assignments" in r.output and "0 simulated" in r.output
    cfg = load_config(cfg_path)
    with Ledger.open(ledger_path(cfg, "local"), create=False) as ledger:
        got = {row["aspect"]: str(row["score"]) for row in ledger.ratings()}
        assert got == scores
        assert {row["worker_id"] for row in ledger.ratings()} == {"ABROWSERWORKER1"}
        assert all(row["simulated"] == 0 for row in ledger.ratings())

"""`--sandbox` on the site-hosted platforms needs nothing else: the rating site starts in the background
beside the bundled sandbox (recorded under runs/<exp>/sandbox/, found by later verbs, restarted on the
same store and port when its process is gone, ended by `sandbox stop`), and MTurk ExternalQuestion HITs
point at it: publish -> simulate -> collect -> report with exactly k ratings per item."""
from __future__ import annotations

import os
import signal

import pytest
from click.testing import CliRunner

from helpers.mturk import write_responses
from mturk_eval.cli import main
from mturk_eval.config import load_config
from mturk_eval.emulators.background import read_record, site_record_path, stop_sandbox, stop_site
from mturk_eval.ledger import Ledger, ledger_path
from mturk_eval.site.store import SiteStore, site_store_path
from tests.test_core_cli import _reap, _running, one_line_error, write_cfg

K = 2


def run(args, cwd):
    old = os.getcwd()
    try:
        os.chdir(cwd)
        return CliRunner().invoke(main, args, env={"MTURK_EVAL_CONFIG": None})
    finally:
        os.chdir(old)


def ok(args, cwd) -> str:
    res = run(args, cwd)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def study(tmp_path):
    """An experiment folder with a config (k=2, 2 items per task, attention checks) and 4 responses;
    whatever runs in the background is stopped afterwards."""
    def make(extra: str = ""):
        cfg_path = write_cfg(tmp_path / "study", "[hit]\nassignments_per_hit = 2\nitems_per_hit = 2\n"
                                                 "attention_check_rate = 0.25\n" + extra)
        cfg = load_config(cfg_path)
        write_responses(cfg.run_dir / "responses.jsonl", 4)
        made.append(cfg)
        return cfg, tmp_path / "study"

    made: list = []
    yield make
    for cfg in made:
        stop_site(cfg.run_dir)
        stop_sandbox(cfg.run_dir)


def _site(cfg):
    return read_record(cfg.run_dir, site_record_path(cfg.run_dir))


def test_mturk_external_questions_on_the_background_site_end_to_end(study):
    cfg, d = study('[platform.mturk]\nquestion = "external"\n')
    out = ok(["publish", "--sandbox", "--no-progress"], d)
    site = _site(cfg)
    assert site.url.startswith("http://127.0.0.1:") and f"started the rating site on {site.url}" in out
    assert site.state == str(site_store_path(cfg.run_dir).resolve())
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        tasks = led.tasks()
    with SiteStore.open(site_store_path(cfg.run_dir)) as store:
        n_site = len(store.tasks_by_annotation({t.annotation for t in tasks}))
        assert n_site == len(tasks) and store.batch("main").reservation_s == cfg.hit.assignment_duration_s
    # the HITs are ExternalQuestions on the site's /mturk/<task id>
    from helpers.sandbox import client

    mturk = client(read_record(cfg.run_dir).url)
    q = mturk.get_hit(HITId=tasks[0].task_id)["HIT"]["Question"]
    assert "<ExternalQuestion" in q and f"{site.url}/mturk/t" in q
    # a rerun registers nothing twice
    assert "nothing to publish" in ok(["publish", "--sandbox", "--no-progress"], d)
    with SiteStore.open(site_store_path(cfg.run_dir)) as store:
        assert len(store.tasks_by_annotation({t.annotation for t in tasks})) == n_site
    out = ok(["sandbox", "simulate", "--workers", "3", "--no-progress"], d)
    assert f"{len(tasks) * K} simulated assignments submitted" in out
    ok(["collect"], d)
    ok(["report", "--no-plots", "--quiet"], d)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        ratings = led.ratings()
    per_item: dict[str, set] = {}
    for row in ratings:
        if not row["attention_check"]:
            per_item.setdefault(row["item_id"], set()).add(row["worker_id"])
    assert len(per_item) == 4 and {len(v) for v in per_item.values()} == {K}
    assert len(ratings) == len({(r["assignment_id"], r["item_id"], r["aspect"]) for r in ratings})  # none twice
    with SiteStore.open(site_store_path(cfg.run_dir)) as store:
        assert set(store.item_counts().values()) == {K}
    out = ok(["sandbox", "stop"], d)
    assert f"stopped the rating site on {site.url}" in out and _site(cfg) is None and not _running(site.pid)


def test_prolific_sandbox_starts_the_site_and_restarts_it_on_the_same_port(study):
    cfg, d = study()
    base = ["--platform", "prolific", "--sandbox"]
    out = ok(["publish", *base], d)
    site = _site(cfg)
    assert f"started the rating site on {site.url}" in out
    os.kill(site.pid, signal.SIGKILL)   # a stale record: the next verb that needs the site restarts it
    _reap(site.pid)
    out = ok(["sandbox", "simulate", "--platform", "prolific"], d)
    new = _site(cfg)
    assert new.pid != site.pid and new.url == site.url and "same store, same port" in out
    assert "completed" in out and "0 found no place" in out
    assert "collected" in ok(["collect", *base], d)
    ok(["sandbox", "stop"], d)
    assert _site(cfg) is None and not _running(new.pid)


def test_links_publish_points_invites_at_the_background_site_and_simulate_uses_it(study):
    cfg, d = study()
    out = ok(["publish", "--platform", "links", "--raters", "2", "--no-progress"], d)
    site = _site(cfg)
    assert f"  r0001  {site.url}/i/" in out and "runs in the background" in out
    out = ok(["sandbox", "simulate", "--platform", "links", "--workers", "3", "--no-progress"], d)
    assert "simulated tasks submitted on the rating site" in out
    with SiteStore.open(site_store_path(cfg.run_dir)) as store:
        assert set(store.item_counts().values()) == {K}


def test_a_real_study_starts_nothing_and_needs_the_public_url(study):
    cfg, d = study('[platform.mturk]\nquestion = "external"\n')
    one_line_error(run(["publish", "--live", "--no-progress"], d), "give the rating site's public URL")
    one_line_error(run(["publish", "--live", "--public-url", "http://rate.example.org", "--no-progress"], d),
                   "https://")
    one_line_error(run(["publish", "--platform", "prolific", "--live"], d), "--public-url")
    one_line_error(run(["publish", "--platform", "links", "--sandbox", "--no-progress", "--endpoint-url",
                        "http://127.0.0.1:9"], d), "--endpoint-url")
    assert _site(cfg) is None and read_record(cfg.run_dir) is None


def test_public_url_with_html_questions_is_refused(study):
    cfg, d = study()
    one_line_error(run(["publish", "--sandbox", "--public-url", "https://rate.example.org"], d),
                   "HTMLQuestions", 'question = "external"')
    assert _site(cfg) is None and read_record(cfg.run_dir) is None


@pytest.mark.parametrize("table, where", [('question = "xml"', "platform.mturk.question"),
                                          ("frame_height = -1", "platform.mturk.frame_height")])
def test_bad_question_settings_are_one_line(study, table, where):
    cfg, d = study(f"[platform.mturk]\n{table}\n")
    one_line_error(run(["publish", "--sandbox", "--no-progress"], d), where)
    assert read_record(cfg.run_dir) is None

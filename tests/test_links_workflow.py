"""A study with invite links through the user's commands: ``publish --platform links --raters N`` (tasks on
the rating site, links printed and in invites.csv), raters rate on the site, then ``status``, ``collect``,
``review`` (accept / exclude, block; no money) and ``report`` as for MTurk."""
from __future__ import annotations

import csv

from click.testing import CliRunner

from helpers.mturk import write_responses
from mturk_eval.cli import main
from mturk_eval.config import load_config
from mturk_eval.emulators.simulate import RatingModel, simulate_links, site_items
from mturk_eval.ledger import Ledger, ledger_path
from mturk_eval.site.serving import settings_from_config, start_site
from mturk_eval.site.store import SiteStore, site_store_path


def _config(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"""[experiment]
name = "links1"
runs_dir = "{tmp_path / 'runs'}"

[hit]
assignments_per_hit = 2
items_per_hit = 2
attention_check_rate = 0.2
reward = "0.50"

[site]
public_url = "https://rate.example.org"
""")
    return cfg


def test_a_study_with_invite_links_end_to_end(tmp_path):
    cfg_path = _config(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 8)
    run = CliRunner()
    base = ["--config", str(cfg_path), "--platform", "links"]
    r = run.invoke(main, ["publish", *base, "--responses", str(responses), "--raters", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "$0.00" in r.output and r.output.count("https://rate.example.org/i/") == 3
    cfg = load_config(cfg_path)
    rows = list(csv.DictReader(open(cfg.run_dir / "invites.csv")))
    assert [row["rater_id"] for row in rows] == ["r0001", "r0002", "r0003"]
    assert ledger_path(cfg, "links").exists() and not ledger_path(cfg, "sandbox").exists()
    # a rerun creates nothing and no new links; --raters 4 adds one
    r = run.invoke(main, ["publish", *base, "--responses", str(responses), "--raters", "4", "--no-progress"])
    assert r.exit_code == 0 and "nothing to publish" in r.output and "1 new, 4 active" in r.output, r.output
    with SiteStore.open(site_store_path(cfg.run_dir)) as st:
        n_tasks = len(st.task_ids("main"))
        invites = st.invites()
    # two raters rate on the site through their links, then simulated raters do the rest
    site = start_site(settings_from_config(cfg))
    try:
        res = simulate_links(site.url, invites[:2], RatingModel(careless_share=0.0), seed=2,
                             items_of=site_items(site.store), max_tasks_per_rater=1, progress=False)
    finally:
        site.stop()
    assert res.submitted == 2
    r = run.invoke(main, ["sandbox", "simulate", "--config", str(cfg_path), "--platform", "links", "--workers", "3",
                          "--careless-share", "0", "--no-progress"])
    assert r.exit_code == 0 and f"{n_tasks * 2 - 2} simulated tasks submitted" in r.output, r.output
    with SiteStore.open(site_store_path(cfg.run_dir)) as st:
        assert all(i.revoked_at for i in st.invites()[4:]) and len(st.invites()) == 7
    r = run.invoke(main, ["status", *base])
    assert r.exit_code == 0 and "cost so far: $0.00" in r.output and "at most $0.00" in r.output, r.output
    r = run.invoke(main, ["collect", *base, "--no-progress"])
    assert r.exit_code == 0 and f"{n_tasks * 2} new" in r.output, r.output
    r = run.invoke(main, ["review", *base, "--apply", "--block", "r0004"])
    assert r.exit_code == 0, r.output
    r = run.invoke(main, ["review", *base, "--apply", "--bonus", "1.00", "--bonus-reason", "x"])
    assert r.exit_code == 2 and "no money" in r.output
    with SiteStore.open(site_store_path(cfg.run_dir)) as st:
        assert {s.state for s in st.submissions()} == {"approved"}
        assert st.rater("links", "r0004")["blocked"] == 1
    with Ledger.open(ledger_path(cfg, "links"), create=False) as led:
        ratings = led.ratings()
        assert {row["worker_id"] for row in ratings} <= {"r0001", "r0002", "r0005", "r0006", "r0007"}
        assert len(ratings) == n_tasks * 2 * 2 * 4          # submissions x items x aspects
    r = run.invoke(main, ["report", "--config", str(cfg_path), "--no-plots", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "collected first: 0 new" in r.output or "report written" in r.output


def test_links_refuse_live_and_mturk_refuses_raters(tmp_path):
    cfg_path = _config(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    run = CliRunner()
    r = run.invoke(main, ["publish", "--config", str(cfg_path), "--platform", "links", "--live",
                          "--responses", str(responses)])
    assert r.exit_code == 2 and "no money" in r.output and len(r.output.strip().splitlines()) == 1
    r = run.invoke(main, ["publish", "--config", str(cfg_path), "--platform", "mturk", "--raters", "3",
                          "--responses", str(responses)])
    assert r.exit_code == 2 and "--raters: not an option of platform 'mturk'" in r.output
    r = run.invoke(main, ["publish", "--config", str(cfg_path), "--platform", "nosuch", "--responses", str(responses)])
    assert r.exit_code == 2 and "unknown platform 'nosuch'" in r.output


def test_invites_list_and_revoke(tmp_path):
    """`mturk-eval invites revoke` (by URL, token or rater id): the link gets the site's 410 page and
    stores nothing, a task the rater holds cannot be submitted any more, invites.csv keeps only active
    links; bad or unknown tokens are one line, exit 2, nothing revoked."""
    import requests

    from helpers.site import form_of, task_path

    cfg_path = _config(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 4)
    run = CliRunner()
    conf = ["--config", str(cfg_path)]
    r = run.invoke(main, ["publish", *conf, "--platform", "links", "--responses", str(responses), "--raters", "2",
                          "--no-progress"])
    assert r.exit_code == 0, r.output
    cfg = load_config(cfg_path)
    out = run.invoke(main, ["invites", "list", *conf])
    assert out.exit_code == 0 and "2 invite links: 2 active, 0 revoked" in out.output, out.output
    assert out.output.count("https://rate.example.org/i/") == 2
    with SiteStore.open(site_store_path(cfg.run_dir)) as st:
        first, second = st.invites()
    site = start_site(settings_from_config(cfg))
    try:
        holder = requests.Session()   # r0002 holds a task when their link is revoked
        task = holder.get(f"{site.url}/i/{second.token}", allow_redirects=False)
        assert task.status_code == 200
        task_url = site.url + task_path(task.text)
        action, hidden, groups = form_of(task.text)   # the page is open in their browser
        r = run.invoke(main, ["invites", "revoke", *conf, f"https://rate.example.org/i/{first.token}"])
        assert r.exit_code == 0 and "r0001: invite link revoked" in r.output and "invites.csv" in r.output, r.output
        r = run.invoke(main, ["invites", "revoke", *conf, "r0002"])
        assert r.exit_code == 0 and "r0002: invite link revoked" in r.output, r.output
        assert "already revoked" in run.invoke(main, ["invites", "revoke", *conf, first.token]).output
        before = (len(site.store.assignments()), len(site.store.submissions()))
        page = requests.get(f"{site.url}/i/{first.token}", allow_redirects=False)
        assert page.status_code == 410 and "withdrawn by the researchers" in page.text
        late = holder.post(task_url, data={**hidden, **{g: "3" for g in groups}}, allow_redirects=False)
        assert late.status_code == 409 and "nothing was saved" in late.text
        assert holder.get(task_url).status_code == 410
        assert (len(site.store.assignments()), len(site.store.submissions())) == before
        assert site.store.submissions() == []
    finally:
        site.stop()
    assert list(csv.DictReader(open(cfg.run_dir / "invites.csv"))) == []
    out = run.invoke(main, ["invites", "list", *conf, "--no-urls"]).output
    assert "0 active, 2 revoked" in out and "/i/" not in out
    for bad, says in (("not a token!", "expected an invite token"), ("A" * 22, "is not an invite of this experiment"),
                      ("r0099", "is not an invite of this experiment")):
        r = run.invoke(main, ["invites", "revoke", *conf, bad])
        assert r.exit_code == 2 and says in r.output and len(r.output.strip().splitlines()) == 1, r.output

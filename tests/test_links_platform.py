"""The invite-links platform over the rating site's store: tasks published exactly once, submissions in
neutral terms, accept/exclude, block, expire, no money, invite links written privately."""
from __future__ import annotations

import stat

import pytest
import requests

from helpers.site import form_of, make_items, rate, running_site
from mturk_eval.errors import UserError
from mturk_eval.platforms.crowd_platform import TaskSpec, TaskType
from mturk_eval.platforms.links.links_platform import LinksPlatform, LinksSettings


def _spec(items, key="main/00000", token="tok-0", places=2):
    return TaskSpec(type_id="t", question="<unused/>", max_assignments=places, lifetime_s=3600, request_token=token,
                    annotation=f"mturk-eval:x:{key}:{token}", task_key=key, items=tuple(items))


def _platform(tmp_path, **kw) -> LinksPlatform:
    return LinksPlatform(LinksSettings(run_dir=str(tmp_path), **kw))


def test_publish_is_exactly_once_per_token_and_recoverable_by_annotation(tmp_path):
    plat = _platform(tmp_path)
    plat.create_task_type(TaskType("t", "d", "k", "0.05", 120, 0))
    items = make_items(2)
    first = plat.publish(_spec(items))
    again = plat.publish(_spec(items))
    assert again.task_id == first.task_id and again.recovered and not first.recovered
    assert plat.find_by_annotation({f"mturk-eval:x:main/00000:tok-0"})["mturk-eval:x:main/00000:tok-0"].task_id \
        == first.task_id
    assert plat.store.batch("main").reservation_s == 120
    state = plat.task_state(first.task_id)
    assert (state.status, state.available, state.pending) == ("Open", 2, 0)
    assert plat.estimate_cost(1, 2, "0.05", None).total == 0 and plat.balance() is None
    with pytest.raises(UserError, match="no money"):
        plat.bonus("r0001", "x", "1.00", "thanks", "t")


def test_submissions_review_block_and_expire(tmp_path):
    plat = _platform(tmp_path)
    items = make_items(2)
    tid = plat.publish(_spec(items)).task_id
    with running_site(tmp_path) as site:
        invs = site.store.create_invites(3)
        for inv in invs[:2]:
            s = requests.Session()
            assert rate(s, site.url, f"{site.url}/i/{inv.token}").status_code == 303
        state = plat.task_state(tid)
        assert (state.status, state.available) == ("Complete", 0)
        subs = list(plat.list_submissions(tid))
        assert len(subs) == 2 and {s.status for s in subs} == {"Submitted"}
        assert all(len([k for k in s.fields if k.startswith("i")]) == 8 for s in subs)
        plat.approve(subs[0].submission_id)
        plat.reject(subs[1].submission_id, "failed the attention check")   # exclude: the place opens again
        assert plat.task_state(tid).available == 1
        assert {s.status for s in plat.list_submissions(tid)} == {"Approved", "Rejected"}
        plat.block(invs[2].rater_id, "spam")
        assert "cannot take more tasks" in requests.get(f"{site.url}/i/{invs[2].token}").text
        with pytest.raises(UserError, match="invite rater id"):
            plat.block("AWORKER", "x")
        plat.expire(tid)
        assert plat.task_state(tid).status == "Closed"


def test_invites_are_ensured_not_duplicated_and_written_owner_only(tmp_path):
    plat = _platform(tmp_path, raters=3, public_url="https://rate.example.org")
    out: list[str] = []
    plat.published(out.append)
    plat.published(out.append)                      # a rerun adds none
    assert len([i for i in plat.store.invites()]) == 3
    csv = (tmp_path / "invites.csv")
    assert stat.S_IMODE(csv.stat().st_mode) == 0o600
    lines = csv.read_text().splitlines()
    assert lines[0] == "rater_id,url,created_at" and len(lines) == 4
    assert lines[1].startswith("r0001,https://rate.example.org/i/")
    assert any("3 active" in line for line in out) and any("0 new" in line for line in out)
    with pytest.raises(UserError, match="--raters"):
        LinksSettings(raters=-1)

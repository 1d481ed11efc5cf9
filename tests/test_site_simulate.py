"""Simulated raters on the rating site: through invite links (consent and practice included) and through
ExternalQuestions on the bundled sandbox; never to an address outside 127.0.0.0/8."""
from __future__ import annotations

import pytest

from helpers.sandbox import client, sandbox_server
from helpers.site import load_batch, running_site
from mturk_eval.emulators.simulate import RatingModel, loopback_url, simulate, simulate_links, site_items
from mturk_eval.errors import UserError
from mturk_eval.platforms.mturk.external import external_question


def test_simulated_raters_through_invite_links_fill_every_item_to_k(tmp_path):
    with running_site(tmp_path, consent_html="<p>ok?</p>", onboarding=True) as site:
        load_batch(site.store, n_items=6, items_per_task=2, k=3, attention_rate=0.25)
        invites = site.store.create_invites(4)
        res = simulate_links(site.url, invites, RatingModel(careless_share=0.0), seed=3,
                             items_of=site_items(site.store), progress=False)
        counts = site.store.item_counts()
        assert set(counts.values()) == {3} and res.submitted == len(site.store.submissions())
        assert all(s.simulated for s in site.store.submissions())
        assert res.attention_checks > 0 and res.attention_passed == res.attention_checks
        assert all(site.store.consent("links", i.rater_id)["decision"] == "agree" for i in invites)


def test_simulated_workers_through_external_questions_hand_back_to_the_sandbox(tmp_path):
    with running_site(tmp_path) as site, sandbox_server() as srv:
        task_ids = load_batch(site.store, n_items=4, items_per_task=2, k=2)
        mturk = client(srv.url)
        hits = [mturk.create_hit(Title="t", Description="d", Reward="0.05", MaxAssignments=2, LifetimeInSeconds=3600,
                                 AssignmentDurationInSeconds=600, Question=external_question(site.url, tid))["HIT"]
                for tid in task_ids]
        res = simulate(srv.url, workers=3, progress=False)
        assert res.submitted == 4
        assert set(site.store.item_counts().values()) == {2}
        for h in hits:
            asg = mturk.list_assignments_for_hit(HITId=h["HITId"])["Assignments"]
            assert len(asg) == 2 and all("<QuestionIdentifier>i1_persona</QuestionIdentifier>" in a["Answer"]
                                         and "mturk_eval_simulated" in a["Answer"] for a in asg)
        refs = {s.ref for s in site.store.submissions()}
        assert refs == {a["AssignmentId"] for h in hits for a in mturk.list_assignments_for_hit(HITId=h["HITId"])["Assignments"]}


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "https://example.com/x", "http://192.168.0.1/"])
def test_simulated_raters_refuse_addresses_off_the_machine(url):
    with pytest.raises(UserError, match="only visit addresses in 127.0.0.0/8"):
        loopback_url(url)
    with pytest.raises(UserError, match="only visit addresses in 127.0.0.0/8"):
        simulate_links(url, [], progress=False)

"""The rating site over HTTP (werkzeug's threaded server on loopback): invite links, ExternalQuestion
and Prolific entries, idempotent submits, consent and onboarding, requester pages, and the bad-input
pages (each a 4xx page that stores nothing; rows in docs/bad-inputs.md)."""
from __future__ import annotations

import random

import pytest
import requests

from helpers.site import assignment_id, form_of, load_batch, rate, running_site
from mturk_eval.site.store import SiteStore


@pytest.fixture
def site(tmp_path):
    with running_site(tmp_path) as s:
        load_batch(s.store, n_items=4, items_per_task=2, k=2)
        yield s


def _task(site, token=None):
    token = token or site.store.create_invites(1)[0].token
    s = requests.Session()
    r = s.get(f"{site.url}/i/{token}", allow_redirects=False)
    assert r.status_code == 303, r.text
    return s, site.url + r.headers["Location"]


def _answers(n_items=2, score="4"):
    return {f"i{k}_{a}": score for k in range(n_items) for a in ("fluency", "engagingness", "relevance", "persona")}


def _stored(site) -> int:
    return len(site.store.submissions())


def test_invite_link_rates_tasks_until_none_are_left(site):
    inv = site.store.create_invites(1)[0]
    s = requests.Session()
    n = 0
    while True:
        r = s.get(f"{site.url}/i/{inv.token}", allow_redirects=False)
        if r.status_code == 200:
            assert "No tasks left" in r.text
            break
        sub = rate(s, site.url, site.url + r.headers["Location"])
        assert sub.status_code == 303
        done = s.get(site.url + sub.headers["Location"])
        assert "Your answers are saved" in done.text and f"/i/{inv.token}" in done.text
        n += 1
    assert n == 2 and _stored(site) == 2


def test_reload_and_second_tab_show_the_same_task_and_a_double_submit_stores_once(site):
    s, url = _task(site)
    first = s.get(url).text
    assert form_of(s.get(url).text) == form_of(first)
    other_tab = requests.Session()   # the invite link again in another browser tab
    token = site.store.invite_for("r0001").token
    assert other_tab.get(f"{site.url}/i/{token}", allow_redirects=False).headers["Location"] == url.removeprefix(site.url)
    action, hidden, groups = form_of(first)
    data = {**hidden, **_answers()}
    assert s.post(url, data=data, allow_redirects=False).status_code == 303
    again = s.post(url, data={**data, "i0_fluency": "1"}, allow_redirects=False)
    assert again.status_code == 409 and "first answers are kept" in again.text
    (sub,) = site.store.submissions()
    assert sub.answers["i0_fluency"] == "4"


@pytest.mark.parametrize("case", ["missing_csrf", "forged_csrf", "tampered_task", "missing_score",
                                  "out_of_range", "unknown_field", "two_values"])
def test_bad_submits_get_a_4xx_page_and_store_nothing(site, case):
    s, url = _task(site)
    _, hidden, _ = form_of(s.get(url).text)
    data = {**hidden, **_answers()}
    if case == "missing_csrf":
        del data["csrf"]
    elif case == "forged_csrf":
        data["csrf"] = "0" * 32
    elif case == "tampered_task":
        data["task"] = site.store.task_ids("b1")[1] if data["task"] == site.store.task_ids("b1")[0] \
            else site.store.task_ids("b1")[0]
    elif case == "missing_score":
        del data["i1_persona"]
    elif case == "out_of_range":
        data["i0_relevance"] = "6"
    elif case == "unknown_field":
        data["i7_fluency"] = "3"
    if case == "two_values":
        data = list(data.items()) + [("i0_fluency", "2")]
    r = s.post(url, data=data, allow_redirects=False)
    assert r.status_code in {"missing_csrf": (403,), "forged_csrf": (403,)}.get(case, (400,)), (case, r.text)
    assert 'role="alert"' in r.text
    assert _stored(site) == 0


@pytest.mark.parametrize("path,status", [
    ("/i/notatoken", 404), ("/i/" + "A" * 22, 404), ("/t/xyz", 404), ("/t/" + "0" * 24, 404),
    ("/mturk/t0000?assignmentId=X", 404), ("/p/nosuchbatch?PROLIFIC_PID=" + "0" * 24, 404),
    ("/p/b1?PROLIFIC_PID=bad&STUDY_ID=S&SESSION_ID=X", 400), ("/p/b1?PROLIFIC_PID=" + "a" * 24, 400),
    ("/requester/progress", 401), ("/requester/export.csv?token=wrong", 401), ("/nowhere", 404),
])
def test_bad_links_get_a_4xx_page(site, path, status):
    r = requests.get(site.url + path, allow_redirects=False)
    assert r.status_code == status, r.text
    assert "text/html" in r.headers["Content-Type"]
    assert _stored(site) == 0 and site.store.assignments() == []


def test_a_revoked_invite_and_a_closed_batch(site):
    inv = site.store.create_invites(2)
    site.store.revoke_invite(inv[0].token)
    assert requests.get(f"{site.url}/i/{inv[0].token}").status_code == 410
    s, url = _task(site, inv[1].token)
    _, hidden, _ = form_of(s.get(url).text)
    site.store.close_batch("b1")
    r = s.post(url, data={**hidden, **_answers()}, allow_redirects=False)
    assert r.status_code in (409, 410) and _stored(site) == 0
    assert "No tasks left" in requests.get(f"{site.url}/i/{inv[1].token}").text


def test_mturk_external_question_preview_accept_and_hand_back(site):
    tid = site.store.task_ids("b1")[0]
    prev = requests.get(f"{site.url}/mturk/{tid}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1")
    assert prev.status_code == 200 and "preview" in prev.text and site.store.assignments() == []
    q = f"assignmentId=ASG1&hitId=HIT1&workerId=AWORKER1&turkSubmitTo=http://127.0.0.1:9/"
    s = requests.Session()
    r = s.get(f"{site.url}/mturk/{tid}?{q}", allow_redirects=False)
    assert r.status_code == 303
    assert s.get(f"{site.url}/mturk/{tid}?{q}", allow_redirects=False).headers["Location"] == r.headers["Location"]
    sub = rate(s, site.url, site.url + r.headers["Location"])
    done = s.get(site.url + sub.headers["Location"])
    assert 'action="http://127.0.0.1:9/mturk/externalSubmit"' in done.text
    assert 'name="assignmentId" value="ASG1"' in done.text and ".submit()" in done.text
    (a,) = site.store.submissions()
    assert a.platform == "mturk" and a.rater_id == "AWORKER1" and a.ref == "ASG1" and a.extra["hitId"] == "HIT1"
    bad = requests.get(f"{site.url}/mturk/{tid}?assignmentId=ASG2&hitId=HIT1&workerId=AW2"
                       f"&turkSubmitTo=https://evil.example.com/")
    assert bad.status_code == 400
    bad = requests.get(f"{site.url}/mturk/{tid}?assignmentId=ASG2&hitId=HIT1&workerId=bad&turkSubmitTo=http://127.0.0.1:9")
    assert bad.status_code == 400


def test_prolific_entry_session_and_completion_redirect(site):
    site.store.update_settings("b1", completion_code="C0MPL3T3")
    pid = "5f" + "0" * 22
    s = requests.Session()
    url = f"{site.url}/p/b1?PROLIFIC_PID={pid}&STUDY_ID=60aa&SESSION_ID=70bb"
    r = s.get(url, allow_redirects=False)
    assert r.status_code == 303
    assert s.get(url, allow_redirects=False).headers["Location"] == r.headers["Location"]
    sub = rate(s, site.url, site.url + r.headers["Location"])
    done = s.get(site.url + sub.headers["Location"], allow_redirects=False)
    assert done.status_code == 303
    assert done.headers["Location"] == "https://app.prolific.com/submissions/complete?cc=C0MPL3T3"
    (a,) = site.store.submissions()
    assert a.ref == "70bb" and a.extra == {"STUDY_ID": "60aa", "SESSION_ID": "70bb"}


def test_requester_pages_need_the_token_and_show_progress(site):
    token = site.store.secret("requester")
    s, url = _task(site)
    rate(s, site.url, url)
    p = requests.get(f"{site.url}/requester/progress?format=json", headers={"Authorization": f"Bearer {token}"})
    assert p.status_code == 200 and p.json()["batches"][0]["ratings"] == 2
    csv = requests.get(f"{site.url}/requester/export.csv?token={token}")
    assert csv.status_code == 200 and csv.text.count("\n") == 1 + 8


def test_no_page_shows_another_raters_answers(site):
    from lxml import html
    s1, url1 = _task(site)
    rate(s1, site.url, url1, rng=random.Random(5))
    s2, url2 = _task(site)
    doc = html.fromstring(s2.get(url2).text)
    assert doc.xpath("//input[@type='radio']") and not doc.xpath("//input[@checked]")
    done = html.fromstring(requests.get(url1).text)     # the first rater's page, opened by someone else
    assert not done.xpath("//input[starts-with(@name, 'i0_')]") and not done.xpath("//form[@id='mturk_form']")


# ------------------------------------------------------------------ consent and onboarding

CONSENT = "<p>We will store your ratings. <strong>Do you agree?</strong></p>"


@pytest.fixture
def consent_site(tmp_path):
    with running_site(tmp_path, consent_html=CONSENT, onboarding=True) as s:
        load_batch(s.store, n_items=4, items_per_task=2, k=2)
        yield s


def test_consent_then_onboarding_then_task(consent_site):
    site = consent_site
    token = site.store.create_invites(1)[0].token
    s = requests.Session()
    page = s.get(f"{site.url}/i/{token}")
    assert "Do you agree?" in page.text and 'id="agree"' in page.text
    assert site.store.assignments() == []
    from lxml import html
    form = html.fromstring(page.text).get_element_by_id("consent-form")
    fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
    r = s.post(site.url + "/consent", data={**fields, "decision": "agree"})
    assert "Practice" in r.text and "allergic" in r.text
    assert site.store.consent("links", "r0001")["decision"] == "agree"
    _, hidden, groups = form_of(r.text)
    done = s.post(site.url + "/onboarding", data={**hidden, **{g: "5" for g in groups}})
    assert "Practice done" in done.text and "contradicts the persona" in done.text
    assert site.store.onboarding("links", "r0001")["answers"]["i0_persona"] == "5"
    nxt = html.fromstring(done.text).get_element_by_id("next").get("href")
    task = s.get(site.url + nxt)
    assert assignment_id(task.url) and 'name="csrf"' in task.text
    assert site.store.submissions() == []   # the practice is not a rating


def test_decline_ends_politely_and_is_not_asked_again(consent_site):
    site = consent_site
    token = site.store.create_invites(1)[0].token
    s = requests.Session()
    page = s.get(f"{site.url}/i/{token}")
    from lxml import html
    form = html.fromstring(page.text).get_element_by_id("consent-form")
    fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
    r = s.post(site.url + "/consent", data={**fields, "decision": "decline"})
    assert r.status_code == 200 and "chose not to take part" in r.text
    again = s.get(f"{site.url}/i/{token}")
    assert "chose not to take part" in again.text and "agree" not in again.text.lower().replace("not to take", "")
    c = site.store.consent("links", "r0001")
    assert c["decision"] == "decline" and c["decided_at"] > 0 and site.store.assignments() == []


def test_a_task_without_consent_redirects_to_consent_and_stores_nothing(consent_site):
    site = consent_site
    a = site.store.allocate("links", "r0009")           # a place taken some other way than the entry
    r = requests.post(f"{site.url}/t/{a.assignment_id}", data={"task": a.task_id, **_answers()},
                      allow_redirects=False)
    assert r.status_code == 403 and _stored(site) == 0      # no csrf: refused first
    page = requests.get(f"{site.url}/t/{a.assignment_id}", allow_redirects=False)
    assert page.status_code == 303 and page.headers["Location"].startswith("/consent?")
    assert _stored(site) == 0


def test_forged_consent_link_is_refused(consent_site):
    r = requests.post(consent_site.url + "/consent", data={"p": "links", "r": "r0001", "next": "/", "b": "",
                                                           "sig": "0" * 32, "decision": "agree"})
    assert r.status_code == 403 and consent_site.store.consent("links", "r0001") is None

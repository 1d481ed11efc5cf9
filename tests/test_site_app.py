"""The rating site over HTTP (werkzeug's threaded server on loopback): invite links, ExternalQuestion
and Prolific entries, idempotent submits, consent and onboarding, requester pages, and the bad-input
pages (each a 4xx page that stores nothing; rows in docs/bad-inputs.md)."""
from __future__ import annotations

import random
import re
import time

import pytest
from lxml import html
import requests

from helpers.site import ASPECTS, assignment_id, form_of, load_batch, rate, running_site, task_path
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
    assert r.status_code == 200, r.text     # the entry serves the task page itself
    return s, site.url + task_path(r.text)


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
        assert r.status_code == 200
        if "mturk_form" not in r.text:
            assert "No tasks left" in r.text
            break
        sub = rate(s, site.url, site.url + task_path(r.text))
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
    assert task_path(other_tab.get(f"{site.url}/i/{token}", allow_redirects=False).text) == url.removeprefix(site.url)
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
    assert r.status_code == 200
    assert task_path(s.get(f"{site.url}/mturk/{tid}?{q}", allow_redirects=False).text) == task_path(r.text)
    sub = rate(s, site.url, site.url + task_path(r.text))
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
    assert r.status_code == 200
    assert task_path(s.get(url, allow_redirects=False).text) == task_path(r.text)
    sub = rate(s, site.url, site.url + task_path(r.text))
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
    # The export leaves the machine: pseudonyms only (the experiment's key, beside the store), as in the report.
    from mturk_eval.privacy import Pseudonymiser, key_path

    (sub,) = site.store.submissions()
    run_dir = site.store.path.parent
    p = Pseudonymiser.for_run(run_dir)
    rows = [line.split(",") for line in csv.text.splitlines()[1:]]
    assert {(r[0], r[4]) for r in rows} == {(p.submission(sub.assignment_id), p.rater(sub.rater_id))}
    assert sub.rater_id not in csv.text and sub.assignment_id not in csv.text
    # Key lost while a ledger records it: refused, as every export is, and nothing is written.
    import sqlite3

    with sqlite3.connect(run_dir / "ledger.links.sqlite") as c:
        c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        c.execute("INSERT INTO meta VALUES ('pseudonym_key_id', ?)", (p.key_id,))
    key_path(run_dir).unlink()
    refused = requests.get(f"{site.url}/requester/export.csv?token={token}")
    assert refused.status_code == 409 and "pseudonym.key: missing" in refused.text
    assert sub.rater_id not in refused.text and not key_path(run_dir).exists()


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
    assert assignment_id(task_path(task.text)) and 'name="csrf"' in task.text
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


def test_an_oversized_form_is_refused(site):
    s, url = _task(site)
    _, hidden, _ = form_of(s.get(url).text)
    r = s.post(url, data={**hidden, **_answers(), "pad": "x" * 300_000}, allow_redirects=False)
    assert r.status_code == 413 and "too large" in r.text and _stored(site) == 0


def test_a_prolific_decline_hands_back_the_no_consent_code(consent_site):
    site = consent_site
    site.store.update_settings("b1", completion_code="DONE1", no_consent_code="NOCONS")
    pid = "6a" + "1" * 22
    s = requests.Session()
    page = s.get(f"{site.url}/p/b1?PROLIFIC_PID={pid}&STUDY_ID=st1&SESSION_ID=se1")
    from lxml import html
    form = html.fromstring(page.text).get_element_by_id("consent-form")
    fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
    r = s.post(site.url + "/consent", data={**fields, "decision": "decline"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].endswith("/submissions/complete?cc=NOCONS")
    again = s.get(f"{site.url}/p/b1?PROLIFIC_PID={pid}&STUDY_ID=st1&SESSION_ID=se1", allow_redirects=False)
    assert again.headers["Location"].endswith("cc=NOCONS") and site.store.assignments() == []


def test_japanese_site_pages(tmp_path):
    with running_site(tmp_path, language="ja") as site:
        load_batch(site.store, n_items=2, items_per_task=2, k=1, language="ja")
        r = requests.get(f"{site.url}/i/" + "B" * 22)
        assert r.status_code == 404 and 'lang="ja"' in r.text and "招待リンク" in r.text
        s, url = _task(site)
        page = s.get(url).text
        assert 'lang="ja"' in page and "送信" in page
        _, hidden, _ = form_of(page)
        bad = s.post(url, data={**hidden, "i0_fluency": "3", "i1_relevance": "9"}, allow_redirects=False)
        assert bad.status_code == 400 and "何も保存されていません: " in bad.text
        # The detail names the questions as the Japanese page does, in Japanese: no English left.
        msg = html.fromstring(bad.text).get_element_by_id("message").text_content()
        assert "対話 2 の関連性: 1 から 5 の評価を 1 つ選んでください（送られた値: '9'）" in msg
        assert "未回答: 対話 1 の魅力、対話 1 の関連性、対話 1 のペルソナ考慮、対話 2 の流暢さ" in msg
        assert "対話 2 の関連性、" not in msg.split("未回答: ")[1]   # a bad value is not also "unanswered"
        assert html.fromstring(bad.text).get_element_by_id("next").text_content() == "タスクに戻る"
        extra = s.post(url, data={**hidden, **{f"i{k}_{a}": "3" for k in range(2) for a in ASPECTS}, "i7_fluency": "3"})
        assert "i7_fluency はこのタスクの質問ではありません" in extra.text
        for page in (bad, extra, requests.get(f"{site.url}/p/b1?PROLIFIC_PID=x"), requests.post(f"{site.url}/i/" + "B" * 22),
                     requests.get(f"{site.url}/requester/progress"), requests.get(site.url + "/"),
                     requests.post(url, data={"csrf": "forged", "task": hidden["task"]})):
            text = html.fromstring(page.text).get_element_by_id("message").text_content()
            english = re.findall(r"\b(?:the|this|is|not|was|expected|unanswered|nothing|please|link)\b", text, re.I)
            assert not english and re.search("[\u3040-\u30ff]", text), (page.status_code, text)
        assert _stored(site) == 0


def test_raters_of_one_task_get_its_page_with_their_own_action_and_token(site):
    """The task page is rendered once per task (site.app.TaskPages): a second rater's page is the first's
    with only the assignment id and the signed token changed, and both submit."""
    (s1, url1), (s2, url2) = _task(site), _task(site)
    p1, p2 = s1.get(url1).text, s2.get(url2).text
    (a1, h1, g1), (a2, h2, g2) = form_of(p1), form_of(p2)
    assert h1["task"] == h2["task"] and g1 == g2 and h1["csrf"] != h2["csrf"]
    assert (a1, a2) == (url1.removeprefix(site.url), url2.removeprefix(site.url))
    assert p2 == p1.replace(h1["csrf"], h2["csrf"]).replace(assignment_id(url1), assignment_id(url2))
    for s, url, hidden in ((s1, url1, h1), (s2, url2, h2)):
        assert s.post(url, data={**hidden, **_answers()}, allow_redirects=False).status_code == 303
    assert _stored(site) == 2


@pytest.mark.parametrize("action", ["{{ action }}", "{{ action|upper }}", "{{ action[3] }}"])
def test_task_pages_are_what_a_render_per_rater_gives(action):
    """Whatever the template does with the form's action and token, a kept page is byte for byte the
    page rendered for that rater: markers in place (checked once per process by rendering twice), or a
    render per request when the template transforms them."""
    import jinja2
    from mturk_eval.site.app import TaskPages

    tpl = jinja2.Environment(autoescape=True).from_string(
        f'<form action="{action}"><input name="csrf" value="{{{{ hidden.csrf }}}}">{{{{ task_id }}}}</form>')
    calls = []

    def render(task_id, action, hidden):
        calls.append(task_id)
        return tpl.render(task_id=task_id, action=action, hidden=hidden)

    pages = TaskPages(render)
    for n in range(6):
        task_id, aid, csrf = f"t{n % 2}", f"{n:024x}", f"{n * 7:032x}"
        assert pages.page(task_id, aid, csrf) == render(task_id, f"/t/{aid}", {"csrf": csrf, "task": task_id})
    # markers in place: the first task rendered twice, the second once, then never again (plus the 6 checks)
    assert len(calls) == (3 + 6 if action == "{{ action }}" else 2 + 6 + 6)


def test_raters_arriving_together_on_one_task_wait_for_one_render():
    """Threads that miss the page cache for the same task at once render it once between them (a burst's
    raters of a task arrive together), and each gets its own page."""
    from concurrent.futures import ThreadPoolExecutor
    from mturk_eval.site.app import TaskPages

    calls = []

    def render(task_id, action, hidden):
        calls.append(task_id)
        time.sleep(0.05)        # the others arrive while this render runs
        return f'<form action="{action}"><input name="csrf" value="{hidden["csrf"]}">{task_id}</form>'

    pages = TaskPages(render)
    pages.page("t0", "0" * 24, "0" * 32)             # the once-per-process check: two renders
    calls.clear()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda n: pages.page("t1", f"{n:024x}", f"{n:032x}"), range(8)))
    assert calls == ["t1"]
    assert got == [render("t1", f"/t/{n:024x}", {"csrf": f"{n:032x}"}) for n in range(8)]


def test_pages_warmed_at_start_are_served_without_a_render(tmp_path):
    """The site renders the pages of the tasks that can take raters when it starts (TaskPages.warm):
    a task page is then a kept page, also for the first rater; a full task is not warmed."""
    from mturk_eval.site.app import SiteSettings, TaskPages, create_app

    with SiteStore.open(tmp_path / "site.sqlite") as st:
        load_batch(st, n_items=6, items_per_task=2, k=1)
        tasks = st.task_ids(st.batches()[0].batch_id)
        st.allocate("links", "r0999")                        # the first task is full (k = 1)
        assert st.task_ids_open() == tasks[1:]
    renders = []
    real = TaskPages._with_markers

    def counted(self, task_id):
        renders.append(task_id)
        return real(self, task_id)

    TaskPages._with_markers = counted
    try:
        app = create_app(SiteSettings(store_path=str(tmp_path / "site.sqlite")))
        assert renders == tasks[1:]
        with app.test_client() as client:
            for token in [i.token for i in app.extensions["mturk_eval_site"]["store"].create_invites(2)]:
                page = client.get(f"/i/{token}")
                assert page.status_code == 200 and 'type="radio"' in page.text
        assert renders == tasks[1:]
    finally:
        TaskPages._with_markers = real
        app.extensions["mturk_eval_site"]["store"].close()

"""A real browser (Playwright + Debian's chromium) rates whole tasks on the rating site: through an invite
link, and through an ExternalQuestion on the bundled MTurk sandbox's worker site; each with a reload
mid-task (same task, choices kept) and a double submit (one answer set stored). Texts carrying
``<script>`` and ``<img onerror>`` are shown literally and run nothing."""
from __future__ import annotations

import time

import pytest

from helpers.browser import launch, radio_names, sync_api
from helpers.sandbox import client, sandbox_server
from helpers.site import load_batch, running_site
from mturk_eval.platforms.mturk.external import external_question

pytestmark = pytest.mark.browser

EVIL = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"


def _evil_batch(store, k: int = 2) -> list[str]:
    ids = load_batch(store, n_items=4, items_per_task=2, k=k)
    # put markup into the texts the page shows
    c = store._conn()
    rows = c.execute("SELECT batch_id, item_id, data FROM items").fetchall()
    import json
    for r in rows:
        d = json.loads(r["data"])
        d["response"] = f"hello {EVIL}!"
        d["persona"] = [f"i write {EVIL} code."]
        c.execute("UPDATE items SET data=? WHERE batch_id=? AND item_id=?", (json.dumps(d), r[0], r[1]))
    return ids


def _rate_with_reload_and_double_submit(frame_or_page, reload, scores: dict[str, str], second_tab) -> None:
    """Answer half, reload (same task, choices kept), answer the rest; meanwhile the same task is open in
    a second tab with other answers. Double-click submit here, then submit the second tab too."""
    target = frame_or_page
    names = radio_names(target)
    assert len(names) == 8
    half = names[:4]
    for n in half:
        target.check(f"input[name='{n}'][value='{scores[n]}']")
    target = reload()
    for n in half:                                   # the choices survived the reload
        assert target.is_checked(f"input[name='{n}'][value='{scores[n]}']")
    for n in names[4:]:
        target.check(f"input[name='{n}'][value='{scores[n]}']")
    assert target.evaluate("typeof window.__pwned") == "undefined"
    assert "<script>" in target.inner_text(".response")
    other = second_tab()
    for n in names:
        other.check(f"input[name='{n}'][value='{'1' if scores[n] != '1' else '2'}']")
    target.dblclick("#submitButton")
    target.wait_for_selector("#message, #note, #submitted")
    other.click("#submitButton")
    other.wait_for_selector("#note")                 # "already submitted; your first answers are kept"
    assert "first answers are kept" in other.inner_text("#note")


def test_browser_rates_through_an_invite_link(tmp_path):
    pw = sync_api()
    with running_site(tmp_path) as site:
        _evil_batch(site.store)
        token = site.store.create_invites(1)[0].token
        dialogs: list[str] = []
        with pw.sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page()
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                posts: list[str] = []
                page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
                entry = page.goto(f"{site.url}/i/{token}")
                page.wait_for_selector("#submitButton")
                # the invite link serves the task itself (no redirect); the address bar shows the task's URL
                assert entry.status == 200 and entry.request.redirected_from is None
                task_url = page.url
                assert "/t/" in task_url and page.evaluate("document.documentElement.lang") == "en"
                assert page.evaluate("history.length") == 2     # about:blank, then the task: replaced, not pushed
                names = radio_names(page)
                scores = {n: str(1 + i % 5) for i, n in enumerate(names)}

                def reload():
                    page.reload()
                    page.wait_for_selector("#submitButton")
                    assert page.url == task_url
                    return page

                def second_tab():
                    tab = browser.new_page()
                    tab.on("request", lambda r: r.method == "POST" and posts.append(r.url))
                    tab.goto(task_url)
                    tab.wait_for_selector("#submitButton")
                    return tab

                _rate_with_reload_and_double_submit(page, reload, scores, second_tab)
                assert len(posts) == 2   # the double click sends the form once (the page's guard), the 2nd tab once
                page.wait_for_selector("#next")
                assert "Thank you" in page.content()
                # the next task through the same link
                page.click("#next")
                page.wait_for_selector("#submitButton")
                assert page.url != task_url
            finally:
                browser.close()
        assert dialogs == []
        (sub,) = site.store.submissions()
        assert sub.answers == scores and sub.rater_id == "r0001"


def test_browser_rates_through_an_external_question_on_the_sandbox(tmp_path):
    pw = sync_api()
    with running_site(tmp_path) as site, sandbox_server() as srv:
        task_ids = _evil_batch(site.store, k=1)
        mturk = client(srv.url)
        hit = mturk.create_hit(Title="Rate replies", Description="d", Reward="0.05", MaxAssignments=1,
                               LifetimeInSeconds=3600, AssignmentDurationInSeconds=600,
                               Question=external_question(site.url, task_ids[0]))["HIT"]
        with pw.sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page()
                page.goto(f"{srv.url}/mturk/preview?hitId={hit['HITId']}&workerId=ABROWSERWORKER2")
                frame = page.wait_for_selector("iframe#task").content_frame()
                frame.wait_for_selector("#submitButton")
                assert frame.is_disabled("#submitButton")          # preview: nothing reserved
                assert site.store.assignments() == []
                page.click("#accept")
                page.wait_for_url("**/mturk/work?assignmentId=*")
                frame = page.wait_for_selector("iframe#task").content_frame()
                frame.wait_for_selector("#submitButton")
                assert "/t/" in frame.url and frame.is_enabled("#submitButton")
                names = radio_names(frame)
                scores = {n: str(5 - i % 5) for i, n in enumerate(names)}
                url = frame.url

                def reload():
                    frame.evaluate("location.reload()")
                    f = page.wait_for_selector("iframe#task").content_frame()
                    f.wait_for_selector("#submitButton")
                    assert f.url == url
                    return f

                def second_tab():
                    tab = browser.new_page()
                    tab.goto(url)
                    tab.wait_for_selector("#submitButton")
                    return tab

                _rate_with_reload_and_double_submit(frame, reload, scores, second_tab)
                page.wait_for_timeout(200)
                frame = page.wait_for_selector("iframe#task").content_frame()
                frame.wait_for_selector("#submitted")                # the sandbox took the hand-back
            finally:
                browser.close()
        (sub,) = site.store.submissions()
        assert sub.answers == scores and sub.platform == "mturk" and sub.rater_id == "ABROWSERWORKER2"
        (a,) = mturk.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]
        assert a["AssignmentStatus"] == "Submitted" and a["WorkerId"] == "ABROWSERWORKER2"
        assert sub.ref == a["AssignmentId"]
        for n, v in scores.items():
            assert f"<QuestionIdentifier>{n}</QuestionIdentifier><FreeText>{v}</FreeText>" in a["Answer"]


def test_a_second_click_while_the_first_submit_is_on_its_way_sends_nothing(tmp_path):
    """The first submit's answer is slow (held 0.8 s); a second click meanwhile must not send the form
    again: its "already submitted" page could replace the first one's hand-back to the platform (MTurk's
    frame then never gets the assignment)."""
    pw = sync_api()
    with running_site(tmp_path) as site:
        load_batch(site.store, n_items=2, items_per_task=2, k=1)
        token = site.store.create_invites(1)[0].token
        with pw.sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page()
                page.goto(f"{site.url}/i/{token}")
                page.wait_for_selector("#submitButton")
                for name in radio_names(page):
                    page.check(f"input[name='{name}'][value='4']")
                posts: list[str] = []
                page.on("request", lambda r: r.method == "POST" and posts.append(r.url))

                def slow_post(route):
                    if route.request.method == "POST":
                        time.sleep(0.8)                      # the server's answer is on its way
                    route.continue_()

                page.route("**/t/*", slow_post)
                # two clicks 150 ms apart, from the page itself (Playwright's click would wait for the first)
                page.evaluate("""() => { const b = document.getElementById("submitButton");
                                         b.click(); setTimeout(() => b.click(), 150); }""")
                page.wait_for_selector("#message")           # the first submit's thanks, not the repeat's note
                assert len(posts) == 1, posts
            finally:
                browser.close()
        assert len(site.store.submissions()) == 1

"""The rating pages on phones, by keyboard and for screen readers, in Debian's chromium (Playwright).

The pages checked: the rating task as MTurk's HTMLQuestion shows it (the Jinja templates rating_en.html
/ rating_ja.html, served from a loopback URL with ``assignmentId`` and ``turkSubmitTo``), and the same
task on the rating site (invite link), plus the site's consent page. For each:

- phones (Playwright's device profiles, emulated in chromium): no horizontal scrolling, radio groups
  reflow to one choice per row, every choice and the submit button a touch target of at least 44 px,
  a full-page screenshot in ``test-artifacts/rating-pages/`` (looked at by a person; gitignored);
- axe-core (``axe-playwright-python``, its bundled axe.min.js) with no serious or critical violation;
- keyboard only: Tab reaches every radio group, arrow keys choose, focus is visibly outlined, Tab
  reaches submit and Enter submits every answer;
- structure: every radio inside a fieldset with a legend and a label tied to it, ``lang`` set;
- Japanese: the text is drawn with a CJK font (chromium's own report of the platform fonts used).

Every request other than to 127.0.0.1 is aborted.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from helpers.browser import launch, sync_api

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("MTURK_EVAL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "rating-pages"
FAKE = "http://127.0.0.1:9"   # never contacted: the test's routes answer for it
ASPECTS = ("fluency", "engagingness", "relevance", "persona")
ITEMS = [{"persona": ["i like cats.", "i am a nurse."], "utterance": "do you have any pets at home?",
          # a long unbroken word, as a small model may generate: must wrap, not widen the page
          "response": "yes, two cats! " + "meow" * 30},
         {"persona": ["i like tea."], "utterance": "what do you drink?", "response": "green tea, mostly."}]
JA_ITEMS = [{"persona": ["猫を二匹飼っています。"], "utterance": "ペットは飼っていますか？",
             "response": "はい、猫を二匹飼っています！"}]


@pytest.fixture(scope="module")
def pw():
    api = sync_api()
    pytest.importorskip("axe_playwright_python", reason="axe-playwright-python is not installed")
    with api.sync_playwright() as p:
        browser = launch(p, ARGS)
        try:
            yield p, browser
        finally:
            browser.close()


def _context(pw, device: str | None):
    p, browser = pw
    opts = {} if device is None else {k: v for k, v in p.devices[device].items() if k != "default_browser_type"}
    ctx = browser.new_context(**opts)

    def only_loopback(route):
        if route.request.url.startswith(("http://127.0.0.1:", "http://127.0.0.1/")):
            route.fallback()
        else:
            route.abort()

    ctx.route("**/*", only_loopback)
    return ctx


def _task_page(ctx, html: str):
    """A page showing ``html`` at an MTurk-style task URL; returns it and the list of submitted forms."""
    posted: list[dict[str, list[str]]] = []
    page = ctx.new_page()

    def answer(route):
        if route.request.method == "POST":
            posted.append(parse_qs(route.request.post_data or ""))
            route.fulfill(body="<!DOCTYPE html><html lang=en><title>done</title><main id=done>done</main></html>",
                          content_type="text/html")
        else:
            route.fulfill(body=html, content_type="text/html; charset=utf-8")

    page.route(f"{FAKE}/**", answer)
    page.goto(f"{FAKE}/task?assignmentId=ASGKEYBOARD1&hitId=H1&workerId=AKEYBOARD1&turkSubmitTo={FAKE}")
    return page, posted


def _render(language: str, items=ITEMS) -> str:
    from mturk_eval.tasks.builder import render_html

    return render_html(items, language, f"{FAKE}/mturk/externalSubmit")


# --------------------------------------------------------------------------------------------------
# The checks, shared by every page


def check_phone_layout(page, name: str) -> None:
    """No sideways scrolling; choices reflowed one per row, inside the viewport, >= 44 px; submit too."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    m = page.evaluate("""() => {
      const de = document.documentElement, vw = window.innerWidth;
      const box = e => { const r = e.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height, right: r.right}; };
      return {scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, vw,
              groups: Array.from(document.querySelectorAll('fieldset')).map(f =>
                 Array.from(f.querySelectorAll('label')).map(box)),
              buttons: Array.from(document.querySelectorAll('button')).map(box)};
    }""")
    assert m["scrollWidth"] <= m["clientWidth"], f"{name}: page scrolls sideways ({m['scrollWidth']} > {m['clientWidth']} px)"
    targets = [b for g in m["groups"] for b in g] + m["buttons"]
    assert targets, f"{name}: no choices or buttons found"
    for b in targets:
        assert b["h"] >= 44 and b["w"] >= 44, f"{name}: touch target {b['w']:.0f}x{b['h']:.0f} px, expected >= 44x44"
        assert b["x"] >= 0 and b["right"] <= m["vw"] + 0.5, f"{name}: a target sticks out of the {m['vw']} px viewport"
    for g in m["groups"]:
        if len(g) > 1:
            assert len({round(b["y"]) for b in g}) == len(g), f"{name}: a radio group did not reflow to one choice per row"


def check_axe(page, name: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [(v["impact"], v["id"], v["help"], len(v["nodes"])) for v in results.response["violations"]
           if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{name}: axe-core found {bad}"


def check_structure(page, lang: str) -> None:
    s = page.evaluate("""() => ({
      lang: document.documentElement.lang,
      radios: Array.from(document.querySelectorAll('input[type=radio]')).map(r => ({
        inFieldsetWithLegend: !!(r.closest('fieldset') && r.closest('fieldset').querySelector('legend')
                                 && r.closest('fieldset').querySelector('legend').textContent.trim()),
        labelled: r.labels.length > 0 && r.labels[0].textContent.trim().length > 0}))})""")
    assert s["lang"] == lang
    assert s["radios"] and all(r["inFieldsetWithLegend"] and r["labelled"] for r in s["radios"])


def check_rating_page(page, name: str, lang: str) -> None:
    """Every check of a rating page but the keyboard: phone layout (with its screenshot), structure, axe."""
    check_phone_layout(page, name)
    check_structure(page, lang)
    check_axe(page, name)


def assert_cjk(ctx, page, selector: str) -> None:
    cjk, total, names = cjk_font_glyphs(ctx, page, selector)
    assert total > 0 and cjk == total, f"{selector}: {total - cjk} of {total} glyphs not in a CJK font ({names})"


FOCUS_STATE = """() => {
  const a = document.activeElement;
  const shown = a.type === 'radio' ? a.closest('label') : a;
  const cs = getComputedStyle(shown);
  return {type: a.type || '', name: a.name || '', id: a.id || '', tag: a.tagName,
          outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2, shadow: cs.boxShadow !== 'none'};
}"""


def keyboard_rate(page, groups: list[str], submit_id: str = "submitButton", max_tabs: int = 200) -> dict[str, str]:
    """Rate by keyboard alone: Tab into each radio group, ArrowRight twice (choice 3), Tab on to submit,
    Enter. Checks focus is visible on every stop. Returns the value chosen per group."""
    chosen: dict[str, str] = {}
    for _ in range(max_tabs):
        page.keyboard.press("Tab")
        f = page.evaluate(FOCUS_STATE)
        if f["type"] == "radio":
            assert f["outline"], f"focus on {f['name']} is not visibly outlined"
            if f["name"] not in chosen:
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
                chosen[f["name"]] = page.evaluate(
                    "n => document.querySelector(`input[name='${n}']:checked`)?.value", f["name"])
        elif f["id"] == submit_id:
            assert f["outline"] or f["shadow"], "focus on the submit button is not visible"
            break
        elif f["tag"] in ("BODY", "HTML"):
            continue
    else:
        raise AssertionError(f"submit button #{submit_id} not reached by Tab in {max_tabs} presses")
    assert sorted(chosen) == sorted(groups), f"groups reached by Tab: {sorted(chosen)}, expected {sorted(groups)}"
    assert set(chosen.values()) == {"3"}
    with page.expect_navigation():
        page.keyboard.press("Enter")
    return chosen


def cjk_font_glyphs(ctx, page, selector: str) -> tuple[int, int, list[str]]:
    """(glyphs drawn with a CJK font, all glyphs, font names) for the text of ``selector``, from
    chromium's CSS.getPlatformFontsForNode."""
    cdp = ctx.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    names = [f["familyName"] for f in fonts]
    cjk = sum(f["glyphCount"] for f in fonts if "CJK" in f["familyName"] or f["familyName"].endswith(" JP"))
    return cjk, sum(f["glyphCount"] for f in fonts), names


# --------------------------------------------------------------------------------------------------
# The MTurk HTMLQuestion page (the Jinja task templates)


@pytest.mark.parametrize("device, language", [("Pixel 7", "en"), ("iPhone 13", "en"), ("iPhone SE", "en"),
                                              ("Pixel 7", "ja")])
def test_task_page_on_phones(pw, device, language):
    ctx = _context(pw, device)
    try:
        page, _ = _task_page(ctx, _render(language, ITEMS if language == "en" else JA_ITEMS + ITEMS[:1]))
        check_rating_page(page, f"task-{language}-{device.replace(' ', '-').lower()}", language)
        if language == "ja":
            for sel in ("h1", "legend", "#item0 .response"):
                assert_cjk(ctx, page, sel)
    finally:
        ctx.close()


def test_task_page_by_keyboard_alone_submits_every_rating(pw):
    ctx = _context(pw, None)
    try:
        page, posted = _task_page(ctx, _render("en"))
        groups = [f"i{k}_{a}" for k in range(len(ITEMS)) for a in ASPECTS]
        keyboard_rate(page, groups)
        assert page.locator("#done").count() == 1
        (form,) = posted
        assert form["assignmentId"] == ["ASGKEYBOARD1"]
        assert {g: form[g] for g in groups} == {g: ["3"] for g in groups}
    finally:
        ctx.close()


# --------------------------------------------------------------------------------------------------
# The rating site's pages (site-v1): the same task through an invite link, and the consent page


def _site(tmp_path, language="en", **settings):
    helpers = pytest.importorskip("helpers.site", reason="the rating site is not in this branch")
    site = helpers.running_site(tmp_path, language=language, **settings)
    return helpers, site


def _one_task(helpers, store, language="en"):
    """A batch of one task (two items, one place), straight through the store's API."""
    items = helpers.make_items(2)
    store.add_batch("b1", items, [{"task_key": "b1/0", "item_ids": [i["item_id"] for i in items]}], k=1,
                    reservation_s=600, language=language)


def test_site_task_page_on_a_phone_and_by_keyboard(pw, tmp_path):
    helpers, running = _site(tmp_path)
    with running as site:
        _one_task(helpers, site.store)
        token = site.store.create_invites(1)[0].token
        ctx = _context(pw, "Pixel 7")
        try:
            page = ctx.new_page()
            page.goto(f"{site.url}/i/{token}")
            page.wait_for_selector("#submitButton")
            check_rating_page(page, "site-task-en-pixel-7", "en")
        finally:
            ctx.close()
        ctx = _context(pw, None)
        try:
            page = ctx.new_page()
            page.goto(f"{site.url}/i/{token}")   # the same task again (the reservation holds)
            groups = [f"i{k}_{a}" for k in range(2) for a in ASPECTS]
            keyboard_rate(page, groups)
            (sub,) = site.store.submissions()
            answers = sub.answers if hasattr(sub, "answers") else sub["answers"]
            assert {g: answers[g] for g in groups} == {g: "3" for g in groups}
        finally:
            ctx.close()


def test_site_japanese_task_and_consent_pages(pw, tmp_path):
    helpers, running = _site(tmp_path, language="ja", consent_html="<p>この研究への参加に同意しますか？</p>")
    with running as site:
        _one_task(helpers, site.store, "ja")
        token = site.store.create_invites(1)[0].token
        ctx = _context(pw, "Pixel 7")
        try:
            page = ctx.new_page()
            page.goto(f"{site.url}/i/{token}")
            page.wait_for_selector("#consent-form")
            check_phone_layout(page, "site-consent-ja-pixel-7")
            assert page.evaluate("document.documentElement.lang") == "ja"
            check_axe(page, "site consent page")
            assert_cjk(ctx, page, "#consent-text p")
            page.click("#agree")
            page.wait_for_selector("#submitButton")
            check_rating_page(page, "site-task-ja-pixel-7", "ja")
            assert_cjk(ctx, page, "legend")
        finally:
            ctx.close()


# --------------------------------------------------------------------------------------------------
# The local MTurk's worker site (emulators/mturk): the HIT list and the frame page a HIT is worked in


def check_no_sideways_scroll(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    m = page.evaluate("() => ({sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,"
                      " vw: window.innerWidth, meta: !!document.querySelector('meta[name=viewport]')})")
    assert m["meta"] and m["cw"] < 500, f"{name}: laid out {m['cw']} px wide on a phone (no viewport meta?)"
    assert m["sw"] <= m["cw"], f"{name}: page scrolls sideways ({m['sw']} > {m['cw']} px)"


def test_local_mturk_worker_site_on_a_phone_and_for_screen_readers(pw):
    from helpers.sandbox import client, hit_params, html_question, sandbox_server

    with sandbox_server() as srv:
        title = "Rate how fluent, engaging, relevant and persona-consistent a chatbot's replies are (5 items)"
        client(srv.url).create_hit(**hit_params(Title=title, Question=html_question(body=_render("en"))))
        ctx = _context(pw, "Pixel 7")
        try:
            page = ctx.new_page()
            page.goto(f"{srv.url}/?workerId=APHONEWORKER1")
            page.wait_for_selector("#hits")
            check_no_sideways_scroll(page, "local-mturk-hits-pixel-7")
            check_axe(page, "local MTurk HIT list")
            assert page.get_by_label("Work as worker id").input_value() == "APHONEWORKER1"
            page.click("a.preview")
            frame = page.wait_for_selector("iframe#task")
            assert frame.get_attribute("title").endswith(title)
            frame.content_frame().wait_for_selector("#submitButton")
            check_no_sideways_scroll(page, "local-mturk-frame-pixel-7")
            check_axe(page, "local MTurk frame page")
        finally:
            ctx.close()

"""The rating site: a Flask application serving the experiment's rating tasks from :mod:`mturk_eval.site.store`.

``create_app(settings)`` builds it; ``mturk-eval serve`` runs it under gunicorn (``--production``) or
werkzeug's threaded development server. Pages (docs/architecture.md, "The rating site"):

- entry points, one per way a rater arrives: ``/i/<invite token>`` (invite links), ``/p/<batch>`` with
  ``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID`` (Prolific), ``/mturk/<task id>`` with ``assignmentId``,
  ``hitId``, ``workerId``, ``turkSubmitTo`` (an MTurk ExternalQuestion; ``ASSIGNMENT_ID_NOT_AVAILABLE``
  is the preview). Each checks the rater is not blocked, asks for consent and runs the onboarding when
  configured, reserves a task and serves its page on the same request (no redirect; the page's script
  shows ``/t/<assignment id>`` in the address bar, so a reload comes to the task's own URL);
- ``/consent`` and ``/onboarding`` (signed links made by the entry points, so nobody can record consent
  for someone else);
- ``/t/<assignment id>``: GET shows the reserved task (the same one on a reload or in a second tab),
  POST submits it exactly once, then the platform's hand-back: the next-task link for invite links, a
  form posted back to MTurk's ``turkSubmitTo/mturk/externalSubmit``, a redirect to Prolific's completion
  URL (``HandBack`` hooks, see :mod:`mturk_eval.site.handback`);
- ``/requester/progress`` (HTML or ``?format=json``) and ``/requester/export.csv``, which need the
  requester token (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``) printed when the site starts;
- ``/healthz``.

Security: every form carries a token signed with the store's secret (HMAC over the assignment or the
rater and target), ids from URLs are checked against their patterns before any look-up, templates
autoescape, pages say ``Cache-Control: no-store`` and ``Referrer-Policy: same-origin`` (invite tokens
stay off other sites). Bad input gets a 4xx page and stores nothing. The site holds no platform
credentials: MTurk and Prolific are told of a submission by the rater's browser, not by the site.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode, urlparse

import jinja2
from flask import Flask, Response, redirect, request

from mturk_eval.config import ASPECTS
from mturk_eval.site import handback
from mturk_eval.site.store import (ASSIGNMENT_RE, BATCH_RE, DONE, RATER_RE, TASK_RE, Assignment, SiteStore)
from mturk_eval.errors import UserError
from mturk_eval.tasks import builder
from mturk_eval.tasks.answers import SIMULATED_FIELD, WORK_TIME_HEADER, simulated_work_time

SITE_TEMPLATES = Path(__file__).parent / "templates"
PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_ID_RE = re.compile(r"[A-Z0-9]{1,64}")
SESSION_RE = re.compile(r"[A-Za-z0-9]{1,64}")
FIELD_RE = re.compile(r"i(\d{1,3})_([a-z_]{1,32})")
SCORES = ("1", "2", "3", "4", "5")
# Where an ExternalQuestion may hand back to: MTurk's two sites, and loopback (the local sandbox).
MTURK_SUBMIT_HOSTS = ("www.mturk.com", "workersandbox.mturk.com")


@dataclass
class SiteSettings:
    """What the site needs to run; built by ``mturk-eval serve`` from the experiment config."""

    store_path: str
    language: str = "en"
    template_dir: str | None = None
    consent_html: str | None = None        # the researcher's consent text, already HTML
    onboarding: bool = False
    public_url: str | None = None
    experiment: str = ""
    mturk_submit_hosts: tuple[str, ...] = MTURK_SUBMIT_HOSTS
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if self.language not in ("en", "ja"):
            raise UserError(f"experiment.language: expected 'en' or 'ja', got {self.language!r}")
        if self.consent_html is not None and not self.consent_html.strip():
            raise UserError("site.consent_file: the consent text is empty")

    @property
    def consent_sha(self) -> str | None:
        return hashlib.sha256(self.consent_html.encode()).hexdigest() if self.consent_html else None


class _Page(Exception):
    """Stop handling a request with this response (a problem page or a redirect)."""

    def __init__(self, response: Response):
        self.response = response


def site_env(template_dir: str | None) -> jinja2.Environment:
    """The site's own pages first, then the rating templates (a user's ``hit.template_dir`` before the
    built-in ones); autoescape on everywhere. Templates are read once per process (no reload on change):
    every rater of a running study gets the same page, and a changed template takes effect when the site
    restarts."""
    rating = builder.template_env(template_dir)
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(SITE_TEMPLATES)), rating.loader]),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        auto_reload=False)


class TaskPages:
    """Each task's rating page rendered once per process, with the two things that differ between its
    raters (the assignment id in the form's action, the signed form token) rendered as random markers
    and replaced per request: a task page is then two string replacements instead of a Jinja render
    (about 0.4 ms of CPU, most of the site's own work per rater under load).

    ``render(task_id, action, hidden)`` renders a page. The first page a process renders is rendered
    twice, with different markers: unless the two are the same page but for the markers (a custom
    template that transforms the form's action or token, say), every page is rendered per request
    instead. A task's items never change and templates are read once per process (:func:`site_env`),
    so a kept page never goes stale; beyond ``SIZE`` tasks the least recently used are dropped."""

    SIZE = 512   # tasks kept per process (about 13 kB each)

    def __init__(self, render: Callable[[str, str, dict[str, str]], str]):
        self._render = render
        self._pages: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._lock = threading.Lock()
        # One render at a time per process: a render holds the GIL throughout, so threads rendering at
        # once gain nothing, and the raters of a task arrive together (allocation fills the fullest task
        # first): in a burst of 200 raters on 40 tasks, threads that missed the cache together rendered
        # 134 pages in two processes instead of at most 80.
        self._render_lock = threading.Lock()
        self._verified: bool | None = None     # None: not checked yet in this process

    def _cached(self, task_id: str) -> tuple[str, str, str] | None:
        with self._lock:
            entry = self._pages.get(task_id)
            if entry is not None:
                self._pages.move_to_end(task_id)
            return entry

    def page(self, task_id: str, aid: str, csrf: str) -> str:
        entry = None if self._verified is False else self._cached(task_id) or self._keep(task_id)
        if entry is None:
            return self._render(task_id, f"/t/{aid}", {"csrf": csrf, "task": task_id})
        body, aid_mark, csrf_mark = entry
        return body.replace(csrf_mark, csrf).replace(aid_mark, aid)

    def warm(self, task_ids: list[str]) -> None:
        """Render these tasks' pages now (the first ``SIZE``), before their first raters ask: the site
        does this at start for the tasks that can take raters, so a burst of arrivals finds them ready.
        A template that cannot be rendered is left to the task pages to report."""
        for task_id in task_ids[:self.SIZE]:
            try:
                if self._keep(task_id) is None:
                    return
            except jinja2.TemplateError:
                return

    def _keep(self, task_id: str) -> tuple[str, str, str] | None:
        """The task's kept page, rendered now unless another thread did while this one waited; None when
        pages are rendered per request (see the class)."""
        with self._render_lock:
            entry = self._cached(task_id)
            if entry is None and self._verified is not False:
                entry = self._with_markers(task_id)
                if entry is not None:
                    with self._lock:
                        self._pages[task_id] = entry
                        if len(self._pages) > self.SIZE:
                            self._pages.popitem(last=False)
            return entry

    def _with_markers(self, task_id: str) -> tuple[str, str, str] | None:
        # markers of the same alphabet and length as the real values (hex assignment id, hex token)
        aid, csrf = secrets.token_hex(12), secrets.token_hex(16)
        body = self._render(task_id, f"/t/{aid}", {"csrf": csrf, "task": task_id})
        if self._verified is None:
            aid2, csrf2 = secrets.token_hex(12), secrets.token_hex(16)
            again = self._render(task_id, f"/t/{aid2}", {"csrf": csrf2, "task": task_id})
            self._verified = (aid in body and csrf in body
                              and body.replace(csrf, csrf2).replace(aid, aid2) == again)
            if not self._verified:
                return None
        return body, aid, csrf


TEXT = {
    "en": {
        "site": "Rating site", "problem": "Something is not right", "thanks": "Thank you!",
        "submitted": "Your answers are saved.", "next_task": "Do another task", "no_tasks": "No tasks left",
        "no_tasks_body": "There are no more tasks for you at the moment. Thank you for your help!",
        "declined": "Thank you", "declined_body": "You chose not to take part. Nothing more will be asked of you;"
        " you can close this page.", "consent": "Before you start", "agree": "I agree to take part",
        "decline": "I do not want to take part", "already": "You have already submitted this task; your first"
        " answers are kept.", "mturk_back": "Send my answers to MTurk", "prolific_back": "Back to Prolific",
        "onboarding": "Practice", "onboarding_intro": "Here is one practice conversation. Rate it as you would"
        " in the real tasks; afterwards you will see how we would rate it and why.", "continue": "Continue to the tasks",
        "your_answer": "your rating", "expected": "our rating", "practice_done": "Practice done",
        "close": "You can close this page.", "reload_task": "Reload the task", "back_to_task": "Back to the task",
        "index_body": "This is a rating site for a research study. Open the link you were given to start.",
    },
    "ja": {
        "site": "評価サイト", "problem": "問題が発生しました", "thanks": "ありがとうございました",
        "submitted": "回答を保存しました。", "next_task": "次のタスクへ", "no_tasks": "タスクはもうありません",
        "no_tasks_body": "現在あなたに割り当てられるタスクはありません。ご協力ありがとうございました。",
        "declined": "ありがとうございました", "declined_body": "参加しないことを選択されました。これ以上お願いすることは"
        "ありません。このページを閉じてください。", "consent": "はじめに", "agree": "参加に同意します",
        "decline": "参加しません", "already": "このタスクはすでに送信済みです。最初の回答が保存されています。",
        "mturk_back": "回答を MTurk に送信", "prolific_back": "Prolific に戻る", "onboarding": "練習",
        "onboarding_intro": "練習用の対話が 1 つあります。本番と同じように評価してください。その後、"
        "私たちの評価とその理由が表示されます。", "continue": "タスクへ進む", "your_answer": "あなたの評価",
        "expected": "私たちの評価", "practice_done": "練習が終わりました", "close": "このページを閉じてください。",
        "reload_task": "タスクを再読み込みする", "back_to_task": "タスクに戻る",
        "index_body": "研究のための評価サイトです。始めるには、受け取ったリンクを開いてください。",
    },
}

# Problem pages in Japanese (the English text is the key; a key ending in ":" matches a message's start).
JA_PROBLEMS = {
    "This link is incomplete or altered. Use the link you were given.": "リンクが不完全か改変されています。受け取ったリンクを使ってください。",
    "You cannot take more tasks in this study.": "この調査ではこれ以上タスクを受けられません。",
    "There is no such task. Use the link you were given.": "そのタスクはありません。受け取ったリンクを使ってください。",
    "This invite link is not known. Check that you copied the whole link.": "この招待リンクは登録されていません。リンク全体をコピーしたか確認してください。",
    "This invite link has been withdrawn by the researchers.": "この招待リンクは研究者により無効にされました。",
    "This study link is not known.": "この調査のリンクは登録されていません。",
    "This study is closed.": "この調査は終了しました。",
    "There is no such task.": "そのタスクはありません。",
    "There is no such page.": "そのページはありません。",
    "Choose whether you agree to take part.": "参加に同意するかどうかを選んでください。",
    "This task was given back or its time ran out, so your place went to someone else.":
        "このタスクは返却されたか制限時間を過ぎたため、別の人に割り当てられました。",
    "This batch of tasks is closed.": "このタスクのバッチは終了しました。",
    "This form's security token is missing or wrong, so nothing was saved. Reload the task page and submit again.":
        "フォームのセキュリティトークンがないか誤っているため、何も保存されていません。タスクのページを再読み込みしてもう一度送信してください。",
    "This form names another task than the one you hold, so nothing was saved.":
        "フォームが割り当てとは別のタスクを指しているため、何も保存されていません。",
    "Nothing was saved:": "何も保存されていません:",
    "Please answer every question of the practice:": "練習のすべての質問に答えてください:",
    "This batch of tasks is closed, so nothing was saved.": "このタスクのバッチは終了したため、何も保存されていません。",
    "This task was given back, so nothing was saved.": "このタスクは返却されたため、何も保存されていません。",
    "Your time for this task ran out and your place went to someone else, so nothing was saved.":
        "制限時間を過ぎ、別の人に割り当てられたため、何も保存されていません。",
    "You cannot take more tasks in this study; nothing was saved.": "この調査ではこれ以上タスクを受けられません。何も保存されていません。",
    "This link lacks a valid PROLIFIC_PID. Please open the study from Prolific.":
        "このリンクには有効な PROLIFIC_PID がありません。Prolific から調査を開いてください。",
    "This link lacks a valid STUDY_ID or SESSION_ID. Please open the study from Prolific.":
        "このリンクには有効な STUDY_ID または SESSION_ID がありません。Prolific から調査を開いてください。",
    "This task link has an invalid assignmentId or hitId.": "このタスクのリンクの assignmentId または hitId が正しくありません。",
    "This task link has an invalid workerId.": "このタスクのリンクの workerId が正しくありません。",
    "This task link has an invalid turkSubmitTo.": "このタスクのリンクの turkSubmitTo が正しくありません。",
    "This task cannot be given to you:": "このタスクはあなたに割り当てられません:",
    "This page's link or form is incomplete or altered (its security token does not match). Go back to the link"
    " you were given.": "このページのリンクまたはフォームが不完全か改変されています（セキュリティトークンが一致しません）。"
                        "受け取ったリンクに戻ってください。",
    "This study asks for no consent here.": "この調査ではここで同意をお願いしていません。",
    "This study has no practice.": "この調査には練習がありません。",
    "This page cannot be used that way.": "このページはその方法では使えません。",
    "The form sent is too large.": "送信されたフォームが大きすぎます。",
    "The rating template cannot be shown:": "評価ページを表示できません:",
    "This page is for the researchers: it needs the requester token printed when the site started.":
        "このページは研究者用です。サイトの起動時に表示された依頼者トークンが必要です。",
    "Nothing was exported:": "何もエクスポートされていません:",
}

# Aspect names and the item heading as the Japanese rating page shows them (tasks/templates/rating_ja.html).
JA_ASPECTS = {"fluency": "流暢さ", "engagingness": "魅力", "relevance": "関連性", "persona": "ペルソナ考慮"}


def translate(message: str, language: str) -> str:
    if language != "ja":
        return message
    if message in JA_PROBLEMS:
        return JA_PROBLEMS[message]
    for key, ja in JA_PROBLEMS.items():
        if key.endswith(":") and message.startswith(key):
            return ja + message[len(key):]
    return message


# The onboarding's practice item (the first worked example of the instructions, made a real item) and
# the answer we explain: the reply contradicts the persona, but is fluent and on topic.
PRACTICE = {
    "en": {"persona": ["I have two cats.", "I work as a nurse."], "utterance": "Do you have any pets?",
           "response": "No, I am allergic to animals.",
           "expected": {"fluency": (4, 5), "relevance": (4, 5), "persona": (1, 2)},
           "why": {"fluency": "The reply is natural, grammatical English.",
                   "engagingness": "Any rating is fine here: it is a matter of taste.",
                   "relevance": "It answers the question that was asked.",
                   "persona": "It contradicts the persona (\u201cI have two cats\u201d), so 1."}},
    "ja": {"persona": ["猫を二匹飼っています。", "看護師として働いています。"], "utterance": "ペットは飼っていますか？",
           "response": "いいえ、動物アレルギーなんです。",
           "expected": {"fluency": (4, 5), "relevance": (4, 5), "persona": (1, 2)},
           "why": {"fluency": "自然で文法的な日本語です。", "engagingness": "好みの問題なので、どの評価でも構いません。",
                   "relevance": "質問にきちんと答えています。",
                   "persona": "ペルソナ（「猫を二匹飼っています」）と矛盾するので 1 です。"}},
}


def create_app(settings: SiteSettings, store: SiteStore | None = None,
               hooks: dict[str, handback.HandBack] | None = None) -> Flask:
    """The rating site as a WSGI app. ``store`` defaults to ``SiteStore.open(settings.store_path)``;
    ``hooks`` overrides the per-platform hand-back (see :mod:`mturk_eval.site.handback`)."""
    store = store or SiteStore.open(settings.store_path)
    env = site_env(settings.template_dir)
    secret = store.secret("forms").encode()
    requester_token = store.secret("requester")
    hand = {**handback.default_hooks(), **(hooks or {})}
    t = TEXT[settings.language]
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.extensions["mturk_eval_site"] = {"store": store, "settings": settings, "requester_token": requester_token}

    # ------------------------------------------------------------------ helpers
    def sign(*parts: str) -> str:
        return hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def signed_ok(given: str | None, *parts: str) -> bool:
        return bool(given) and hmac.compare_digest(str(given), sign(*parts))

    def render(name: str, status: int = 200, **ctx: Any) -> Response:
        body = env.get_template(name).render(t=t, lang=settings.language, **ctx)
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    def problem(message: str, status: int = 400, link: str | None = None, link_text: str | None = None) -> _Page:
        return _Page(render("message.html", status, title=t["problem"], message=translate(message, settings.language),
                            link=link,
                            link_text=link_text, problem=True))

    def listed(errors: list[str]) -> str:
        return "。".join(errors) + "。" if settings.language == "ja" else "; ".join(errors) + "."

    def message(title: str, body: str, status: int = 200, **ctx: Any) -> Response:
        return render("message.html", status, title=title, message=body, problem=False, **{
            "link": None, "link_text": None, **ctx})

    @functools.lru_cache(maxsize=4096)
    def items_of(task_id: str) -> tuple[dict[str, Any], ...]:
        """A task's items (they never change once the task is on the site); treat them as read-only."""
        return tuple(store.task_items(task_id))

    def view(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"slot": k, "persona": it["persona"], "utterance": it["utterance"], "response": it["response"]}
                for k, it in enumerate(items)]

    def rating_html(items: Any, action: str, hidden: dict[str, str], preview: bool = False,
                    heading: str | None = None, intro: str | None = None, task_url: str | None = None) -> str:
        return env.get_template("task.html").render(
            rating_template=builder.template_name(settings.language), items=view(items), aspects=ASPECTS,
            submit_url=action, hidden=hidden, preview=preview, site_heading=heading, site_intro=intro, site_t=t,
            task_url=task_url)

    def rating_page(items: Any, action: str, hidden: dict[str, str], preview: bool = False,
                    heading: str | None = None, intro: str | None = None, status: int = 200) -> Response:
        try:
            body = rating_html(items, action, hidden, preview, heading, intro)
        except jinja2.TemplateError as exc:
            raise problem(f"The rating template cannot be shown: {exc}.", 500) from None
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    task_pages = TaskPages(lambda task_id, action, hidden: rating_html(items_of(task_id), action, hidden,
                                                                       task_url=action))

    # Compile every template now, not in the first requests (where a burst of arrivals would compile each
    # one in many threads at once): the site's pages, and the rating template through a practice page.
    for name in sorted(p.name for p in SITE_TEMPLATES.glob("*.html")):
        env.get_template(name)
    try:
        rating_html([PRACTICE[settings.language]], "#", {})
    except jinja2.TemplateError:
        pass      # a broken rating template: each task page says so (500), as without this warm-up
    else:
        task_pages.warm(store.task_ids_open())

    def task_page(a: Assignment) -> Response:
        csrf = sign("task", a.assignment_id)
        try:
            body = task_pages.page(a.task_id, a.assignment_id, csrf)
        except jinja2.TemplateError as exc:
            raise problem(f"The rating template cannot be shown: {exc}.", 500) from None
        return Response(body, content_type="text/html; charset=utf-8")

    def entry_path() -> str:
        return request.full_path.rstrip("?")

    def local_next(value: str | None) -> str:
        if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
            raise problem("This link is incomplete or altered. Use the link you were given.", 400)
        return value

    def gate(platform: str, rater_id: str, next_path: str, batch_id: str | None = None) -> None:
        """Blocked raters stop here; consent and onboarding come before any task."""
        r = store.rater(platform, rater_id)
        if r and r["blocked"]:
            raise problem("You cannot take more tasks in this study.", 403)
        if settings.consent_html:
            c = store.consent(platform, rater_id)
            if c is None:
                q = {"p": platform, "r": rater_id, "next": next_path, "b": batch_id or ""}
                raise _Page(redirect("/consent?" + urlencode({**q, "sig": sign("consent", *q.values())}), 303))
            if c["decision"] == "decline":
                raise _Page(declined(platform, rater_id, batch_id))
        if settings.onboarding and store.onboarding(platform, rater_id) is None:
            q = {"p": platform, "r": rater_id, "next": next_path}
            raise _Page(redirect("/onboarding?" + urlencode({**q, "sig": sign("onboarding", *q.values())}), 303))

    def declined(platform: str, rater_id: str, batch_id: str | None) -> Response:
        url = hand[platform].declined_url(store, rater_id, batch_id) if platform in hand else None
        if url:
            return redirect(url, 303)
        return message(t["declined"], t["declined_body"])

    def assignment_or_404(aid: str) -> Assignment:
        a = store.assignment(aid) if ASSIGNMENT_RE.fullmatch(aid) else None
        if a is None:
            raise problem("There is no such task. Use the link you were given.", 404)
        return a

    def consent_required(a: Assignment) -> None:
        if settings.consent_html:
            c = store.consent(a.platform, a.rater_id)
            if c is None or c["decision"] != "agree":
                gate(a.platform, a.rater_id, f"/t/{a.assignment_id}", a.batch_id)

    def again_link(a: Assignment) -> str | None:
        return hand[a.platform].next_task_url(store, a) if a.platform in hand else None

    def submitted_page(a: Assignment, status: int = 200, note: str | None = None, auto: bool = False) -> Response:
        h = hand.get(a.platform)
        back = h.after_submit(store, a) if h else None
        if back and back.redirect and auto:
            return redirect(back.redirect, 303)
        return render("submitted.html", status, note=note, back=back, auto=auto, again=again_link(a))

    def show_task(a: Assignment, auto: bool = False) -> Response:
        """The page at ``/t/<aid>``: the task while it is the rater's, else what became of it."""
        consent_required(a)
        if a.state in DONE:
            return submitted_page(a, auto=auto)
        if a.state in ("returned", "expired") or not a.live(settings.clock()):
            raise problem("This task was given back or its time ran out, so your place went to someone else.",
                          410, link=again_link(a), link_text=t["next_task"])
        if not store.task_open(a.task_id):
            raise problem("This batch of tasks is closed.", 410)
        return task_page(a)

    @app.errorhandler(_Page)
    def _page(exc: _Page) -> Response:
        return exc.response

    @app.errorhandler(404)
    def _404(exc: Any) -> Response:
        return render("message.html", 404, title=t["problem"], message=translate("There is no such page.",
                      settings.language), problem=True,
                      link=None, link_text=None)

    @app.errorhandler(405)
    def _405(exc: Any) -> Response:
        return render("message.html", 405, title=t["problem"], message=translate("This page cannot be used that way.",
                      settings.language),
                      problem=True, link=None, link_text=None)

    @app.errorhandler(413)
    def _413(exc: Any) -> Response:
        return render("message.html", 413, title=t["problem"], message=translate("The form sent is too large.", settings.language),
                      problem=True, link=None, link_text=None)

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    # ------------------------------------------------------------------ entry points
    @app.get("/")
    def index() -> Response:
        return message(t["site"], t["index_body"])

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", content_type="text/plain")

    @app.get("/i/<token>")
    def invite(token: str) -> Response:
        inv = store.invite(token)
        if inv is None:
            raise problem("This invite link is not known. Check that you copied the whole link.", 404)
        if inv.revoked_at is not None:
            raise problem("This invite link has been withdrawn by the researchers.", 410)
        gate("links", inv.rater_id, f"/i/{token}")
        a = store.allocate("links", inv.rater_id, now=settings.clock())
        if a is None:
            return message(t["no_tasks"], t["no_tasks_body"])
        return show_task(a)

    @app.get("/p/<batch_id>")
    def prolific(batch_id: str) -> Response:
        pid, study, session = (request.args.get(k, "") for k in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"))
        if not BATCH_RE.fullmatch(batch_id) or store.batch(batch_id) is None:
            raise problem("This study link is not known.", 404)
        if not RATER_RE["prolific"].fullmatch(pid):
            raise problem("This link lacks a valid PROLIFIC_PID. Please open the study from Prolific.", 400)
        if not SESSION_RE.fullmatch(session) or not SESSION_RE.fullmatch(study):
            raise problem("This link lacks a valid STUDY_ID or SESSION_ID. Please open the study from"
                          " Prolific.", 400)
        if store.batch(batch_id).state != "open":
            raise problem("This study is closed.", 410)
        gate("prolific", pid, entry_path(), batch_id)
        a = store.by_ref("prolific", session)
        if a is None or a.state not in ("reserved", *DONE):
            a = store.allocate("prolific", pid, [batch_id], ref=None if a else session,
                               extra={"STUDY_ID": study, "SESSION_ID": session}, now=settings.clock())
        if a is None:
            return message(t["no_tasks"], t["no_tasks_body"])
        return show_task(a)

    @app.get("/mturk/<task_id>")
    def mturk(task_id: str) -> Response:
        aid, hit, worker, submit_to = (request.args.get(k, "") for k in
                                       ("assignmentId", "hitId", "workerId", "turkSubmitTo"))
        if not TASK_RE.fullmatch(task_id) or store.task(task_id) is None:
            raise problem("There is no such task.", 404)
        if aid == PREVIEW_ASSIGNMENT or not aid:
            return rating_page(items_of(task_id), "#", {}, preview=True)
        if not MTURK_ID_RE.fullmatch(aid) or not MTURK_ID_RE.fullmatch(hit):
            raise problem("This task link has an invalid assignmentId or hitId.", 400)
        if not RATER_RE["mturk"].fullmatch(worker):
            raise problem("This task link has an invalid workerId.", 400)
        if not _submit_to_ok(submit_to, settings.mturk_submit_hosts):
            raise problem("This task link has an invalid turkSubmitTo.", 400)
        gate("mturk", worker, entry_path())
        try:
            a = store.reserve_task("mturk", worker, task_id, ref=aid,
                                   extra={"hitId": hit, "turkSubmitTo": submit_to.rstrip("/")}, now=settings.clock())
        except UserError as exc:
            raise problem(f"This task cannot be given to you: {exc.message}.", 409) from None
        return show_task(a)

    # ------------------------------------------------------------------ consent and onboarding
    def _gate_args(kind: str, with_batch: bool) -> tuple[str, str, str, str]:
        src = request.form if request.method == "POST" else request.args
        p, r, nxt, b = src.get("p", ""), src.get("r", ""), src.get("next", ""), src.get("b", "")
        parts = (p, r, nxt, b) if with_batch else (p, r, nxt)
        if p not in RATER_RE or not RATER_RE[p].fullmatch(r) or not signed_ok(src.get("sig"), kind, *parts):
            raise problem("This page's link or form is incomplete or altered (its security token does not"
                          " match). Go back to the link you were given.", 403)
        return p, r, local_next(nxt), b

    @app.route("/consent", methods=["GET", "POST"])
    def consent() -> Response:
        if not settings.consent_html:
            raise problem("This study asks for no consent here.", 404)
        p, r, nxt, b = _gate_args("consent", True)
        if request.method == "GET":
            c = store.consent(p, r)
            if c is not None:
                return redirect(nxt, 303) if c["decision"] == "agree" else declined(p, r, b or None)
            return render("consent.html", consent_html=settings.consent_html,
                          fields={"p": p, "r": r, "next": nxt, "b": b, "sig": request.args["sig"]})
        decision = request.form.get("decision")
        if decision not in ("agree", "decline"):
            raise problem("Choose whether you agree to take part.", 400)
        c = store.record_consent(p, r, decision, settings.consent_sha, now=settings.clock())
        return redirect(nxt, 303) if c["decision"] == "agree" else declined(p, r, b or None)

    @app.route("/onboarding", methods=["GET", "POST"])
    def onboarding() -> Response:
        if not settings.onboarding:
            raise problem("This study has no practice.", 404)
        p, r, nxt = _gate_args("onboarding", False)[:3]
        practice = PRACTICE[settings.language]
        if request.method == "GET":
            if store.onboarding(p, r) is not None:
                return redirect(nxt, 303)
            hidden = {"p": p, "r": r, "next": nxt, "sig": request.args["sig"]}
            return rating_page([practice], "/onboarding", hidden, heading=t["onboarding"], intro=t["onboarding_intro"])
        answers, errors = parse_answers(request.form, 1, settings.language)
        if errors:
            raise problem("Please answer every question of the practice: " + listed(errors), 400,
                          link="/onboarding?" + urlencode({"p": p, "r": r, "next": nxt, "sig": request.form["sig"]}),
                          link_text=t["onboarding"])
        store.record_onboarding(p, r, answers, now=settings.clock())
        rows = []
        for aspect in ASPECTS:
            lo_hi = practice["expected"].get(aspect)
            given = int(answers[f"i0_{aspect}"])
            rows.append({"aspect": aspect, "given": given,
                         "expected": f"{lo_hi[0]}\u2013{lo_hi[1]}" if lo_hi else "1\u20135",
                         "ok": lo_hi is None or lo_hi[0] <= given <= lo_hi[1], "why": practice["why"][aspect]})
        return render("practice_result.html", rows=rows, next=nxt)

    # ------------------------------------------------------------------ the task
    @app.get("/t/<aid>")
    def task(aid: str) -> Response:
        return show_task(assignment_or_404(aid), auto=request.args.get("done") == "1")

    @app.post("/t/<aid>")
    def submit(aid: str) -> Response:
        a = assignment_or_404(aid)
        if not signed_ok(request.form.get("csrf"), "task", aid):
            raise problem("This form's security token is missing or wrong, so nothing was saved. Reload the"
                          " task page and submit again.", 403, link=f"/t/{aid}", link_text=t["reload_task"])
        if request.form.get("task") != a.task_id:
            raise problem("This form names another task than the one you hold, so nothing was saved.", 400,
                          link=f"/t/{aid}", link_text=t["reload_task"])
        consent_required(a)
        if a.state in DONE:
            return submitted_page(a, 409, note=t["already"])
        answers, errors = parse_answers(request.form, len(items_of(a.task_id)), settings.language)
        if errors:
            raise problem("Nothing was saved: " + listed(errors), 400, link=f"/t/{aid}",
                          link_text=t["back_to_task"])
        try:
            simulated, work_time = simulated_work_time(request.form.get(SIMULATED_FIELD),
                                                       request.headers.get(WORK_TIME_HEADER))
        except ValueError:
            raise problem(f"{WORK_TIME_HEADER} must be a number of seconds.", 400) from None
        res = store.submit(aid, answers, work_time_s=work_time, simulated=simulated, now=settings.clock())
        if not res.stored:
            if res.reason == "already_submitted":
                return submitted_page(res.assignment, 409, note=t["already"])
            why = {"blocked": ("You cannot take more tasks in this study; nothing was saved.", 403),
                   "closed": ("This batch of tasks is closed, so nothing was saved.", 409),
                   "ended": ("This task was given back, so nothing was saved.", 409),
                   "full": ("Your time for this task ran out and your place went to someone else, so nothing"
                            " was saved.", 409)}[res.reason]
            raise problem(why[0], why[1], link=again_link(a), link_text=t["next_task"])
        return redirect(f"/t/{aid}?done=1", 303)

    # ------------------------------------------------------------------ requester pages
    def requester() -> None:
        given = request.args.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given, requester_token):
            raise problem("This page is for the researchers: it needs the requester token printed when the site"
                          " started.", 401)

    @app.get("/requester/progress")
    def progress() -> Response:
        requester()
        batches = [{"batch": b.batch_id, "state": b.state, **store.progress(b.batch_id, now=settings.clock())}
                   for b in store.batches()]
        if request.args.get("format") == "json":
            return app.json.response({"experiment": settings.experiment, "batches": batches})
        return render("progress.html", batches=batches, experiment=settings.experiment)

    @app.get("/requester/export.csv")
    def export() -> Response:
        """Every submission, one row per answer. It leaves the machine, so rater and assignment ids are the
        experiment's pseudonyms (``r-...``, ``s-...``; the key is ``pseudonym.key`` beside the store), as in
        every other export; a missing or wrong key refuses the export (409) as ``report`` does."""
        requester()
        from mturk_eval.privacy import Pseudonymiser

        try:
            p = Pseudonymiser.for_run(Path(settings.store_path).parent)
        except UserError as exc:
            raise problem(f"Nothing was exported: {exc.message}", 409) from None
        subs = store.submissions()
        raters = p.raters([s.rater_id for s in subs])   # the same pseudonyms as the report's (ledger rater ids)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["assignment_id", "batch_id", "task_id", "platform", "rater_id", "state", "submitted_at",
                    "work_time_s", "field", "value"])
        for s, rater in zip(subs, raters):
            sid = p.submission(s.ref or s.assignment_id)   # the platform's submission id, as in collect --export-csv
            for k, v in sorted((s.answers or {}).items()):
                w.writerow([sid, s.batch_id, s.task_id, s.platform, rater, s.state, s.submitted_at, s.work_time_s,
                            k, v])
        return Response(out.getvalue(), content_type="text/csv; charset=utf-8")

    return app


def _question_ja(slot: int, aspect: str) -> str:
    """How the Japanese page names a question: the item's heading and the aspect (対話 1 の流暢さ)."""
    return f"対話 {slot + 1} の{JA_ASPECTS[aspect]}"


def parse_answers(form: Any, n_items: int, language: str = "en") -> tuple[dict[str, str], list[str]]:
    """The rating fields of a submitted form: every ``i{slot}_{aspect}`` of ``n_items`` items, each "1".."5".
    Returns (answers, problems); a field for a slot or aspect the task does not have is a problem. Problems
    are in the page's ``language``: English names the form fields (``unanswered: i0_fluency``), Japanese
    names the questions as the page shows them (``未回答: 対話 1 の流暢さ``)."""
    ja = language == "ja"
    answers: dict[str, str] = {}
    problems: list[str] = []
    bad: set[str] = set()
    for key in form.keys():
        m = FIELD_RE.fullmatch(key)
        if not m:
            continue
        if int(m.group(1)) >= n_items or m.group(2) not in ASPECTS:
            problems.append(f"{key} はこのタスクの質問ではありません" if ja else f"{key} is not a question of this task")
            bad.add(key)
            continue
        values = form.getlist(key)
        if len(values) != 1 or values[0] not in SCORES:
            got = repr(", ".join(values)[:20])
            problems.append(f"{_question_ja(int(m.group(1)), m.group(2))}: 1 から 5 の評価を 1 つ選んでください"
                            f"（送られた値: {got}）" if ja else f"{key}: expected one score from 1 to 5, got {got}")
            bad.add(key)
            continue
        answers[key] = values[0]
    missing = [(k, a) for k in range(n_items) for a in ASPECTS if f"i{k}_{a}" not in answers and f"i{k}_{a}" not in bad]
    if missing:
        problems.append("未回答: " + "、".join(_question_ja(k, a) for k, a in missing) if ja else
                        "unanswered: " + ", ".join(f"i{k}_{a}" for k, a in missing))
    return answers, problems


def _submit_to_ok(url: str, hosts: tuple[str, ...]) -> bool:
    try:
        u = urlparse(url)
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment or u.username:
        return False
    if u.hostname in hosts and u.scheme == "https":
        return True
    return u.hostname == "localhost" or u.hostname.startswith("127.")

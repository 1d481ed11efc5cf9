"""Test helpers for the rating site: items, a planned batch in a store, a site on a free loopback port,
and a tiny form-filling rater built on requests + lxml."""
from __future__ import annotations

import contextlib
import random
import re
from pathlib import Path
from typing import Iterator

import requests
from lxml import html as lxml_html

from mturk_eval.site.app import SiteSettings
from mturk_eval.site.serving import RunningSite, start_site
from mturk_eval.site.store import SiteStore

from mturk_eval.tasks import builder

ASPECTS = ("fluency", "engagingness", "relevance", "persona")


def make_items(n: int, prefix: str = "it") -> list[dict]:
    return [{"item_id": f"persona.p1.{prefix}{i:04d}.prompt_tuning.tiny", "persona_id": "p1",
             "persona": ["i like cats.", "i am a nurse."], "eval_set": "persona", "pair_id": f"p1-{i:04d}",
             "method": "prompt_tuning", "model": "tiny", "utterance": f"hello number {i}",
             "response": f"hi, i have cats {i}."} for i in range(n)]


def load_batch(store: SiteStore, n_items: int = 6, items_per_task: int = 2, k: int = 3, reservation_s: float = 600,
               batch: str = "b1", attention_rate: float = 0.0, language: str = "en") -> list[str]:
    """Plan ``n_items`` items (plus attention checks) with the task builder and load them into ``store``."""
    items = make_items(n_items, prefix=batch)
    items = items + builder.make_attention_checks(items, attention_rate, 1, language, batch)
    plans = builder.plan_tasks(items, experiment="t", target="site", batch=batch, seed=1,
                               items_per_hit=items_per_task, places=k, reward="0")
    return store.add_batch(batch, items, [{"task_key": h["task_key"], "item_ids": h["item_ids"]} for h in plans],
                           k=k, reservation_s=reservation_s, language=language)


@contextlib.contextmanager
def running_site(tmp_path: Path, **settings) -> Iterator[RunningSite]:
    s = SiteSettings(store_path=str(tmp_path / "site.sqlite"), **settings)
    site = start_site(s)
    try:
        yield site
    finally:
        site.stop()


def form_of(page: str) -> tuple[str, dict[str, str], list[str]]:
    """(action, hidden fields, radio group names) of the rating form on ``page``."""
    doc = lxml_html.fromstring(page)
    form = doc.get_element_by_id("mturk_form")
    hidden = {i.get("name"): i.get("value", "") for i in form.xpath(".//input[@type='hidden']") if i.get("name")}
    groups = sorted({i.get("name") for i in form.xpath(".//input[@type='radio']")})
    return form.get("action"), hidden, groups


def rate(session: requests.Session, base: str, task_url: str, rng: random.Random | None = None,
         **extra) -> requests.Response:
    """Open a task page and submit every group with a score (1..5)."""
    rng = rng or random.Random(0)
    page = session.get(task_url, allow_redirects=True)
    page.raise_for_status()
    action, hidden, groups = form_of(page.text)
    data = {**hidden, **{g: str(rng.randint(1, 5)) for g in groups}, **extra}
    return session.post(requests.compat.urljoin(page.url, action), data=data, allow_redirects=False)


def task_path(page: str) -> str:
    """The task's own path, ``/t/<assignment id>``, of a task page (an entry link serves the page on its own
    request; the page's form posts to, and its script shows, the task's path)."""
    action = form_of(page)[0]
    assert re.fullmatch(r"/t/[0-9a-f]{24}", action), action
    return action


def assignment_id(url: str) -> str:
    return re.search(r"/t/([0-9a-f]{24})", url).group(1)

"""Simulated workers for the local sandbox: they browse the worker site over HTTP and submit ratings.

Each worker lists the open HITs on the site, accepts each one, fetches the HIT's own page (exactly what a
person's browser gets), finds the rating groups ``i{k}_{aspect}`` in its form and POSTs answers to the
form's ``/mturk/externalSubmit`` with the extra field ``mturk_eval_simulated=1``.

The HIT's HTML holds no hidden truth. What a rating model needs (the item's method, whether it is an
attention check and its expected answer) comes from the experiment's ledger (``Ledger.hit_items``), which
the simulator may read and a worker could not. Without a ledger every item is rated from the neutral
default quality.

Rating model: a careful worker's score for an aspect is the method's quality for that aspect plus the
worker's own bias plus Gaussian noise, rounded and clipped to 1..5; on attention checks careful workers
answer within the expected range. Careless workers (a configurable share) click uniformly at random and
so mostly fail attention checks. Work times are log-normal (careless ones much faster) and reach the
server in the ``X-Mturk-Eval-Work-Time`` header, so nobody has to wait for them.
"""
from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from lxml import html as lxml_html
from tqdm import tqdm

from mturk_eval.errors import UserError
from mturk_eval.sandbox.server import PREVIEW_ASSIGNMENT, SIMULATED_FIELD, WORK_TIME_HEADER

ASPECT_FIELD = re.compile(r"^i(\d+)_([a-z_]+)$")

# Default qualities (1..5 scale) by method, loosely shaped like the paper's English results: fine-tuning
# on persona data is fluent but forgets the persona; prompt-tuning keeps the persona.
DEFAULT_QUALITY: dict[str, dict[str, float]] = {
    "prompt_tuning": {"fluency": 3.9, "engagingness": 3.4, "relevance": 3.4, "persona": 3.6},
    "finetune_none": {"fluency": 3.7, "engagingness": 3.0, "relevance": 3.1, "persona": 2.6},
    "finetune_added": {"fluency": 3.7, "engagingness": 3.2, "relevance": 3.2, "persona": 3.1},
    "human": {"fluency": 4.3, "engagingness": 3.8, "relevance": 4.0, "persona": 3.5},
}
NEUTRAL_QUALITY = 3.0


@dataclass
class RatingModel:
    """How simulated workers rate. Qualities are per method and aspect, on the 1..5 scale."""

    quality: dict[str, dict[str, float]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_QUALITY.items()})
    noise_sd: float = 0.8
    """Standard deviation of a careful worker's per-rating noise."""
    worker_bias_sd: float = 0.4
    """Standard deviation of each worker's constant leniency/harshness."""
    careless_share: float = 0.1
    """Share of workers who click at random."""
    work_time_median_s: float = 45.0
    careless_work_time_median_s: float = 8.0
    work_time_sigma: float = 0.5
    """Log-normal sigma of work times."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.careless_share <= 1.0:
            raise UserError(f"simulate: careless_share: expected a share from 0 to 1, got {self.careless_share!r}")
        for name in ("noise_sd", "worker_bias_sd", "work_time_sigma"):
            if getattr(self, name) < 0:
                raise UserError(f"simulate: {name}: expected a number >= 0, got {getattr(self, name)!r}")
        for name in ("work_time_median_s", "careless_work_time_median_s"):
            if getattr(self, name) <= 0:
                raise UserError(f"simulate: {name}: expected seconds > 0, got {getattr(self, name)!r}")


@dataclass
class SimWorker:
    worker_id: str
    careless: bool
    bias: float
    rng: random.Random


@dataclass
class SimulationResult:
    submitted: int = 0
    skipped: int = 0
    attention_checks: int = 0
    attention_passed: int = 0
    by_worker: dict[str, int] = field(default_factory=dict)
    careless_workers: list[str] = field(default_factory=list)


def make_workers(n: int, model: RatingModel, seed: int) -> list[SimWorker]:
    rng = random.Random(seed)
    n_careless = round(n * model.careless_share)
    careless = set(rng.sample(range(n), n_careless)) if n_careless else set()
    return [SimWorker(f"ASIM{seed % 1000:03d}W{i:04d}", i in careless, rng.gauss(0.0, model.worker_bias_sd),
                      random.Random(f"{seed}:{i}")) for i in range(n)]


def rate_item(worker: SimWorker, model: RatingModel, item: dict[str, Any] | None, aspect: str) -> int:
    """One score 1..5 for one aspect of one item."""
    if worker.careless:
        return worker.rng.randint(1, 5)
    check = (item or {}).get("attention_check") or None
    if check and aspect in check.get("aspects", {}):
        limit = int(check["aspects"][aspect])
        return worker.rng.randint(1, max(1, min(5, limit)))
    method = (item or {}).get("method")
    mean = model.quality.get(method, {}).get(aspect, NEUTRAL_QUALITY) if method else NEUTRAL_QUALITY
    score = mean + worker.bias + worker.rng.gauss(0.0, model.noise_sd)
    return int(min(5, max(1, round(score))))


def work_time(worker: SimWorker, model: RatingModel) -> float:
    median = model.careless_work_time_median_s if worker.careless else model.work_time_median_s
    return round(median * math.exp(worker.rng.gauss(0.0, model.work_time_sigma)), 1)


def _form_fields(page: str, base_url: str) -> tuple[str, dict[int, list[str]], dict[str, str], list[str]]:
    """The form's action, its rating groups by slot, other named inputs with values, other radio groups."""
    doc = lxml_html.document_fromstring(page)
    forms = doc.xpath("//form")
    if not forms:
        raise UserError(f"{base_url}: the HIT page has no <form>")
    form = forms[0]
    action = form.get("action") or "/mturk/externalSubmit"
    slots: dict[int, list[str]] = {}
    others: dict[str, str] = {}
    other_radios: list[str] = []
    for el in form.xpath(".//input[@name] | .//select[@name] | .//textarea[@name]"):
        name = el.get("name")
        typ = (el.get("type") or "").lower()
        m = ASPECT_FIELD.match(name)
        if m and typ == "radio":
            slots.setdefault(int(m.group(1)), [])
            if m.group(2) not in slots[int(m.group(1))]:
                slots[int(m.group(1))].append(m.group(2))
        elif typ == "radio":
            if name not in other_radios:
                other_radios.append(name)
        elif typ not in ("submit", "button", "reset") and name != "assignmentId":
            others.setdefault(name, el.get("value") or "")
    return action, slots, others, other_radios


def open_hits(session: requests.Session, url: str) -> list[str]:
    """HIT ids listed on the worker site for this session's worker."""
    r = session.get(url + "/", timeout=30)
    r.raise_for_status()
    doc = lxml_html.document_fromstring(r.text)
    return [tr.get("data-hit-id") for tr in doc.xpath("//tr[@data-hit-id]")]


def work_one(session: requests.Session, url: str, hit_id: str, worker: SimWorker, model: RatingModel,
             items_of: Callable[[str], list[dict[str, Any]] | None], result: SimulationResult) -> bool:
    """Accept, fetch, rate and submit one HIT; False when the HIT was gone or refused."""
    r = session.post(url + "/mturk/accept", data={"hitId": hit_id}, allow_redirects=False, timeout=30)
    if r.status_code != 303:
        return False
    work_url = urljoin(url + "/", r.headers["Location"])
    aid = parse_qs(urlparse(work_url).query)["assignmentId"][0]
    page = session.get(work_url, timeout=30)
    page.raise_for_status()
    frame = lxml_html.document_fromstring(page.text).xpath("//iframe[@id='task']/@src")
    task = session.get(urljoin(url + "/", frame[0]), timeout=30)
    task.raise_for_status()
    q = parse_qs(urlparse(frame[0]).query)
    if q.get("assignmentId", [PREVIEW_ASSIGNMENT])[0] != aid:
        raise UserError(f"{url}: the worker site gave the task page a different assignment id")
    action, slots, others, other_radios = _form_fields(task.text, url)
    items = items_of(hit_id) or []
    data: dict[str, str] = {"assignmentId": aid, **others}
    for name in other_radios:
        data[name] = "1"
    for k, aspects in sorted(slots.items()):
        item = items[k] if k < len(items) else None
        for a in aspects:
            data[f"i{k}_{a}"] = str(rate_item(worker, model, item, a))
        check = (item or {}).get("attention_check")
        if check:
            result.attention_checks += 1
            if all(int(data.get(f"i{k}_{a}", 99)) <= int(v) for a, v in check.get("aspects", {}).items()):
                result.attention_passed += 1
    data[SIMULATED_FIELD] = "1"
    submit_to = q.get("turkSubmitTo", [url])[0]
    target = urljoin(submit_to + "/", action) if not action.startswith("http") else action
    if urlparse(target).path != "/mturk/externalSubmit":
        target = submit_to.rstrip("/") + "/mturk/externalSubmit"
    resp = session.post(target, data=data, headers={WORK_TIME_HEADER: str(work_time(worker, model))}, timeout=30)
    if resp.status_code != 200:
        raise UserError(f"{target}: the sandbox refused a simulated submission ({resp.status_code}):"
                        f" {' '.join(resp.text.split())[:200]}")
    return True


def ledger_items(ledger) -> Callable[[str], list[dict[str, Any]] | None]:
    """Look items up in an open ``mturk_eval.ledger.Ledger`` (None for HITs it does not know)."""

    def items_of(hit_id: str) -> list[dict[str, Any]] | None:
        try:
            return ledger.hit_items(hit_id)
        except (KeyError, LookupError):
            return None

    return items_of


def simulate(url: str, workers: int, model: RatingModel | None = None, seed: int = 0,
             items_of: Callable[[str], list[dict[str, Any]] | None] | None = None,
             max_hits_per_worker: int | None = None, progress: bool = True) -> SimulationResult:
    """Let ``workers`` simulated workers work through every HIT open to them on the sandbox at ``url``."""
    if workers < 1:
        raise UserError(f"simulate: --workers: expected an integer >= 1, got {workers!r}")
    model = model or RatingModel()
    items_of = items_of or (lambda hit_id: None)
    url = url.rstrip("/")
    result = SimulationResult()
    crew = make_workers(workers, model, seed)
    result.careless_workers = [w.worker_id for w in crew if w.careless]
    bar = tqdm(total=None, desc="simulated assignments", unit="asg", disable=not progress)
    try:
        for w in crew:
            with requests.Session() as session:
                session.cookies.set("workerId", w.worker_id)
                try:
                    hits = open_hits(session, url)
                except requests.RequestException as exc:
                    raise UserError(f"{url}: cannot reach the sandbox's worker site ({exc})") from None
                w.rng.shuffle(hits)
                if max_hits_per_worker is not None:
                    hits = hits[:max_hits_per_worker]
                done = 0
                for hit_id in hits:
                    if work_one(session, url, hit_id, w, model, items_of, result):
                        done += 1
                        result.submitted += 1
                        bar.update(1)
                    else:
                        result.skipped += 1
                result.by_worker[w.worker_id] = done
    finally:
        bar.close()
    return result

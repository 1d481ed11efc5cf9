"""Simulated workers for the local sandbox: they browse the worker site over HTTP and submit ratings.

Each worker lists the open HITs on the site, accepts each one, fetches the HIT's own page (exactly what a
person's browser gets), finds the rating groups ``i{k}_{aspect}`` in its form and POSTs answers to the
form's ``/mturk/externalSubmit`` with the extra field ``mturk_eval_simulated=1``.

The HIT's HTML holds no hidden truth. What a rating model needs (the item's persona, utterance and reply
text, whether it is an attention check and its expected answer) comes from the experiment's ledger
(``Ledger.task_items``), which the simulator may read and a worker could not. Without a ledger every item
is rated from the neutral quality 3.

Latent quality (default): computed from the item's own text by a few crude, deterministic heuristics
(:func:`text_features`, :func:`text_quality`); the item's method and model are never looked at, so
whatever differences the report shows come from what the systems actually wrote (as judged by these
heuristics), not from an assumed result:

- persona: content words shared by the reply and the persona sentences (lowercase tokens, stopwords and
  generic chat words dropped, a tiny suffix stripper; CJK text as character bigrams). No shared word is
  3 ("irrelevant to the persona"), more shared words approach 5. Contradictions are not detected, so this
  is mostly 3..5;
- relevance: content words shared with the utterance, plus a little for a reply of the right shape (a
  question answered with yes/no or in the first person; otherwise a reply about oneself or the partner),
  less for generic replies and for parroting the utterance; an empty reply is 1;
- fluency: 4.5 minus penalties for repeated word triples and stutters ("the the"), non-text junk
  characters, fewer than 3 words, and a missing sentence end (a truncated generation); word order is not
  checked, so shuffled words without repeats still read as fluent;
- engagingness: a length between 6 and 30 words, asking a question back, talking about oneself and some
  content words add; generic replies ("i don't know", "ok") and repetition subtract.

These are heuristics, not a judge of dialogue quality: simulated ratings say nothing about how people
would rate the systems, and every report built from them opens with a SIMULATED banner. ``quality``
({method: {aspect: mean}}, ``--quality FILE``) is an opt-in override for users who want to simulate an
effect size they assume (e.g. for a power analysis): for the methods and aspects it lists it replaces the
text-based quality, and it is the user's assumption, not a finding.

Rating: a careful worker's score for an aspect is the item's latent quality plus the worker's own bias
plus Gaussian noise, rounded and clipped to 1..5; on attention checks careful workers answer within the
expected range. Careless workers (a configurable share) click uniformly at random and so mostly fail
attention checks. Work times are log-normal (careless ones much faster) and reach the server in the
``X-Mturk-Eval-Work-Time`` header, so nobody has to wait for them.
"""
from __future__ import annotations

import functools
import ipaddress
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import requests
from lxml import html as lxml_html
from tqdm import tqdm

from mturk_eval.errors import UserError
from mturk_eval.emulators.mturk.worker_site import PREVIEW_ASSIGNMENT, SIMULATED_FIELD, WORK_TIME_HEADER

ASPECT_FIELD = re.compile(r"^i(\d+)_([a-z_]+)$")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
MAX_REDIRECTS = 5

# --------------------------------------------------------------------------------------------------
# The default rating model: each item's latent quality from its own text (crude heuristics)

ASPECTS = ("fluency", "engagingness", "relevance", "persona")
NEUTRAL_QUALITY = 3.0
"""The latent quality of every aspect when the simulator knows nothing about an item (no ledger, no text)."""

# Function words plus words too generic in chat to tie a reply to a persona or an utterance.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren as at be because been before being below
between both but by can cannot could couldn did didn do does doesn doing don down during each else even ever
few for from further get gets getting go goes going gonna got had hadn has hasn have haven having he her here
hers herself him himself his how i if in into is isn it its itself just let ll me might more most much must my
myself no nor not now of off oh ok okay on once only or other ought our ours ourselves out over own re really
s same shall she should shouldn so some such t than that the their theirs them themselves then there these
they this those through to too um under until up us ve very was wasn we well were weren what when where which
while who whom why will with won would wouldn yeah yes yet you your yours yourself yourselves d m
like likes liked love loved enjoy enjoys enjoyed thing things something anything nothing everything lot lots
good great nice cool fun sure right know think thought want wanted make made say said see tell time day
people pretty kind sort way one ones lol haha hi hello hey thanks thank
""".split())

FIRST_PERSON = frozenset("i i'm im i've i'd i'll me my mine myself we we're our us".split())
FIRST_PERSON_JA = ("私", "僕", "俺", "わたし", "ぼく")
YES_NO = frozenset("yes yeah yep yup sure no nope nah not".split()) | {"はい", "いいえ", "うん", "ええ"}
QUESTION_OPENERS = frozenset("what who whom whose where when why how which do does did is are was were can could "
                             "would will have has should".split())
GENERIC_REPLIES = frozenset({
    "i don't know", "i dont know", "i do not know", "ok", "okay", "yes", "no", "yeah", "me too", "i see",
    "cool", "nice", "lol", "haha", "that's nice", "thats nice", "that's cool", "thats cool", "that is nice",
    "that is cool", "i'm not sure", "im not sure", "sure", "really", "oh", "hmm", "thanks", "thank you",
})

_LATIN_WORD = re.compile(r"[a-zà-öø-ÿ0-9]+(?:'[a-z]+)?")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uff66-\uff9f]+")
_TOKEN = re.compile(_CJK_RUN.pattern + "|" + _LATIN_WORD.pattern)
_HIRAGANA = re.compile(r"^[\u3040-\u309f]+$")
_END = (".", "!", "?", "…", "。", "！", "？", ")", '"', "'", "」", "』", "~", "〜")
_OK_CHARS = re.compile(r"[\w\s.,!?;:'\"()\-…。、！？「」『』・〜~]", re.UNICODE)


def _norm(text: str) -> str:
    return text.lower().replace("\u2019", "'")


def _stem(word: str) -> str:
    """A tiny suffix stripper, enough to match cats/cat, baking/bake/baker, played/play, teacher/teach."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suf in ("ing", "ed", "er"):
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            word = word[:-len(suf)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> run
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def words(text: str) -> list[str]:
    """Crude tokens: lowercase Latin words (apostrophes kept) and, for Japanese/Chinese script, the
    characters of each CJK run (there are no spaces to split on)."""
    out: list[str] = []
    for m in _TOKEN.finditer(_norm(text)):
        tok = m.group(0)
        if _CJK_RUN.fullmatch(tok):
            out.extend(tok)
        else:
            out.append(tok)
    return out


def content_tokens(text: str) -> set[str]:
    """Stemmed content words (stopwords and 1-letter words dropped) plus CJK character bigrams that are
    not all hiragana (hiragana is mostly particles and endings)."""
    text_l = _norm(text)
    out = {_stem(w) for w in _LATIN_WORD.findall(text_l) if w.split("'")[0] not in STOPWORDS and len(w) > 1}
    for run in _CJK_RUN.findall(text_l):
        out.update(run[i:i + 2] for i in range(len(run) - 1) if not _HIRAGANA.match(run[i:i + 2]))
    out.discard("")
    return out


def _n_words(text: str) -> float:
    """Word count; a CJK run counts as one word per two characters."""
    latin = len(_LATIN_WORD.findall(_norm(text)))
    cjk = sum(len(r) for r in _CJK_RUN.findall(text))
    return latin + cjk / 2.0


def _saturating(n: float, top: float, rate: float) -> float:
    return top * (1.0 - math.exp(-rate * n))


def text_features(item: dict[str, Any]) -> dict[str, float]:
    """The measurements behind :func:`text_quality` (also handy to see why an item got its scores)."""
    response = str(item.get("response") or "").strip()
    utterance = str(item.get("utterance") or "").strip()
    persona = item.get("persona") or []
    if isinstance(persona, str):
        persona = [persona]
    toks = words(response)
    n = len(toks)
    trigrams = list(zip(toks, toks[1:], toks[2:]))
    resp_content = content_tokens(response)
    persona_content = set().union(*(content_tokens(str(s)) for s in persona)) if persona else set()
    utt_content = content_tokens(utterance)
    norm = " ".join(toks)
    utt_toks = words(utterance)
    chars = [c for c in response if not c.isspace()]
    return {
        "n_words": _n_words(response),
        "repeated_trigram_share": (1.0 - len(set(trigrams)) / len(trigrams)) if trigrams else 0.0,
        "immediate_repeats": float(sum(1 for a, b in zip(toks, toks[1:]) if a == b and not _CJK_RUN.match(a))),
        "junk_char_share": (sum(1 for c in chars if not _OK_CHARS.match(c)) / len(chars)) if chars else 0.0,
        "ends_properly": float(response.endswith(_END)),
        "persona_overlap": float(len(resp_content & persona_content)),
        "utterance_overlap": float(len(resp_content & utt_content)),
        "content_words": float(len(resp_content)),
        "asks_question": float("?" in response or "？" in response),
        "mentions_self": float(any(t in FIRST_PERSON for t in toks) or any(p in response for p in FIRST_PERSON_JA)),
        "addresses_partner": float(any(t in ("you", "your", "you're", "yours") for t in toks)),
        "utterance_is_question": float("?" in utterance or "？" in utterance
                                       or (bool(utt_toks) and utt_toks[0] in QUESTION_OPENERS)),
        "opens_yes_no": float(bool(toks) and toks[0] in YES_NO),
        "generic": float(norm in GENERIC_REPLIES or (n > 0 and not resp_content)),
        "parrot": float(bool(toks) and norm == " ".join(utt_toks)),
    }


def _clip(x: float) -> float:
    return float(min(5.0, max(1.0, x)))


@functools.lru_cache(maxsize=65536)
def _text_quality(response: str, utterance: str, persona: tuple[str, ...]) -> tuple[float, float, float, float]:
    f = text_features({"response": response, "utterance": utterance, "persona": list(persona)})
    if f["n_words"] == 0:  # an empty reply (or punctuation only): bad on every aspect but persona
        return (1.0, 1.0, 1.0, NEUTRAL_QUALITY)
    # repetition, 0..1: share of repeated word triples ("i like it i like it") plus stutters ("the the")
    repetition = min(1.0, f["repeated_trigram_share"] + 0.25 * f["immediate_repeats"])
    junk = f["junk_char_share"]
    fluency = (4.5 - 3.0 * repetition - 4.0 * junk
               - (0.8 if f["n_words"] < 3 else 0.0) - (0.0 if f["ends_properly"] else 0.4))
    length = f["n_words"]
    length_credit = -0.6 if length < 4 else (0.5 if 6 <= length <= 30 else (0.2 if length <= 45 else -0.3))
    engagingness = (2.8 + length_credit + 0.5 * f["asks_question"] + 0.3 * f["mentions_self"]
                    + 0.3 * min(1.0, f["content_words"] / 3.0) - 0.8 * f["generic"] - 0.8 * f["parrot"]
                    - 1.5 * repetition - 2.0 * junk)
    if f["utterance_is_question"]:
        shape = 0.6 if (f["opens_yes_no"] or f["mentions_self"]) else 0.0
    else:
        shape = 0.3 if (f["mentions_self"] or f["addresses_partner"]) else 0.0
    relevance = (2.5 + _saturating(f["utterance_overlap"], 1.6, 0.8) + shape - 0.3 * f["generic"] - 1.0 * f["parrot"]
                 - 2.0 * junk)
    persona_score = NEUTRAL_QUALITY + _saturating(f["persona_overlap"], 2.0, 0.7)
    return (_clip(fluency), _clip(engagingness), _clip(relevance), _clip(persona_score))


def text_quality(item: dict[str, Any] | None) -> dict[str, float]:
    """The latent quality (1..5) of each aspect of one item, from its text alone; never from its method.

    Without an item or without a ``response`` field every aspect is :data:`NEUTRAL_QUALITY`.
    """
    if not item or item.get("response") is None:
        return {a: NEUTRAL_QUALITY for a in ASPECTS}
    persona = item.get("persona") or []
    if isinstance(persona, str):
        persona = [persona]
    q = _text_quality(str(item["response"]), str(item.get("utterance") or ""), tuple(str(s) for s in persona))
    return dict(zip(ASPECTS, q))


@dataclass
class RatingModel:
    """How simulated workers rate.

    By default an item's latent quality per aspect comes from its own text (:func:`text_quality`).
    ``quality`` ({method: {aspect: mean 1..5}}) is an explicit opt-in override: for the methods and aspects
    it lists, the mean is the number given (an assumption of the user's, e.g. an effect size for a power
    analysis) instead of the text-based one.
    """

    quality: dict[str, dict[str, float]] | None = None
    """Optional override of the latent quality per method and aspect; None: text-based only."""
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
        for method, aspects in (self.quality or {}).items():
            for aspect, v in (aspects or {}).items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 5:
                    raise UserError(f"simulate: quality: {method}.{aspect}: expected a number from 1 to 5, got {v!r}")


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
    refused: list[str] = field(default_factory=list)      # one line per task refused (address outside loopback)
    refused_ids: set[str] = field(default_factory=set)
    not_ours: int = 0                                      # open tasks of other experiments, left alone


def make_workers(n: int, model: RatingModel, seed: int) -> list[SimWorker]:
    rng = random.Random(seed)
    n_careless = round(n * model.careless_share)
    careless = set(rng.sample(range(n), n_careless)) if n_careless else set()
    return [SimWorker(f"ASIM{seed % 1000:03d}W{i:04d}", i in careless, rng.gauss(0.0, model.worker_bias_sd),
                      random.Random(f"{seed}:{i}")) for i in range(n)]


def item_quality(model: RatingModel, item: dict[str, Any] | None) -> dict[str, float]:
    """The latent quality of each aspect of ``item``: from its text, except where ``model.quality`` (the
    user's override) lists the item's method and the aspect. Without an item: neutral everywhere."""
    q = text_quality(item)
    method = (item or {}).get("method")
    if model.quality and method in model.quality:
        q.update({a: float(v) for a, v in model.quality[method].items()})
    return q


def rate_item(worker: SimWorker, model: RatingModel, item: dict[str, Any] | None, aspect: str) -> int:
    """One score 1..5 for one aspect of one item."""
    if worker.careless:
        return worker.rng.randint(1, 5)
    check = (item or {}).get("attention_check") or None
    if check and aspect in check.get("aspects", {}):
        limit = int(check["aspects"][aspect])
        return worker.rng.randint(1, max(1, min(5, limit)))
    mean = item_quality(model, item).get(aspect, NEUTRAL_QUALITY)
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


class AddressRefused(UserError):
    """A simulated rater was sent outside 127.0.0.0/8: refused before any request is made."""


def loopback_url(url: str) -> str:
    """``url`` if its host is an IPv4 address in 127.0.0.0/8 (``localhost`` is written as 127.0.0.1, so
    that no resolver can send it elsewhere); any other address is refused, never tried."""
    parts = urlparse(url)
    host = parts.hostname or ""
    if host == "localhost":
        parts = parts._replace(netloc=parts.netloc.replace("localhost", "127.0.0.1", 1))
        host = "127.0.0.1"
    try:
        ok = parts.scheme in ("http", "https") and ipaddress.IPv4Address(host) in LOOPBACK
    except ValueError:
        ok = False
    if not ok:
        raise AddressRefused(f"{url[:200]}: simulated raters only visit addresses in 127.0.0.0/8; refused")
    return parts.geturl()


def _request(session: requests.Session, method: str, url: str, **kw) -> requests.Response:
    """One request and its redirects, each address checked by :func:`loopback_url` before it is asked."""
    for _ in range(MAX_REDIRECTS + 1):
        resp = session.request(method, loopback_url(url), allow_redirects=False, timeout=30, **kw)
        if resp.status_code not in (301, 302, 303, 307, 308):
            return resp
        url = urljoin(resp.url, resp.headers.get("Location", ""))
        if resp.status_code in (301, 302, 303):
            method, kw = "GET", {k: v for k, v in kw.items() if k not in ("data", "json")}
    raise UserError(f"{url[:200]}: more than {MAX_REDIRECTS} redirects")


def rate_slots(slots: dict[int, list[str]], items: list[dict[str, Any]], worker: SimWorker, model: RatingModel,
               result: SimulationResult, data: dict[str, str]) -> None:
    """Fill ``data`` with a score for every aspect of every slot (counting attention checks passed) and
    the simulated-rater mark."""
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


class MTurkWorkerSite:
    """The channel through the emulated MTurk worker site: list the HITs open to a worker, preview one
    (following its frame, so an ExternalQuestion's address is checked before anything is accepted),
    accept, rate and submit, and give an accepted HIT back when its work fails. A channel through the
    rating site has the same two methods (:func:`simulate` takes any)."""

    def __init__(self, url: str):
        self.url = loopback_url(url.rstrip("/"))

    def open_tasks(self, session: requests.Session) -> list[str]:
        """HIT ids listed on the worker site for this session's worker."""
        r = _request(session, "GET", self.url + "/")
        r.raise_for_status()
        doc = lxml_html.document_fromstring(r.text)
        return [tr.get("data-hit-id") for tr in doc.xpath("//tr[@data-hit-id]")]

    def _frame(self, session: requests.Session, page_url: str) -> tuple[str, requests.Response]:
        page = _request(session, "GET", page_url)
        page.raise_for_status()
        frame = lxml_html.document_fromstring(page.text).xpath("//iframe[@id='task']/@src")
        if not frame:
            raise UserError(f"{page_url}: the worker page has no task frame")
        src = urljoin(self.url + "/", frame[0])
        task = _request(session, "GET", src)
        task.raise_for_status()
        return src, task

    def work_one(self, session: requests.Session, hit_id: str, worker: SimWorker, model: RatingModel,
                 items_of: Callable[[str], list[dict[str, Any]] | None], result: SimulationResult) -> bool:
        """Preview, accept, rate and submit one HIT; False when it was gone, refused or not ours to take."""
        try:  # the preview follows the task frame: an address outside loopback stops here, nothing accepted
            self._frame(session, self.url + "/mturk/preview?" + urlencode({"hitId": hit_id}))
        except AddressRefused as exc:
            result.refused.append(f"HIT {hit_id}: {exc.message}")
            return False
        r = _request(session, "POST", self.url + "/mturk/accept", data={"hitId": hit_id})
        if r.status_code != 200 or "/mturk/work" not in r.url:
            return False
        aid = parse_qs(urlparse(r.url).query)["assignmentId"][0]
        try:
            self._rate(session, r.url, aid, hit_id, worker, model, items_of, result)
        except AddressRefused as exc:  # e.g. a form that posts outside: nothing sent, the HIT given back
            self._give_back(session, aid)
            result.refused.append(f"HIT {hit_id}: {exc.message}")
            return False
        except BaseException:
            self._give_back(session, aid)
            raise
        return True

    def _give_back(self, session: requests.Session, aid: str) -> None:
        try:
            _request(session, "POST", self.url + "/mturk/return", data={"assignmentId": aid})
        except (requests.RequestException, UserError):
            pass  # the assignment then lapses at its deadline, as on MTurk

    def _rate(self, session, work_url: str, aid: str, hit_id: str, worker: SimWorker, model: RatingModel,
              items_of, result: SimulationResult) -> None:
        src, task = self._frame(session, work_url)
        q = parse_qs(urlparse(src).query)
        if q.get("assignmentId", [PREVIEW_ASSIGNMENT])[0] != aid:
            raise UserError(f"{self.url}: the worker site gave the task page a different assignment id")
        if urlparse(task.url).netloc != urlparse(self.url).netloc:
            # an ExternalQuestion on the rating site: rate there; the site hands the answers back to MTurk
            task = _through_gates(session, task, worker)
            if rate_site_page(session, task, worker, model, items_of(hit_id), result) is None:
                raise UserError(f"{task.url}: the rating site gave no task for this assignment")
            return
        action, slots, others, other_radios = _form_fields(task.text, self.url)
        items = items_of(hit_id) or []
        data: dict[str, str] = {"assignmentId": aid, **others}
        for name in other_radios:
            data[name] = "1"
        rate_slots(slots, items, worker, model, result, data)
        submit_to = q.get("turkSubmitTo", [self.url])[0]
        target = urljoin(submit_to + "/", action) if not action.startswith("http") else action
        if urlparse(target).path != "/mturk/externalSubmit":
            target = submit_to.rstrip("/") + "/mturk/externalSubmit"
        resp = _request(session, "POST", target, data=data,
                        headers={WORK_TIME_HEADER: str(work_time(worker, model))})
        if resp.status_code != 200:
            raise UserError(f"{target}: the sandbox refused a simulated submission ({resp.status_code}):"
                            f" {' '.join(resp.text.split())[:200]}")


def ledger_items(ledger) -> Callable[[str], list[dict[str, Any]] | None]:
    """Look items up in an open ``mturk_eval.ledger.Ledger`` (None for HITs it does not know)."""

    def items_of(hit_id: str) -> list[dict[str, Any]] | None:
        try:
            return ledger.task_items(hit_id)
        except (KeyError, LookupError):
            return None

    return items_of


def simulate(url: str, workers: int, model: RatingModel | None = None, seed: int = 0,
             items_of: Callable[[str], list[dict[str, Any]] | None] | None = None,
             max_hits_per_worker: int | None = None, progress: bool = True,
             task_ids: set[str] | None = None, channel: Any = None,
             profile: dict[str, Any] | None = None) -> SimulationResult:
    """Let ``workers`` simulated workers work through the tasks open to them at ``url`` (the MTurk worker
    site, or ``channel``): only those in ``task_ids`` when given (an experiment's own tasks; the CLI
    always gives them), every open one otherwise. Addresses outside 127.0.0.0/8 are refused, never
    requested; a failed HIT is given back, never left accepted; network failures are one-line errors.

    ``profile`` (locale, approved/rejected counts, Adult, Masters: see ``POST /_sandbox/workers``) is given
    to every simulated worker first, so that they meet the system qualification requirements of the
    experiment's HITs (``qualifications.profile_meeting``); custom qualifications they do not get."""
    if workers < 1:
        raise UserError(f"simulate: --workers: expected an integer >= 1, got {workers!r}")
    model = model or RatingModel()
    items_of = items_of or (lambda hit_id: None)
    channel = channel or MTurkWorkerSite(url)
    result = SimulationResult()
    crew = make_workers(workers, model, seed)
    result.careless_workers = [w.worker_id for w in crew if w.careless]
    bar = tqdm(total=None, desc="simulated assignments", unit="asg", disable=None if progress else True)
    sessions: list[requests.Session] = []
    try:
        queues: list[list[str]] = []
        for w in crew:
            session = requests.Session()
            sessions.append(session)
            session.cookies.set("workerId", w.worker_id)
            if profile is not None:
                r = _request(session, "POST", url.rstrip("/") + "/_sandbox/workers",
                             json={"worker_id": w.worker_id, **profile})
                if r.status_code not in (200, 404):  # 404: an MTurk-compatible service without profiles
                    raise UserError(f"{url}/_sandbox/workers: {r.status_code} {r.text[:200]}")
            hits = channel.open_tasks(session)
            if task_ids is not None:
                result.not_ours = max(result.not_ours, len([h for h in hits if h not in task_ids]))
                hits = [h for h in hits if h in task_ids]
            w.rng.shuffle(hits)
            if max_hits_per_worker is not None:
                hits = hits[:max_hits_per_worker]
            queues.append(hits)
            result.by_worker[w.worker_id] = 0
        # Workers take turns, one HIT each per round in a shuffled order, as a crowd works in parallel:
        # the assignments spread over all workers instead of the first MaxAssignments workers taking all.
        order_rng = random.Random(f"{seed}:order")
        turn = list(range(len(crew)))
        for r in range(max((len(q) for q in queues), default=0)):
            order_rng.shuffle(turn)
            for i in turn:
                if r >= len(queues[i]):
                    continue
                w = crew[i]
                if queues[i][r] in result.refused_ids:
                    continue
                n_refused = len(result.refused)
                if channel.work_one(sessions[i], queues[i][r], w, model, items_of, result):
                    result.by_worker[w.worker_id] += 1
                    result.submitted += 1
                    bar.update(1)
                elif len(result.refused) > n_refused:
                    result.refused_ids.add(queues[i][r])
                else:
                    result.skipped += 1
    except requests.RequestException as exc:
        raise UserError(f"{url}: cannot reach the sandbox's worker site ({type(exc).__name__}: {exc});"
                        f" {result.submitted} simulated assignments were submitted before that") from None
    finally:
        bar.close()
        for session in sessions:
            session.close()
    return result


# --------------------------------------------------------------------------------------------------
# Simulated raters on the rating site (mturk_eval.site): invite links, and ExternalQuestions whose task
# page is the site's. They take the pages a person gets (consent, practice, task, hand-back); every
# address goes through loopback_url first.

def _hidden(form) -> dict[str, str]:
    return {i.get("name"): i.get("value") or "" for i in form.xpath(".//input[@type='hidden'][@name]")}


def _through_gates(session: requests.Session, page: requests.Response, worker: SimWorker) -> requests.Response:
    """Agree to the consent text and answer the practice item, as a participant would, until the task."""
    for _ in range(4):
        doc = lxml_html.document_fromstring(page.text)
        consent = doc.xpath("//form[@id='consent-form']")
        if consent:
            page = _request(session, "POST", urljoin(page.url, consent[0].get("action")),
                            data={**_hidden(consent[0]), "decision": "agree"})
            continue
        if urlparse(page.url).path == "/onboarding" and doc.xpath("//form[@id='mturk_form']"):
            form = doc.xpath("//form[@id='mturk_form']")[0]
            names = sorted({i.get("name") for i in form.xpath(".//input[@type='radio']")})
            done = _request(session, "POST", urljoin(page.url, form.get("action")),
                            data={**_hidden(form), **{n: str(worker.rng.randint(1, 5)) for n in names}})
            nxt = lxml_html.document_fromstring(done.text).xpath("//a[@id='next']/@href")
            page = _request(session, "GET", urljoin(done.url, nxt[0]))
            continue
        return page
    return page


def rate_site_page(session: requests.Session, page: requests.Response, worker: SimWorker, model: RatingModel,
                   items: list[dict[str, Any]] | None, result: SimulationResult) -> requests.Response | None:
    """Rate the task on a site task page (``/t/<assignment>``), submit it and take the hand-back (an MTurk
    ExternalQuestion's answers go on to ``turkSubmitTo``). Returns the final page, or None when the page
    holds no task (no tasks left, a problem page)."""
    doc = lxml_html.document_fromstring(page.text)
    forms = doc.xpath("//form[@id='mturk_form']")
    if page.status_code != 200 or not forms:
        return None
    form = forms[0]
    _, slots, _, _ = _form_fields(page.text, page.url)
    data = _hidden(form)
    items = items or []
    rate_slots(slots, items, worker, model, result, data)
    headers = {WORK_TIME_HEADER: str(work_time(worker, model))}
    done = _request(session, "POST", urljoin(page.url, form.get("action")), data=data, headers=headers)
    if done.status_code != 200:
        raise UserError(f"{page.url}: the rating site refused a simulated submission ({done.status_code}):"
                        f" {' '.join(lxml_html.document_fromstring(done.text).text_content().split())[:200]}")
    back = lxml_html.document_fromstring(done.text).xpath("//form[@id='handback']")
    if back:   # the browser would post this at once (MTurk's externalSubmit)
        done = _request(session, "POST", urljoin(done.url, back[0].get("action")), data=_hidden(back[0]),
                        headers=headers)
    return done


def site_task_url(page: requests.Response) -> str:
    """The task's own URL (``/t/<assignment id>``) of a site task page, which its form posts to: an entry
    link serves the task on its own request, so ``page.url`` is the entry link (a browser's address bar
    shows the task's URL, set by the page's script)."""
    action = lxml_html.document_fromstring(page.text).xpath("//form[@id='mturk_form']/@action")
    return urljoin(page.url, action[0]) if action else page.url


def site_items(store) -> Callable[[str], list[dict[str, Any]] | None]:
    """Items of the task behind a site page URL (``/t/<assignment id>``), from an open SiteStore."""

    def items_of(page_url: str) -> list[dict[str, Any]] | None:
        aid = urlparse(page_url).path.rsplit("/", 1)[-1]
        a = store.assignment(aid)
        return store.task_items(a.task_id) if a else None

    return items_of


def simulate_links(site_url: str, invites: list, model: RatingModel | None = None, seed: int = 0,
                   items_of: Callable[[str], list[dict[str, Any]] | None] | None = None,
                   max_tasks_per_rater: int | None = None, progress: bool = True) -> SimulationResult:
    """Simulated raters, one per invite (``SiteStore.create_invites``), each rating tasks on the site at ``site_url`` until none is
    left for them (or ``max_tasks_per_rater``); they take turns, one task each per round."""
    site_url = loopback_url(site_url)
    model = model or RatingModel()
    items_of = items_of or (lambda url: None)
    result = SimulationResult()
    crew = make_workers(len(invites), model, seed)
    result.careless_workers = [w.worker_id for w in crew if w.careless]
    sessions = [requests.Session() for _ in crew]
    active = list(range(len(crew)))
    bar = tqdm(total=None, desc="simulated tasks", unit="task", disable=None if progress else True)
    try:
        while active:
            for i in list(active):
                w, tok, rid = crew[i], invites[i].token, invites[i].rater_id
                try:
                    page = _through_gates(sessions[i], _request(sessions[i], "GET", f"{site_url.rstrip('/')}/i/{tok}"), w)
                except requests.RequestException as exc:
                    raise UserError(f"{site_url}: cannot reach the rating site ({exc})") from None
                done = rate_site_page(sessions[i], page, w, model, items_of(site_task_url(page)), result)
                if done is None:
                    active.remove(i)
                    continue
                result.by_worker[rid] = result.by_worker.get(rid, 0) + 1
                result.submitted += 1
                bar.update(1)
                if max_tasks_per_rater is not None and result.by_worker[rid] >= max_tasks_per_rater:
                    active.remove(i)
    finally:
        bar.close()
        for s in sessions:
            s.close()
    return result

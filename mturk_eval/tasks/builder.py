"""The task builder: responses.jsonl rows -> rating items (+ attention checks) -> tasks -> the rating page.

Reads any file of the responses schema (docs/architecture.md section 3) with file:line errors, mixes in
attention-check items at ``hit.attention_check_rate``, groups items ``hit.items_per_hit`` to a task in a
seeded order, asks the platform for each task's deterministic request token and annotation
(``CrowdPlatform.request_token`` / ``annotation``, within the platform's limits) and renders the Jinja rating template
(autoescape on, so no persona, utterance or response text can inject markup) into the page raters see.
Nothing here talks to a platform; each platform wraps the page in its own document
(``CrowdPlatform.task_document``; MTurk: an HTMLQuestion, :mod:`mturk_eval.platforms.mturk.question`).
"""
from __future__ import annotations

import functools
import hashlib
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from mturk_eval.config import ASPECTS, EVAL_SETS
from mturk_eval.errors import UserError, where
from mturk_eval.io import iter_jsonl

if TYPE_CHECKING:
    from mturk_eval.platforms.crowd_platform import CrowdPlatform

ITEM_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
BATCH_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
REQUIRED_KEYS = ("item_id", "persona", "eval_set", "method", "model", "utterance", "response")
TEMPLATES_DIR = Path(__file__).parent / "templates"
ATTENTION_METHOD = "attention_check"

# Off-topic replies for attention checks: no dialogue or persona could make them relevant.
_OFF_TOPIC = {
    "en": [
        "The mitochondria is the powerhouse of the cell.",
        "Photosynthesis turns light, water and carbon dioxide into sugar.",
        "The capital of Australia is Canberra, not Sydney.",
        "A triangle's angles always add up to one hundred and eighty degrees.",
        "Copper is an excellent conductor of electricity.",
    ],
    "ja": [
        "ミトコンドリアは細胞のエネルギー工場です。",
        "光合成は光と水と二酸化炭素から糖を作ります。",
        "オーストラリアの首都はシドニーではなくキャンベラです。",
        "三角形の内角の和は常に百八十度です。",
        "銅は電気をよく通す金属です。",
    ],
}


# --------------------------------------------------------------------------------------------------
# Reading responses

def load_responses(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a responses.jsonl file; each problem is a UserError naming file:line and field."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for lineno, row in iter_jsonl(path):
        loc = where(path, lineno)
        for key in REQUIRED_KEYS:
            if key not in row:
                raise UserError(f"{loc}: {key}: required key missing")
        item_id = row["item_id"]
        if not isinstance(item_id, str) or not ITEM_ID_RE.fullmatch(item_id):
            raise UserError(f"{loc}: item_id: expected 1-200 characters of [A-Za-z0-9_.:-], got {item_id!r}")
        if item_id in seen:
            raise UserError(f"{loc}: item_id: {item_id!r} already used on line {seen[item_id]}")
        persona = row["persona"]
        if not isinstance(persona, list) or not persona or not all(isinstance(s, str) and s.strip() for s in persona):
            raise UserError(f"{loc}: persona: expected a non-empty list of non-empty strings, got {persona!r}")
        for key in ("eval_set", "method", "model", "utterance"):
            if not isinstance(row[key], str) or not row[key].strip():
                raise UserError(f"{loc}: {key}: expected a non-empty string, got {row[key]!r}")
        if row["eval_set"] not in EVAL_SETS:
            raise UserError(f"{loc}: eval_set: expected {' or '.join(EVAL_SETS)}, got {row['eval_set']!r}")
        if not isinstance(row["response"], str):
            raise UserError(f"{loc}: response: expected a string, got {row['response']!r}")
        if row.get("persona_id") is not None and not isinstance(row["persona_id"], str):
            raise UserError(f"{loc}: persona_id: expected a string or null, got {row['persona_id']!r}")
        if "attention_check" in row:
            raise UserError(f"{loc}: attention_check: reserved for the HIT builder, remove it from the input")
        seen[item_id] = lineno
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no responses in the file")
    return rows


def empty_responses(items: list[dict[str, Any]]) -> list[str]:
    """The item ids whose ``response`` is empty or only whitespace (a worker would rate a blank reply)."""
    return [it["item_id"] for it in items if not str(it.get("response", "")).strip()]


def describe_empty(empty_ids: list[str], total: int, path: str | Path, show: int = 5) -> str:
    """``3 of 42 responses in FILE are empty: id1, id2, id3`` (at most ``show`` ids, then ``and N more``)."""
    ids = ", ".join(empty_ids[:show]) + (f" and {len(empty_ids) - show} more" if len(empty_ids) > show else "")
    return f"{len(empty_ids)} of {total} responses in {path} are empty: {ids}"


# --------------------------------------------------------------------------------------------------
# Attention checks and HIT plans

def _garble(text: str, language: str, rng: random.Random) -> str:
    """Word salad from ``text``: shuffled words (characters for Japanese) with stutters; never fluent."""
    units = list(text.replace(" ", "")) if language == "ja" else text.split()
    if len(units) < 4:
        units = units + (list("ですがのをにはへ") if language == "ja" else "the of is and to a go".split())
    rng.shuffle(units)
    out = []
    for u in units:
        out.append(u)
        if rng.random() < 0.3:
            out.append(u)
    return ("" if language == "ja" else " ").join(out)


def check_batch(batch: str) -> None:
    """Refuse a batch label that could not be part of item ids, HIT keys and annotations intact."""
    if not isinstance(batch, str) or not BATCH_RE.fullmatch(batch):
        shown = batch if not isinstance(batch, str) or len(batch) <= 60 else batch[:57] + "..."
        raise UserError(f"--batch: expected 1-40 characters of [A-Za-z0-9_.-], got {shown!r}")


def short_hash(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def attention_check_count(n_items: int, rate: float) -> int:
    """How many attention-check items :func:`make_attention_checks` adds to ``n_items`` items so that they
    make up ``rate`` of all (at least one when the rate is above 0); the study planner prices them too."""
    if rate <= 0 or n_items <= 0:
        return 0
    return max(1, round(n_items * rate / (1.0 - rate)))


def make_attention_checks(items: list[dict[str, Any]], rate: float, seed: int, language: str,
                          batch: str) -> list[dict[str, Any]]:
    """Attention-check items so that they make up ``rate`` of all items: half garbled replies (expected
    fluency <= 2), half off-topic replies (expected relevance <= 2), built from real items' personas and
    utterances so that workers cannot tell them apart. ``method`` and ``model`` are ``attention_check``."""
    n = attention_check_count(len(items), rate)
    if n == 0:
        return []
    rng = random.Random(f"{seed}:{batch}:attention")
    sources = [items[rng.randrange(len(items))] for _ in range(n)]
    off_topic = _OFF_TOPIC.get(language, _OFF_TOPIC["en"])
    out = []
    for i, src in enumerate(sources):
        if i % 2 == 0:
            kind, response, aspects = "garbled", _garble(src["response"], language, rng), {"fluency": 2}
        else:
            kind, response, aspects = "off_topic", off_topic[rng.randrange(len(off_topic))], {"relevance": 2}
        # A short hash of the source id, not the id itself: ids stay well under 200 characters and
        # distinct whatever the lengths of the batch label and the source id.
        item_id = f"attn.{batch}.{i}.{short_hash(src['item_id'])}"
        if not ITEM_ID_RE.fullmatch(item_id):
            raise UserError(f"--batch: {batch!r} cannot be part of an item id; use [A-Za-z0-9_.-]")
        out.append({
            "item_id": item_id, "persona_id": src.get("persona_id"), "persona": list(src["persona"]),
            "eval_set": src["eval_set"], "pair_id": src.get("pair_id"), "method": ATTENTION_METHOD,
            "model": ATTENTION_METHOD, "utterance": src["utterance"], "response": response,
            "attention_check": {"aspects": aspects, "kind": kind, "source": src["item_id"]},
        })
    return out


def _source(item: dict[str, Any]) -> str | None:
    check = item.get("attention_check")
    return check.get("source") if isinstance(check, dict) else None


def _clashes(chunk: list[dict[str, Any]]) -> int:
    """How many attention checks in ``chunk`` sit beside the item they were built from (giving them away)."""
    ids = {it["item_id"] for it in chunk}
    return sum(1 for it in chunk if _source(it) in ids)


def _separate_checks(chunks: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Move every attention check out of a HIT that holds its source item, by swapping it with an item of
    another HIT (the first swap, in HIT then slot order, that lowers the two HITs' clashes), so the plan
    stays deterministic and every HIT keeps its size. A clash no swap can fix (a single HIT) is left."""
    chunks = [list(c) for c in chunks]
    improved = True
    while improved:  # each swap lowers the total number of clashes, so this ends
        improved = False
        for i, chunk in enumerate(chunks):
            for pos in range(len(chunk)):
                if _source(chunk[pos]) not in {it["item_id"] for it in chunk}:
                    continue
                before_i = _clashes(chunk)
                for j in [*range(i + 1, len(chunks)), *range(i)]:
                    before = before_i + _clashes(chunks[j])
                    swap = next((k for k in range(len(chunks[j]))
                                 if _swapped_clashes(chunk, pos, chunks[j], k) < before), None)
                    if swap is not None:
                        chunk[pos], chunks[j][swap] = chunks[j][swap], chunk[pos]
                        improved = True
                        break
    return chunks


def _swapped_clashes(a: list[dict[str, Any]], pos: int, b: list[dict[str, Any]], k: int) -> int:
    a2, b2 = list(a), list(b)
    a2[pos], b2[k] = b[k], a[pos]
    return _clashes(a2) + _clashes(b2)


def plan_tasks(items: list[dict[str, Any]], *, experiment: str, target: str, batch: str, seed: int,
               items_per_hit: int, places: int, reward: str, start_index: int = 0,
               platform: "type[CrowdPlatform] | CrowdPlatform | None" = None) -> list[dict[str, Any]]:
    """Shuffle ``items`` (seeded) and cut them into tasks of ``items_per_hit`` (the last may be shorter),
    each for ``places`` raters: dicts with task_key, batch, request_token, annotation, places, reward,
    item_ids (what :meth:`mturk_eval.ledger.Ledger.add_plan` stores). Request tokens and annotations are
    the ``platform``'s (its limits: MTurk's 64-character token, 255-character annotation); default the
    interface's rules."""
    from mturk_eval.platforms.crowd_platform import CrowdPlatform

    naming = platform if platform is not None else CrowdPlatform
    order = list(items)
    random.Random(f"{seed}:{batch}:{start_index}:order").shuffle(order)
    chunks = _separate_checks([order[s:s + items_per_hit] for s in range(0, len(order), items_per_hit)])
    hits = []
    for n, chunk in enumerate(chunks, start=start_index):
        ids = [it["item_id"] for it in chunk]
        hit_key = f"{batch}/{n:05d}"
        token = naming.request_token(experiment, target, batch, hit_key, ids)
        hits.append({
            "task_key": hit_key, "batch": batch, "request_token": token,
            "annotation": naming.annotation(experiment, hit_key, token),
            "places": places, "reward": reward, "item_ids": ids,
        })
    return hits


# --------------------------------------------------------------------------------------------------
# Rendering

def template_env(template_dir: str | Path | None = None) -> jinja2.Environment:
    """Jinja environment over ``template_dir`` (searched first) and the built-in templates; autoescape on
    for every template, whatever its file name. Cached per folder: Jinja then parses each template once
    (and still reloads a template whose file changed). A ``template_dir`` that is not a folder is an error:
    Jinja would silently skip it and render the built-in template."""
    if template_dir:
        check_template_dir(template_dir)
    return _template_env(str(template_dir) if template_dir else None)


def check_template_dir(template_dir: str | Path) -> None:
    """Refuse a ``hit.template_dir`` that does not exist or is not a folder (config loading checks it
    too, naming the config file; this covers configs built in code)."""
    path = Path(template_dir)
    if not path.is_dir():
        raise UserError(f"hit.template_dir: {path}: {'not a folder' if path.exists() else 'folder not found'}")


@functools.lru_cache(maxsize=8)
def _template_env(template_dir: str | None) -> jinja2.Environment:
    dirs = [template_dir] if template_dir else []
    dirs.append(str(TEMPLATES_DIR))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


def template_name(language: str) -> str:
    return f"rating_{language}.html"


def render_html(items: list[dict[str, Any]], language: str, submit_url: str,
                template_dir: str | Path | None = None) -> str:
    """The worker-facing HTML document for one HIT (items in slot order)."""
    env = template_env(template_dir)
    try:
        tpl = env.get_template(template_name(language))
    except jinja2.TemplateNotFound:
        raise UserError(f"{template_dir or TEMPLATES_DIR}: {template_name(language)}: template not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"{exc.filename}:{exc.lineno}: template syntax error: {exc.message}") from None
    view = [{"slot": k, "persona": it["persona"], "utterance": it["utterance"], "response": it["response"]}
            for k, it in enumerate(items)]
    try:
        return tpl.render(items=view, aspects=ASPECTS, submit_url=submit_url)
    except jinja2.UndefinedError as exc:
        raise UserError(f"{template_name(language)}: template uses an undefined value ({exc.message})") from None


def question_sha(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()[:16]

"""Batch results files of any rating template: a TOML mapping from MTurk's columns to long-format ratings.

``mturk-eval report --batch-csv FILE --mapping MAPPING.toml`` reads other teams' files (docs/report.md,
"Other templates"). A mapping says how many items a HIT holds (``items_per_hit``, slots numbered from
``slot_base``), builds each item's id and system from templates over the columns (``"{Input.query_id}-{slot}"``)
or constants, and names each aspect with its scale and where its answer is:

- a plain value column, ``answer = "Answer.q{slot}"`` (the cell holds the score);
- a flattened radio group, ``answer = "Answer.coherence_{slot}.option_{value}"`` (the cell that is
  true/on/True/1 gives the value; two true cells are an error, none a missing answer);
- crowd-form tasks: when the named column does not exist but ``Answer.taskAnswers`` does, the same name
  without ``Answer.`` is looked up in its JSON (``{"q1": "3"}``, ``{"q1": {"3": true}}``, ``{"q1.option_3": {"on": true}}``).

For layouts no template can express, ``function = "my_mapping.py:ratings"`` names a Python function
called with each row as ``dict[str, str]`` and yielding long-format rows (item_id, eval_set, method,
model, aspect, score; optional persona_id). Worker, assignment, status, work time and reward always come
from the fixed columns. Without a mapping, the toolkit's own layout is read
(:func:`mturk_eval.analysis.ratings.ratings_from_batch`).

:func:`suggest_mapping` writes a starting mapping from the columns a file has (``mturk-eval mapping suggest``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mturk_eval.analysis.aspects import PAPER_ASPECTS, Aspect, check_aspects
from mturk_eval.analysis.batch_csv import BATCH_FIXED_COLUMNS, TRAILING_COLUMNS, BatchCSV
from mturk_eval.analysis.ratings import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    Ratings,
    ResponseIndex,
    _parse_reward,
    _score_value,
    ratings_from_columns,
)
from mturk_eval.analysis.ratings import ratings_from_batch as own_layout_ratings
from mturk_eval.errors import UserError, where
from mturk_eval.io import read_text

TRUE = {"true", "on", "1", "yes", "checked"}      # compared lower-case: True, TRUE, On ...
FALSE = {"", "false", "off", "0", "no"}
SYSTEM_FIELDS = ("eval_set", "method", "model")
TOP_KEYS = ("items_per_hit", "slot_base", "item_id", "persona_id", "system", "aspects", "function", "missing")
ASPECT_KEYS = ("name", "scale", "answer", "table2", "table3")
_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass
class AspectMap:
    aspect: Aspect
    answer: str | None  # template of the answer column; None with a mapping function


@dataclass
class Mapping:
    """A parsed, self-checked mapping file (checked against a batch file's columns when applied)."""

    path: str
    item_id: str = ""
    items_per_hit: int = 1
    slot_base: int = 0
    persona_id: str | None = None
    system: dict[str, str] = field(default_factory=dict)
    aspects: list[AspectMap] = field(default_factory=list)
    function: str | None = None
    missing: str = "error"   # a missing answer: "error" (as the toolkit's own layout) or "skip" (counted)

    def __post_init__(self) -> None:
        key = f"{self.path}"
        if not isinstance(self.items_per_hit, int) or isinstance(self.items_per_hit, bool) or self.items_per_hit < 1:
            raise UserError(f"{key}: items_per_hit: expected an integer >= 1, got {self.items_per_hit!r}")
        if not isinstance(self.slot_base, int) or isinstance(self.slot_base, bool) or self.slot_base < 0:
            raise UserError(f"{key}: slot_base: expected an integer >= 0, got {self.slot_base!r}")
        if self.missing not in ("error", "skip"):
            raise UserError(f"{key}: missing: expected \"error\" or \"skip\", got {self.missing!r}")
        if self.function is None:
            if not isinstance(self.item_id, str) or not self.item_id:
                raise UserError(f"{key}: item_id: expected a template such as \"{{Input.query_id}}-{{slot}}\", "
                                f"got {self.item_id!r}")
            for i, a in enumerate(self.aspects):
                if not isinstance(a.answer, str) or not a.answer:
                    raise UserError(f"{key}: aspects[{i}].answer: expected a column template such as "
                                    f"\"Answer.q{{slot}}\", got {a.answer!r}")
        for k, v in self.system.items():
            if k not in (*SYSTEM_FIELDS,):
                raise UserError(f"{key}: system.{k}: unknown key (expected {', '.join(SYSTEM_FIELDS)})")
            if not isinstance(v, str):
                raise UserError(f"{key}: system.{k}: expected a string (a constant or a template), got {v!r}")

    @property
    def slots(self) -> range:
        return range(self.slot_base, self.slot_base + self.items_per_hit)

    @property
    def aspect_specs(self) -> tuple[Aspect, ...]:
        return tuple(a.aspect for a in self.aspects) if self.aspects else PAPER_ASPECTS


def load_mapping(path: str | os.PathLike) -> Mapping:
    """Read and check a mapping TOML file (unknown keys, types, scales are one-line errors)."""
    path = Path(path)
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    for k in data:
        if k not in TOP_KEYS:
            raise UserError(f"{path}: unknown key {k!r} (expected {', '.join(TOP_KEYS)})")
    system = data.get("system", {})
    if not isinstance(system, dict):
        raise UserError(f"{path}: system: expected a table ([system]), got {system!r}")
    raw_aspects = data.get("aspects", [])
    if not isinstance(raw_aspects, list) or not all(isinstance(a, dict) for a in raw_aspects):
        raise UserError(f"{path}: aspects: expected [[aspects]] tables, got {raw_aspects!r}")
    for i, a in enumerate(raw_aspects):
        for k in a:
            if k not in ASPECT_KEYS:
                raise UserError(f"{path}: aspects[{i}]: unknown key {k!r} (expected {', '.join(ASPECT_KEYS)})")
    function = data.get("function")
    if function is not None and (not isinstance(function, str) or ":" not in function):
        raise UserError(f"{path}: function: expected \"file.py:function_name\", got {function!r}")
    if function is None and not raw_aspects:
        raise UserError(f"{path}: aspects: expected at least one [[aspects]] table (name, scale, answer), got none")
    specs = check_aspects(raw_aspects, f"{path}: aspects") if raw_aspects else ()
    aspects = [AspectMap(s, a.get("answer")) for s, a in zip(specs, raw_aspects)]
    return Mapping(path=str(path), item_id=data.get("item_id", ""), items_per_hit=data.get("items_per_hit", 1),
                   slot_base=data.get("slot_base", 0), persona_id=data.get("persona_id"), system=system,
                   aspects=aspects, function=function, missing=data.get("missing", "error"))


# --------------------------------------------------------------------------------------------------
# Templates


@dataclass
class Template:
    """A template resolved for one slot (and value): literal text and the columns it reads."""

    parts: list[str]          # literal, column, literal, column, ... (even indices literal)

    @property
    def columns(self) -> list[str]:
        return self.parts[1::2]

    def render(self, row: dict[str, str]) -> str:
        return "".join(p if i % 2 == 0 else row.get(p, "").strip() for i, p in enumerate(self.parts))


def _is_column_name(name: str) -> bool:
    return name.startswith(("Input.", "Answer.")) or name in BATCH_FIXED_COLUMNS or name in TRAILING_COLUMNS


def compile_template(template: str, key: str, columns: set[str], batch_path: str, slot: int,
                     value: int | None = None) -> Template:
    """``{slot}`` (and ``{value}``) substituted, then every ``{Column}`` checked against the file."""
    text = template.replace("{slot}", str(slot))
    if value is not None:
        text = text.replace("{value}", str(value))
    parts: list[str] = []
    pos = 0
    for m in _FIELD.finditer(text):
        parts.append(text[pos:m.start()])
        name = m.group(1)
        if name not in columns:
            if _is_column_name(name):
                raise UserError(f"{key}: {template!r} names the column {name!r}, which {batch_path} lacks")
            extra = ", {value}" if "answer" in key else ""
            raise UserError(f"{key}: {template!r}: unknown template field {{{name}}} (expected {{slot}}{extra} or a "
                            f"column of {batch_path}, e.g. {{Input.<name>}})")
        parts.append(name)
        pos = m.end()
    parts.append(text[pos:])
    return Template(parts)


def _answer_name(template: str, slot: int, value: int | None = None) -> str:
    text = template.replace("{slot}", str(slot))
    return text.replace("{value}", str(value)) if value is not None else text


# --------------------------------------------------------------------------------------------------
# Applying a mapping


def _truth(v: Any, name: str, path: str, line: int) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, dict):  # crowd-form checkbox/radio option: {"on": true}
        return any(_truth(x, name, path, line) for x in v.values())
    t = "" if v is None else str(v).strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise UserError(f"{where(path, line)}: {name}: expected true/on/1 or an empty cell (a radio-group option), got {v!r}")


class _Answers:
    """One row's answers: its cells, and ``Answer.taskAnswers`` JSON when the file has it."""

    def __init__(self, row: dict[str, str], columns: set[str], path: str, line: int, task_answers: bool):
        self.row, self.columns, self.json = row, columns, None
        if task_answers:
            raw = row.get("Answer.taskAnswers", "")
            try:
                parsed = json.loads(raw) if raw.strip() else [{}]
            except json.JSONDecodeError as exc:
                raise UserError(f"{where(path, line)}: Answer.taskAnswers: expected a JSON array, got {raw[:40]!r} "
                                f"({exc.msg})") from None
            if isinstance(parsed, dict):
                parsed = [parsed]
            if not isinstance(parsed, list) or not parsed or not isinstance(parsed[0], dict):
                raise UserError(f"{where(path, line)}: Answer.taskAnswers: expected a JSON array of one object, "
                                f"got {raw[:40]!r}")
            self.json = parsed[0]

    def get(self, name: str) -> Any:
        if name in self.columns:
            return self.row.get(name, "")
        if self.json is not None and name.startswith("Answer."):
            return self.json.get(name[7:])
        return None


def _check_answer_columns(m: Mapping, columns: set[str], path: str, task_answers: bool) -> None:
    """Every answer template's columns exist (or are taskAnswers keys) and its fields are known."""
    for i, am in enumerate(m.aspects):
        key = f"{m.path}: aspects[{i}].answer"
        t = am.answer
        for name in _FIELD.findall(t):
            if name not in ("slot", "value"):
                raise UserError(f"{key}: {t!r}: unknown template field {{{name}}} (expected {{slot}} or {{value}}; "
                                "the template is the answer column's name)")
        if not t.startswith("Answer."):
            raise UserError(f"{key}: {t!r}: expected an Answer.* column name")
        if task_answers:
            continue  # names not among the columns are looked up in the JSON, row by row
        values = range(am.aspect.low, am.aspect.high + 1) if "{value}" in t else [None]
        for slot in m.slots:
            names = [_answer_name(t, slot, v) for v in values]
            if not any(n in columns for n in names):
                raise UserError(f"{key}: {t!r} names the column {names[0]!r}, which {path} lacks")


def _radio_outside(template: str, slot: int, columns: set[str], aspect: Aspect) -> list[tuple[str, int]]:
    """Columns of the radio group for values outside the aspect's scale (``option_5`` on a 1-4 scale)."""
    pat = re.escape(template.replace("{slot}", str(slot))).replace(re.escape("{value}"), r"(-?\d+)")
    rx = re.compile(f"^{pat}$")
    out = []
    for c in columns:
        mm = rx.match(c)
        if mm and not aspect.low <= int(mm.group(1)) <= aspect.high:
            out.append((c, int(mm.group(1))))
    return sorted(out, key=lambda x: x[1])


def _score_of(am: Aspect, template: str, slot: int, answers: _Answers, path: str, line: int,
              outside: list[tuple[str, int]]) -> int | None:
    """The score one row gives one aspect of one slot; None for a missing answer."""
    a = am
    if "{value}" not in template:
        name = _answer_name(template, slot)
        v = answers.get(name)
        if isinstance(v, dict):  # crowd-form radio: {"3": true, "4": false}
            chosen = [k for k, on in v.items() if _truth(on, name, path, line)]
            if len(chosen) > 1:
                raise UserError(f"{where(path, line)}: {name}: expected one chosen option, got {len(chosen)} "
                                f"({', '.join(chosen)})")
            v = chosen[0] if chosen else None
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        x = _score_value(v.strip() if isinstance(v, str) else v, a.low, a.high)
        if x is None:
            raise UserError(f"{where(path, line)}: {name}: expected an integer from {a.low} to {a.high} "
                            f"({a.name}'s scale), got {v!r}")
        return x
    for col, value in outside:
        if _truth(answers.get(col), col, path, line):
            raise UserError(f"{where(path, line)}: {col}: expected a value from {a.low} to {a.high} ({a.name}'s "
                            f"scale), got a true cell for {value}")
    chosen = [v for v in range(a.low, a.high + 1)
              if _truth(answers.get(_answer_name(template, slot, v)), _answer_name(template, slot, v), path, line)]
    if len(chosen) > 1:
        names = " and ".join(_answer_name(template, slot, v) for v in chosen)
        raise UserError(f"{where(path, line)}: {_answer_name(template, slot, chosen[0])}: expected one true cell in "
                        f"the radio group, got {len(chosen)} ({names})")
    return chosen[0] if chosen else None


def _load_function(m: Mapping) -> Callable[[dict[str, str]], Any]:
    file, _, name = m.function.rpartition(":")
    fpath = (Path(m.path).parent / file) if not os.path.isabs(file) else Path(file)
    if not fpath.is_file():
        raise UserError(f"{m.path}: function: {fpath}: file not found")
    spec = importlib.util.spec_from_file_location(f"mturk_eval_mapping_{fpath.stem}", fpath)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure becomes one line
        raise UserError(f"{m.path}: function: importing {fpath.name} raised {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"{m.path}: function: {fpath.name} has no function {name!r}")
    return fn


def _fixed(row: dict[str, str]) -> dict[str, Any]:
    status = row.get("AssignmentStatus", "").strip()
    if row.get("Reject", "").strip():
        status = "Rejected"
    return {"worker_id": row.get("WorkerId", "").strip(), "assignment_id": row.get("AssignmentId", "").strip(),
            "status": status, "work_time_s": row.get("WorkTimeInSeconds", "").strip(), "simulated": 0,
            "attention_check": 0, "attention_passed": None}


def ratings_from_mapping(batch: BatchCSV, mapping: Mapping, responses: ResponseIndex | None = None) -> Ratings:
    """Long-format ratings from a batch file through ``mapping`` (module docstring)."""
    path = batch.path
    columns = set(batch.columns)
    m = mapping
    task_answers = "Answer.taskAnswers" in columns
    out: dict[str, list[Any]] = {c: [] for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
    lines: list[int] = []
    rewards: list[Any] = []
    skipped = 0

    def add(item: dict[str, Any], fixed: dict[str, Any], row: dict[str, str], line: int) -> None:
        for c in out:
            out[c].append(item.get(c, fixed.get(c)))
        rewards.append(_parse_reward(row.get("Reward", "")))
        lines.append(line)

    if m.function is not None:
        fn = _load_function(m)
        need = ("item_id", "eval_set", "method", "model", "aspect", "score")
        for n, (row, line) in enumerate(zip(batch.rows, batch.lines), start=1):
            fixed = _fixed(row)
            try:
                produced = list(fn(dict(row)) or [])
            except Exception as exc:  # noqa: BLE001 - the user's code: its message, with the row
                raise UserError(f"{where(path, line)}: mapping function {m.function} raised {type(exc).__name__}: "
                                f"{exc} (batch row {n})") from None
            for item in produced:
                if not isinstance(item, dict) or any(k not in item for k in need):
                    raise UserError(f"{where(path, line)}: mapping function {m.function}: expected dicts with "
                                    f"{', '.join(need)}, got {item!r} (batch row {n})")
                add({k: item[k] for k in (*need, "persona_id") if k in item}, fixed, row, line)
    else:
        key = f"{m.path}"
        slots = list(m.slots)
        id_t = {s: compile_template(m.item_id, f"{key}: item_id", columns, path, s) for s in slots}
        persona_t = ({s: compile_template(m.persona_id, f"{key}: persona_id", columns, path, s) for s in slots}
                     if m.persona_id else None)
        sys_t = {f: {s: compile_template(t, f"{key}: system.{f}", columns, path, s) for s in slots}
                 for f, t in m.system.items()}
        _check_answer_columns(m, columns, path, task_answers)
        outside = {(i, s): _radio_outside(am.answer, s, columns, am.aspect) if "{value}" in am.answer else []
                   for i, am in enumerate(m.aspects) for s in slots}
        for row, line in zip(batch.rows, batch.lines):
            fixed = _fixed(row)
            answers = _Answers(row, columns, path, line, task_answers)
            for s in slots:
                t = id_t[s]
                if t.columns and not any(row.get(c, "").strip() for c in t.columns):
                    if len(slots) > 1:
                        continue  # a HIT with fewer items than slots leaves the rest empty
                    raise UserError(f"{where(path, line)}: {t.columns[0]}: expected a value for item_id, got an "
                                    "empty cell")
                iid = t.render(row)
                meta: dict[str, Any] = {}
                if responses is not None and iid in responses.items:
                    meta.update(responses.items[iid])
                for f, ts in sys_t.items():
                    meta[f] = ts[s].render(row)
                if persona_t is not None:
                    meta["persona_id"] = persona_t[s].render(row)
                for f in SYSTEM_FIELDS:
                    if not meta.get(f):
                        why = ("the responses file has no such item" if responses is not None
                               else "no --responses file was given")
                        raise UserError(f"{where(path, line)}: system.{f}: expected the item's {f} (from the mapping "
                                        f"{m.path} or the responses file), got none for item {iid!r} ({why})")
                for i, am in enumerate(m.aspects):
                    score = _score_of(am.aspect, am.answer, s, answers, path, line, outside[(i, s)])
                    if score is None:
                        if m.missing == "skip":
                            skipped += 1
                            continue
                        name = _answer_name(am.answer, s, am.aspect.low if "{value}" in am.answer else None)
                        raise UserError(f"{where(path, line)}: {name}: expected a score from {am.aspect.low} to "
                                        f"{am.aspect.high} ({am.aspect.name}), got an empty answer"
                                        + (" (no true cell in the radio group)" if "{value}" in am.answer else ""))
                    add({"item_id": iid, "eval_set": meta["eval_set"], "method": meta["method"],
                         "model": meta["model"], "persona_id": meta.get("persona_id"), "aspect": am.aspect.name,
                         "score": score}, fixed, row, line)
    if not lines:
        raise UserError(f"{path}: expected at least one rating from the mapping {m.path}, got none")
    r = ratings_from_columns(out, path, lines, reward=rewards, aspects=m.aspect_specs)
    if skipped:
        r.notes.append(f"{skipped} missing answer(s) (an empty cell, or no true cell in a radio group) were "
                       f"skipped, as the mapping's missing = \"skip\" asks.")
    return r


def ratings_from_batch(batch: BatchCSV, responses: ResponseIndex | None = None,
                       mapping: Mapping | None = None) -> Ratings:
    """A batch results file's ratings: through ``mapping``, or the toolkit's own layout without one."""
    if mapping is None:
        return own_layout_ratings(batch, responses)
    return ratings_from_mapping(batch, mapping, responses)


# --------------------------------------------------------------------------------------------------
# Suggesting a mapping


_NUM = re.compile(r"\d+")


def _families(names: list[str]) -> dict[str, list[tuple[int, ...]]]:
    """Column names grouped by their shape with every number replaced by ``{}``."""
    fam: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    for n in names:
        fam[_NUM.sub("{}", n)].append(tuple(int(x) for x in _NUM.findall(n)))
    return fam


def _looks_boolean(values: list[str]) -> bool:
    seen = {v.strip().lower() for v in values}
    return bool(seen) and seen <= TRUE | FALSE and bool(seen & (TRUE - {"1"}))


def _ints(values: list[Any]) -> list[int]:
    out = []
    for v in values:
        x = _score_value(v, -1000, 1000)
        if x is not None:
            out.append(x)
    return out


def suggest_mapping(batch: BatchCSV) -> str:
    """A starting mapping (TOML text) for ``batch``, from the Answer.* and Input.* columns it finds:
    radio groups (``..._{slot}.option_{value}`` with true/on cells), plain integer answers, crowd-form
    ``Answer.taskAnswers`` keys. Raises a one-line error when no column looks like a rating."""
    answers = [c for c in batch.columns if c.startswith("Answer.")]
    values: dict[str, list[Any]] = defaultdict(list)
    names = list(answers)
    if "Answer.taskAnswers" in answers:
        names.remove("Answer.taskAnswers")
        for row in batch.rows[:200]:
            try:
                parsed = json.loads(row.get("Answer.taskAnswers", "") or "[{}]")
            except json.JSONDecodeError:
                continue
            obj = parsed[0] if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict) else \
                parsed if isinstance(parsed, dict) else {}
            for k, v in obj.items():
                n = f"Answer.{k}"
                if n not in names:
                    names.append(n)
                if isinstance(v, dict):
                    chosen = [kk for kk, on in v.items() if on is True]
                    values[n].extend(chosen)
                else:
                    values[n].append(v if not isinstance(v, bool) else str(v).lower())
    for row in batch.rows[:200]:
        for c in answers:
            if c != "Answer.taskAnswers":
                values[c].append(row.get(c, ""))
    aspects: list[dict[str, Any]] = []
    slot_numbers: set[int] = set()
    for shape, nums in _families(names).items():
        members = [n for n in names if _NUM.sub("{}", n) == shape]
        cells = [v for n in members for v in values[n]]
        k = shape.count("{}")
        if k >= 1 and _looks_boolean([str(v) for v in cells]):   # a radio group: the last number is the value
            vals = sorted({t[-1] for t in nums})
            slots = sorted({t[-2] for t in nums}) if k >= 2 else []
            template = _fill(shape, ["{slot}"] * (k - 1) + ["{value}"]) if k >= 2 else _fill(shape, ["{value}"])
            aspects.append({"template": template, "scale": [vals[0], vals[-1]], "slots": slots})
            slot_numbers.update(slots)
        else:
            ints = _ints(cells)
            if not ints or len(ints) < max(1, len([c for c in cells if str(c).strip()]) // 2):
                continue
            slots = sorted({t[-1] for t in nums}) if k >= 1 else []
            template = _fill(shape, ["{slot}"] * k) if k else shape
            aspects.append({"template": template, "scale": [min(ints), max(ints)], "slots": slots})
            slot_numbers.update(slots)
    if not aspects:
        found = ", ".join(answers[:8]) + (", ..." if len(answers) > 8 else "") if answers else "none"
        raise UserError(f"{batch.path}: found no rating answers (Answer.* columns: {found}): expected integer "
                        "answers or radio groups (true/on cells); write the mapping by hand, or name a Python "
                        "function in it (function = \"file.py:func\")")
    slot_list = sorted(slot_numbers)
    items = len(slot_list) or 1
    base = slot_list[0] if slot_list else 0
    inputs = [c for c in batch.columns if c.startswith("Input.")]
    plain_inputs = [c for c in inputs if not _NUM.search(c[6:])]
    id_col = next((c for c in plain_inputs if "id" in c[6:].lower()), plain_inputs[0] if plain_inputs else None)
    slot_inputs = _families([c for c in inputs if _NUM.search(c[6:])])
    id_slot = next((s for s in slot_inputs if "id" in s.lower()), None)
    if id_slot is not None and items > 1:
        item_id = "{" + _fill(id_slot, ["{slot}"] * id_slot.count("{}")) + "}"
    elif id_col is not None:
        item_id = "{" + id_col + "}" + ("-{slot}" if items > 1 else "")
    else:
        item_id = "{HITId}" + ("-{slot}" if items > 1 else "")
    cond = next((c for c in plain_inputs if re.search(r"cond|method|system|model|variant|arm", c, re.I)), None)
    lines = [f"# Mapping suggested by `mturk-eval mapping suggest` for {Path(batch.path).name}: check every line.",
             f"# Answer columns found: {', '.join(answers[:12])}{', ...' if len(answers) > 12 else ''}",
             f"items_per_hit = {items}"]
    if slot_list:
        lines.append(f"slot_base = {base}                      # slots numbered {base}..{base + items - 1} in the column names")
    lines += [f'item_id = "{item_id}"', "", "[system]                           # what names the rated system; constants allowed",
              f'method = "{{{cond}}}"' if cond else 'method = "FILL-ME"                  # e.g. "{Input.condition}"',
              'eval_set = "main"', 'model = "-"']
    for a in aspects:
        name = _aspect_name(a["template"])
        lines += ["", "[[aspects]]", f'name = "{name}"', f"scale = [{a['scale'][0]}, {a['scale'][1]}]"
                  + ("                   # the values seen; widen to the form's scale" if "{value}" not in a["template"] else ""),
                  f'answer = "{a["template"]}"']
    return "\n".join(lines) + "\n"


def _fill(shape: str, parts: list[str]) -> str:
    it = iter(parts)
    return re.sub(r"\{\}", lambda _m: next(it), shape)


def _aspect_name(template: str) -> str:
    base = template[7:] if template.startswith("Answer.") else template
    base = base.split("{")[0].rstrip("_.-") or "score"
    base = re.sub(r"[^A-Za-z0-9_-]", "_", base).strip("_") or "score"
    return base if base[0].isalpha() else f"q_{base}"

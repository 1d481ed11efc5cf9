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
model, aspect, score; optional persona_id, attention_check). Worker, assignment, status, work time and
reward always come from the fixed columns. Without a mapping, the toolkit's own layout is read
(:func:`mturk_eval.analysis.ratings.ratings_from_batch`).

Attention checks and simulated raters, as the toolkit's own layout has them: ``[attention_check]`` says
which slots are checks (``item_id``, a regular expression searched in each item id, and/or ``column``, a
column name with ``{slot}`` whose true/on/1 cell marks the slot, or without it the whole row) and what a
careful rater answers (``[attention_check.expected]``, per aspect an integer, an inclusive
``[low, high]`` or a template such as ``"{Input.gold_{slot}}"``).
Check rows are marked ``attention_check`` and each assignment's result ``attention_passed`` (every
check in it answered as expected), so the report excludes and counts them exactly as its own checks
(:func:`apply_attention_checks`, vectorised over the ratings). ``simulated = "Answer.<column>"`` names the
column whose true/1 cell marks a simulated rater (the toolkit's own is ``Answer.`` + ``SIMULATED_FIELD``).

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
    BatchNotes,
    Ratings,
    ResponseIndex,
    _score_value,
    ratings_from_columns,
)
from mturk_eval.analysis.ratings import ratings_from_batch as own_layout_ratings
from mturk_eval.errors import UserError, where
from mturk_eval.io import read_text

TRUE = {"true", "on", "1", "yes", "checked"}      # compared lower-case: True, TRUE, On ...
FALSE = {"", "false", "off", "0", "no"}
SYSTEM_FIELDS = ("eval_set", "method", "model")
TOP_KEYS = ("items_per_hit", "slot_base", "item_id", "persona_id", "system", "aspects", "function", "missing",
            "simulated", "attention_check")
ASPECT_KEYS = ("name", "scale", "answer", "table2", "table3")
CHECK_KEYS = ("item_id", "column", "expected")
_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass
class AspectMap:
    aspect: Aspect
    answer: str | None  # template of the answer column; None with a mapping function


@dataclass
class AttentionCheck:
    """``[attention_check]``: which slots are checks and the answer each aspect must get there.

    ``expected`` maps an aspect name to ``(low, high)`` (an exact value is ``low == high``) or to a
    template string rendered per slot to the expected integer."""

    item_id: str | None = None       # a regular expression searched in each item id
    column: str | None = None        # a column name ({slot} allowed): a true/on/1 cell marks a check
    expected: dict[str, tuple[int, int] | str] = field(default_factory=dict)


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
    simulated: str | None = None    # the column whose true/1 cell marks a simulated rater
    attention_check: AttentionCheck | None = None

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
        if self.simulated is not None and (not isinstance(self.simulated, str) or _FIELD.search(self.simulated)
                                           or not self.simulated.strip()):
            raise UserError(f"{key}: simulated: expected a column name such as \"Answer.mturk_eval_simulated\" "
                            f"(no template fields), got {self.simulated!r}")
        if self.attention_check is not None:
            _check_attention_spec(self, key)
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
                   aspects=aspects, function=function, missing=data.get("missing", "error"),
                   simulated=data.get("simulated"), attention_check=_attention_table(data, path))


def _attention_table(data: dict[str, Any], path: Path) -> AttentionCheck | None:
    """``[attention_check]`` as read from TOML (keys and shapes; values are checked by the Mapping)."""
    raw = data.get("attention_check")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: attention_check: expected a table ([attention_check]), got {raw!r}")
    for k in raw:
        if k not in CHECK_KEYS:
            raise UserError(f"{path}: attention_check: unknown key {k!r} (expected {', '.join(CHECK_KEYS)})")
    expected = raw.get("expected", {})
    if not isinstance(expected, dict):
        raise UserError(f"{path}: attention_check.expected: expected a table ([attention_check.expected], aspect = "
                        f"answer), got {expected!r}")
    return AttentionCheck(item_id=raw.get("item_id"), column=raw.get("column"), expected=dict(expected))


def _check_attention_spec(m: Mapping, key: str) -> None:
    """``[attention_check]``: a way to find the checks, a valid pattern, and an expected answer on each
    named aspect's scale (templates only where there are slots to render them for)."""
    ac = m.attention_check
    k = f"{key}: attention_check"
    if ac.item_id is None and ac.column is None:
        raise UserError(f"{k}: expected item_id (a pattern of the check items' ids) or column (a cell marking a "
                        "check), got neither")
    if ac.item_id is not None:
        if not isinstance(ac.item_id, str) or not ac.item_id:
            raise UserError(f"{k}.item_id: expected a regular expression such as \"^attn-\", got {ac.item_id!r}")
        try:
            re.compile(ac.item_id)
        except re.error as exc:
            raise UserError(f"{k}.item_id: expected a regular expression, got {ac.item_id!r} ({exc})") from None
    if ac.column is not None:
        if (not isinstance(ac.column, str) or not ac.column.startswith(("Input.", "Answer."))
                or set(_FIELD.findall(ac.column)) - {"slot"}):
            raise UserError(f"{k}.column: expected an Input.* or Answer.* column name, {{slot}} its only field "
                            f"(\"Input.is_check_{{slot}}\"), got {ac.column!r}")
        if m.function is not None and "{slot}" in ac.column:
            raise UserError(f"{k}.column: expected a column without {{slot}} with a mapping function (it marks "
                            f"whole rows), got {ac.column!r}")
    if not ac.expected:
        raise UserError(f"{k}.expected: expected the answer a careful rater gives, per aspect "
                        "([attention_check.expected] coherence = 1), got none")
    scales = {a.name: a for a in m.aspect_specs}
    for name, v in list(ac.expected.items()):
        a = scales.get(name.lower())
        ek = f"{k}.expected.{name}"
        if a is None:
            raise UserError(f"{ek}: expected an aspect of the mapping ({', '.join(scales)}), got an unknown aspect")
        if isinstance(v, str):
            if m.function is not None:
                raise UserError(f"{ek}: expected an integer or [low, high] with a mapping function, got {v!r}")
            if not _FIELD.search(v):
                raise UserError(f"{ek}: expected an integer, [low, high] or a column template such as "
                                f"\"{{Input.gold_{{slot}}}}\", got {v!r}")
            spec: tuple[int, int] | str = v
        else:
            pair = [v, v] if isinstance(v, int) and not isinstance(v, bool) else v
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
                    or not a.low <= pair[0] <= pair[1] <= a.high):
                raise UserError(f"{ek}: expected an integer or [low, high] within {a.name}'s scale {a.low} to "
                                f"{a.high}, got {v!r}")
            spec = (pair[0], pair[1])
        del ac.expected[name]
        ac.expected[a.name] = spec


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


def _truth(v: Any, name: str, path: str, line: int, what: str = "a radio-group option") -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, dict):  # crowd-form checkbox/radio option: {"on": true}
        return any(_truth(x, name, path, line, what) for x in v.values())
    t = "" if v is None else str(v).strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise UserError(f"{where(path, line)}: {name}: expected true/on/1 or an empty cell ({what}), got {v!r}")


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


def _fixed(row: dict[str, str], seen: BatchNotes, simulated: bool = False) -> dict[str, Any]:
    """The columns every rating of one batch row shares (``reward`` parsed once per row)."""
    return {"worker_id": row.get("WorkerId", "").strip(), "assignment_id": row.get("AssignmentId", "").strip(),
            "status": seen.status(row), "work_time_s": row.get("WorkTimeInSeconds", "").strip(),
            "simulated": int(simulated), "attention_check": 0, "attention_passed": None, "reward": seen.reward(row)}


def _check_marker_column(m: Mapping, name: str, key: str, columns: set[str], path: str, task_answers: bool) -> None:
    """A marker column (``simulated``, a row-level ``attention_check.column``) the file must have."""
    if name not in columns and not (task_answers and name.startswith("Answer.")):
        raise UserError(f"{m.path}: {key}: {name!r} names the column {name!r}, which {path} lacks")


def _marked(answers: Any, name: str, path: str, line: int) -> bool:
    """A marker cell: true/on/1 (a JSON true) marks; empty, false, off, 0 do not."""
    return _truth(answers.get(name), name, path, line, "a marker")


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

    seen = BatchNotes()

    def add(item: dict[str, Any], fixed: dict[str, Any], row: dict[str, str], line: int) -> None:
        for c in out:
            out[c].append(item.get(c, fixed.get(c)))
        rewards.append(fixed["reward"])
        lines.append(line)

    ac = m.attention_check
    expected_raw: list[Any] | None = None   # per rating row: the rendered expected-answer template, if any
    skipped_checks: list[tuple[str, str, bool]] = []   # skipped answers a check expects: assignment, item, marked
    if m.simulated is not None:
        _check_marker_column(m, m.simulated, "simulated", columns, path, task_answers)
    row_check = ac.column if ac is not None and ac.column and "{slot}" not in ac.column else None
    if row_check is not None:
        _check_marker_column(m, row_check, "attention_check.column", columns, path, task_answers)

    def markers(row: dict[str, str], line: int, answers: Any = None) -> tuple[bool, bool]:
        """(simulated?, the whole row a check?) of one batch row."""
        if answers is None and (m.simulated is not None or row_check is not None):
            answers = _Answers(row, columns, path, line, task_answers)
        return (m.simulated is not None and _marked(answers, m.simulated, path, line),
                row_check is not None and _marked(answers, row_check, path, line))

    if m.function is not None:
        fn = _load_function(m)
        need = ("item_id", "eval_set", "method", "model", "aspect", "score")
        for n, (row, line) in enumerate(zip(batch.rows, batch.lines), start=1):
            sim, whole = markers(row, line)
            fixed = _fixed(row, seen, sim)
            if whole:
                fixed["attention_check"] = 1
            try:
                produced = list(fn(dict(row)) or [])
            except Exception as exc:  # noqa: BLE001 - the user's code: its message, with the row
                raise UserError(f"{where(path, line)}: mapping function {m.function} raised {type(exc).__name__}: "
                                f"{exc} (batch row {n})") from None
            for item in produced:
                if not isinstance(item, dict) or any(k not in item for k in need):
                    raise UserError(f"{where(path, line)}: mapping function {m.function}: expected dicts with "
                                    f"{', '.join(need)}, got {item!r} (batch row {n})")
                entry = {k: item[k] for k in (*need, "persona_id") if k in item}
                if item.get("attention_check"):
                    entry["attention_check"] = 1
                add(entry, fixed, row, line)
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
        slot_check = ({s: _answer_name(ac.column, s) for s in slots}
                      if ac is not None and ac.column and "{slot}" in ac.column else None)
        if slot_check is not None:
            for s, name in slot_check.items():
                _check_marker_column(m, name, "attention_check.column", columns, path, task_answers)
        exp_t = {(name, s): compile_template(t, f"{key}: attention_check.expected.{name}", columns, path, s)
                 for name, t in (ac.expected.items() if ac is not None else ()) if isinstance(t, str)
                 for s in slots}
        if exp_t:
            expected_raw = []
        check_pattern = re.compile(ac.item_id) if ac is not None and ac.item_id is not None else None
        for row, line in zip(batch.rows, batch.lines):
            answers = _Answers(row, columns, path, line, task_answers)
            sim, whole = markers(row, line, answers)
            fixed = _fixed(row, seen, sim)
            for s in slots:
                t = id_t[s]
                if t.columns and not any(row.get(c, "").strip() for c in t.columns):
                    if len(slots) > 1:
                        seen.empty_slots += 1
                        continue  # a HIT with fewer items than slots leaves the rest empty
                    raise UserError(f"{where(path, line)}: {t.columns[0]}: expected a value for item_id, got an "
                                    "empty cell")
                iid = t.render(row)
                meta: dict[str, Any] = {}
                known = responses.items.get(iid, {}) if responses is not None else {}
                meta.update(known)
                for f, ts in sys_t.items():
                    meta[f] = ts[s].render(row)
                    if known:
                        seen.compare(iid, f, meta[f], known)
                if persona_t is not None:
                    meta["persona_id"] = persona_t[s].render(row)
                    if known:
                        seen.compare(iid, "persona_id", meta["persona_id"], known)
                is_check = (whole or (slot_check is not None and _marked(answers, slot_check[s], path, line))
                            or (check_pattern is not None and check_pattern.search(iid) is not None))
                for f in SYSTEM_FIELDS:
                    if not meta.get(f):
                        if is_check:  # a check item is no system's output: it needs no system (never tabled)
                            meta[f] = "-"
                            continue
                        why = ("the responses file has no such item" if responses is not None
                               else "no --responses file was given")
                        raise UserError(f"{where(path, line)}: system.{f}: expected the item's {f} (from the mapping "
                                        f"{m.path} or the responses file), got none for item {iid!r} ({why})")
                for i, am in enumerate(m.aspects):
                    score = _score_of(am.aspect, am.answer, s, answers, path, line, outside[(i, s)])
                    if score is None:
                        if m.missing == "skip":
                            skipped += 1
                            if ac is not None and am.aspect.name in ac.expected:
                                skipped_checks.append((fixed["assignment_id"], iid, is_check))
                            continue
                        name = _answer_name(am.answer, s, am.aspect.low if "{value}" in am.answer else None)
                        raise UserError(f"{where(path, line)}: {name}: expected a score from {am.aspect.low} to "
                                        f"{am.aspect.high} ({am.aspect.name}), got an empty answer"
                                        + (" (no true cell in the radio group)" if "{value}" in am.answer else ""))
                    add({"item_id": iid, "eval_set": meta["eval_set"], "method": meta["method"],
                         "model": meta["model"], "persona_id": meta.get("persona_id"), "aspect": am.aspect.name,
                         "score": score, "attention_check": int(is_check)}, fixed, row, line)
                    if expected_raw is not None:
                        t = exp_t.get((am.aspect.name, s))
                        expected_raw.append(t.render(row) if t is not None else None)
    if not lines:
        raise UserError(f"{path}: expected at least one rating from the mapping {m.path}, got none")
    r = ratings_from_columns(out, path, lines, reward=rewards, aspects=m.aspect_specs)
    r.notes.extend(seen.notes(batch))
    if skipped:
        r.notes.append(f"{skipped} missing answer(s) (an empty cell, or no true cell in a radio group) were "
                       f"skipped, as the mapping's missing = \"skip\" asks.")
    if ac is not None:
        apply_attention_checks(r, ac, expected_raw, skipped_checks)
    return r


def apply_attention_checks(r: Ratings, ac: AttentionCheck, expected_raw: list[Any] | None = None,
                           skipped: list[tuple[str, str, bool]] = ()) -> None:
    """Mark the check rows of ``r`` (``ac.item_id`` matching the item id, or already marked by a column)
    and give every row of an assignment holding a check its result, in place and vectorised: a check item
    passes when each aspect ``ac.expected`` names was answered within its expected range; an assignment
    passes when all its checks pass (the toolkit's own rule). ``skipped``: (assignment id, item id, marked
    as a check) of answers a check expects that ``missing = "skip"`` left out: their assignments fail."""
    import numpy as np
    import pandas as pd

    check = r.attention_check.copy()
    pattern = re.compile(ac.item_id) if ac.item_id is not None else None
    if pattern is not None:  # once per distinct item id
        check |= np.fromiter(map(bool, map(pattern.search, r.item_ids)), dtype=bool, count=len(r.item_ids))[r.item]
    n = len(r)
    names = r.aspect_names
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    for name, spec in ac.expected.items():
        if isinstance(spec, tuple):
            on = r.aspect == names.index(name)
            lo[on], hi[on] = spec
    if expected_raw is not None:  # templates: the rendered value on check rows must be an integer on the scale
        raw = pd.Series(expected_raw, dtype=object)
        has = raw.notna().to_numpy() & check
        val = pd.to_numeric(raw.where(has), errors="coerce").to_numpy(dtype=np.float64)
        lows = np.array([a.low for a in r.aspects])[r.aspect]
        highs = np.array([a.high for a in r.aspects])[r.aspect]
        bad = has & ~((val == np.round(val)) & (val >= lows) & (val <= highs))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            a = r.aspects[int(r.aspect[j])]
            raise UserError(f"{where(r.source, int(r.lines[j]))}: attention_check.expected.{a.name}: expected an "
                            f"integer from {a.low} to {a.high} ({a.name}'s scale), got {expected_raw[j]!r}")
        lo[has], hi[has] = val[has], val[has]
    graded = check & ~np.isnan(lo)
    ok = (r.score >= lo) & (r.score <= hi)
    # Per (assignment, item) check unit: every expected aspect answered, each as expected.
    unit = r.assignment.astype(np.int64) * len(r.item_ids) + r.item
    codes, uniq = pd.factorize(unit[check])
    n_exp = len(ac.expected)
    answered = np.bincount(codes[graded[check]], minlength=len(uniq))
    wrong = np.bincount(codes[(graded & ~ok)[check]], minlength=len(uniq))
    unit_pass = (answered >= n_exp) & (wrong == 0)   # >=: an item twice in one HIT is answered twice
    passed = np.full(len(r.assignment_ids), 2, dtype=np.int8)      # 2: no check in the assignment
    np.minimum.at(passed, (uniq // len(r.item_ids)).astype(np.int64), unit_pass.astype(np.int8))
    if skipped:
        code = {a: i for i, a in enumerate(r.assignment_ids)}
        for aid, iid, marked in skipped:
            if (marked or (pattern is not None and pattern.search(iid))) and aid in code:
                passed[code[aid]] = 0
    ap = passed[r.assignment]
    r.attention_check = check
    r.attention_passed = np.where(ap == 2, np.int8(-1), ap).astype(np.int8)


def ratings_from_batch(batch: BatchCSV, responses: ResponseIndex | None = None,
                       mapping: Mapping | None = None) -> Ratings:
    """A batch results file's ratings: through ``mapping``, or the toolkit's own layout without one."""
    if mapping is None:
        return own_layout_ratings(batch, responses)
    return ratings_from_mapping(batch, mapping, responses)


# --------------------------------------------------------------------------------------------------
# Suggesting a mapping


_NUM = re.compile(r"\d+")
_SIMULATED = re.compile(r"simulat|is_?bot|synthetic", re.I)
_CHECK_FLAG = re.compile(r"attention|attn|catch|trap|is_?check|check_?item", re.I)
_GOLD = re.compile(r"gold|expected|correct", re.I)
_CHECK_ID = re.compile(r"^(attn|attention|check|catch|trap|gold)[-_.]?", re.I)


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
    names = [c for c in answers if not _SIMULATED.search(c) and not _CHECK_FLAG.search(c)]
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
                if _SIMULATED.search(k) or _CHECK_FLAG.search(k):
                    if n not in answers:
                        answers.append(n)
                    continue
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
    cond = next((c for c in plain_inputs if re.search(r"cond|method|system|model|variant|arm", c, re.I)
                 and not _CHECK_FLAG.search(c)), None)
    lines = [f"# Mapping suggested by `mturk-eval mapping suggest` for {Path(batch.path).name}: check every line.",
             f"# Answer columns found: {', '.join(answers[:12])}{', ...' if len(answers) > 12 else ''}",
             f"items_per_hit = {items}"]
    if slot_list:
        lines.append(f"slot_base = {base}                      # slots numbered {base}..{base + items - 1} in the column names")
    lines += [f'item_id = "{item_id}"', "", "[system]                           # what names the rated system; constants allowed",
              f'method = "{{{cond}}}"' if cond else 'method = "FILL-ME"                  # e.g. "{Input.condition}"',
              'eval_set = "main"', 'model = "-"']
    simulated = next((c for c in answers if _SIMULATED.search(c)), None)
    if simulated is not None:
        lines.insert(3, f'simulated = "{simulated}"   # its true/1 cells mark simulated raters')
    for a in aspects:
        name = _aspect_name(a["template"])
        lines += ["", "[[aspects]]", f'name = "{name}"', f"scale = [{a['scale'][0]}, {a['scale'][1]}]"
                  + ("                   # the values seen; widen to the form's scale" if "{value}" not in a["template"] else ""),
                  f'answer = "{a["template"]}"']
    lines += _suggest_checks(batch, inputs, answers, items > 1, id_slot, id_col, _aspect_name(aspects[0]["template"]))
    return "\n".join(lines) + "\n"


def _suggest_checks(batch: BatchCSV, inputs: list[str], answers: list[str], slotted: bool, id_slot: str | None,
                    id_col: str | None, aspect: str) -> list[str]:
    """An ``[attention_check]`` section for the columns and ids that look like attention checks: a flag
    column (``Input.is_check_{slot}``), check-like item ids (``attn-...``), a gold-answer column. Written
    ready to use when a gold column gives the expected answer, commented out (to fill in) otherwise."""
    def slot_form(cols: list[str]) -> str | None:
        fam = _families(cols)
        shape = next((f for f in fam if f.count("{}") >= 1), None) if slotted else None
        if shape is not None:
            return _fill(shape, ["{slot}"] * shape.count("{}"))
        return next((c for c in cols if not _NUM.search(c[6:])), None) if cols else None

    flag_cols = [c for c in inputs if _CHECK_FLAG.search(c) and not _GOLD.search(c)]
    gold_cols = [c for c in inputs if _GOLD.search(c)]
    questions = [c for c in answers if _CHECK_FLAG.search(c)]
    note = ([f"# {', '.join(questions[:3])}: an attention question outside the rated items, not read (a mapping "
             "function can grade it)."] if questions else [])
    column = slot_form(flag_cols)
    gold = slot_form(gold_cols)
    id_cols = ([c for c in inputs if id_slot is not None and _NUM.sub("{}", c) == id_slot]
               or ([id_col] if id_col else []))
    prefixes = sorted({m.group(0) for row in batch.rows[:500] for c in id_cols
                       for m in [_CHECK_ID.match(row.get(c, "").strip())] if m})
    if column is None and not prefixes:
        return [""] + note if note else []
    body = ["[attention_check]"]
    if column is not None:
        body.append(f'column = "{column}"')
    if prefixes:
        alts = [re.escape(p).replace("\\-", "-") for p in prefixes]
        # A TOML literal string: no escapes.
        body.append(f"item_id = '^{alts[0]}'" if len(alts) == 1 else f"item_id = '^(?:{'|'.join(alts)})'")
    body.append("[attention_check.expected]")
    body.append(f'{aspect} = "{{{gold}}}"' if gold else f"{aspect} = 1")
    seen = ", ".join(x for x in (column, f"item ids starting {', '.join(prefixes)}" if prefixes else None) if x)
    if gold:
        return ["", f"# Attention checks ({seen}); the expected answer from {gold}: check the aspect.", *note, *body]
    return ["", f"# Attention checks ({seen}): say what a careful rater answers on them, then uncomment.", *note,
            *[f"# {x}" for x in body]]


def _fill(shape: str, parts: list[str]) -> str:
    it = iter(parts)
    return re.sub(r"\{\}", lambda _m: next(it), shape)


def _aspect_name(template: str) -> str:
    base = template[7:] if template.startswith("Answer.") else template
    base = base.split("{")[0].rstrip("_.-") or "score"
    base = re.sub(r"[^A-Za-z0-9_-]", "_", base).strip("_") or "score"
    return base if base[0].isalpha() else f"q_{base}"

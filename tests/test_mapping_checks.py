"""Attention checks and simulated raters in other teams' batch files (``--mapping``): check slots found by an
item-id pattern or a marker column, the expected answer a constant, a range or a gold column; the report
excludes and counts them exactly as it does the toolkit's own checks (the same analysis as the long format
with ``attention_check`` / ``attention_passed``); ``mapping suggest`` proposes them; bad specs are one line."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mturk_eval.analysis.batch_csv import BatchCSV, read_batch_csv, write_batch_csv
from mturk_eval.analysis.core import analyze
from mturk_eval.analysis.mapping import load_mapping, ratings_from_batch, suggest_mapping
from mturk_eval.analysis.ratings import ResponseIndex, ratings_from_records
from mturk_eval.cli import main
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from test_bad_inputs import fails_cleanly

BASE = '''items_per_hit = 3
slot_base = 1
item_id = "{Input.id_{slot}}"
[system]
method = "{Input.cond}"
eval_set = "e"
model = "t"
[[aspects]]
name = "quality"
scale = [1, 5]
answer = "Answer.q_{slot}"
'''
BY_ID = BASE + '''
[attention_check]
item_id = "^attn-"
[attention_check.expected]
quality = 1
'''

# Per HIT: two rated responses and, in slot 3, a check whose right answer is 1 ("attn-" ids) or none.
# W0 answers every check right, W1 fails one of two (50% < 80%: excluded), W2 meets no check.
ANSWERS = {  # (hit, worker) -> the three answers
    (0, "W0"): [4, 5, 1], (0, "W1"): [2, 3, 1], (1, "W0"): [3, 4, 1], (1, "W1"): [5, 5, 4],
    (2, "W2"): [3, 3, 2], (2, "W0"): [4, 4, 2],
}


def check_rows(gold=False, marker=False):
    rows = []
    for (h, w), answers in ANSWERS.items():
        row = {"HITId": f"H{h}", "AssignmentId": f"A{h}{w}", "WorkerId": w, "AssignmentStatus": "Approved",
               "WorkTimeInSeconds": "60", "Input.cond": ["base", "ours", "base"][h],
               "Input.id_1": f"r{h}a", "Input.id_2": f"r{h}b", "Input.id_3": f"attn-{h}" if h < 2 else f"r{h}c",
               "Answer.mturk_eval_simulated": "1" if w == "W2" else ""}
        for s, v in enumerate(answers, start=1):
            row[f"Answer.q_{s}"] = str(v)
            if marker:
                row[f"Input.is_check_{s}"] = "true" if s == 3 and h < 2 else "false"
            if gold:
                row[f"Input.gold_{s}"] = "1" if s == 3 and h < 2 else ""
        rows.append(row)
    return rows


def long_format_equivalent():
    """The same ratings in the long format, with the toolkit's own attention-check columns."""
    passed = {"A0W0": 1, "A0W1": 1, "A1W0": 1, "A1W1": 0}
    out = []
    for (h, w), answers in ANSWERS.items():
        aid = f"A{h}{w}"
        for s, v in enumerate(answers, start=1):
            iid = f"attn-{h}" if s == 3 and h < 2 else f"r{h}{'abc'[s - 1]}"
            out.append({"item_id": iid, "eval_set": "e", "method": ["base", "ours", "base"][h], "model": "t",
                        "worker_id": w, "assignment_id": aid, "aspect": "quality", "score": v,
                        "attention_check": int(iid.startswith("attn-")), "attention_passed": passed.get(aid),
                        "simulated": int(w == "W2"), "work_time_s": 60, "status": "Approved"})
    return out


def cfg():
    return ExperimentConfig(name="x", models=[])


def test_item_id_pattern_checks_are_excluded_and_graded_as_the_toolkits_own(tmp_path):
    write_batch_csv(tmp_path / "b.csv", check_rows())
    (tmp_path / "m.toml").write_text(BY_ID, encoding="utf-8")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "m.toml"))
    checks = {r.item_ids[i] for i in r.item[r.attention_check]}
    assert checks == {"attn-0", "attn-1"}
    by_assignment = {r.assignment_ids[a]: int(p) for a, p in zip(r.assignment, r.attention_passed)}
    assert by_assignment == {"A0W0": 1, "A0W1": 1, "A1W0": 1, "A1W1": 0, "A2W2": -1, "A2W0": -1}
    mapped = analyze(r, cfg(), seed=1)
    own = analyze(ratings_from_records(long_format_equivalent(), "long", aspects=r.aspects), cfg(), seed=1)
    assert mapped.counts == own.counts
    assert mapped.counts["attention_check_rows"] == 4 and mapped.counts["failed_check_assignments"] == 1
    assert [e["worker_id"] for e in mapped.workers["excluded_workers"]] == ["W1"]
    assert mapped.table2 == own.table2 and mapped.table3 == own.table3
    # No simulated marker in the mapping: nothing is flagged, unlike the long-format copy.
    assert mapped.simulated_rows == 0 and own.simulated_rows == 3


def test_marker_column_gold_answers_and_simulated_raters_through_the_cli(tmp_path):
    write_batch_csv(tmp_path / "b.csv", check_rows(gold=True, marker=True))
    (tmp_path / "m.toml").write_text(BASE.replace(
        "items_per_hit = 3\n", 'items_per_hit = 3\nsimulated = "Answer.mturk_eval_simulated"\n')
        + '\n[attention_check]\ncolumn = "Input.is_check_{slot}"\n[attention_check.expected]\n'
          'quality = "{Input.gold_{slot}}"\n', encoding="utf-8")
    res = CliRunner().invoke(main, ["report", "--batch-csv", str(tmp_path / "b.csv"), "--mapping",
                                    str(tmp_path / "m.toml"), "--out", str(tmp_path / "rep"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep/report.json").read_text())
    aspects = load_mapping(tmp_path / "m.toml").aspect_specs
    own = analyze(ratings_from_records(long_format_equivalent(), "long", aspects=aspects), cfg(),
                  seed=rep["settings"]["seed"])
    assert rep["counts"] == own.counts
    assert rep["simulated_rows"] == 3 == own.simulated_rows
    assert "SIMULATED RATINGS" in (tmp_path / "rep/report.md").read_text()
    assert rep["workers"]["attention_checks"] == 4 and rep["workers"]["attention_passed"] == 3
    assert [t["aspects"]["quality"]["n"] for t in rep["table2"]] == [t["aspects"]["quality"]["n"] for t in own.table2]


def test_check_items_need_no_system_from_the_responses_file(tmp_path):
    rows = check_rows()
    write_batch_csv(tmp_path / "b.csv", rows)
    (tmp_path / "m.toml").write_text(BY_ID.replace('method = "{Input.cond}"\n', ""), encoding="utf-8")
    responses = ResponseIndex("responses.jsonl", {f"r{h}{x}": {"eval_set": "e", "method": ["base", "ours", "base"][h],
                                                               "model": "t", "persona_id": None, "pair_id": None}
                                                  for h in range(3) for x in "abc"})
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), responses, load_mapping(tmp_path / "m.toml"))
    assert int(r.attention_check.sum()) == 4 and {r.methods[c] for c in r.item_method} == {"base", "ours", "-"}
    an = analyze(r, cfg(), seed=1)
    assert {s.method for s in an.systems} == {"base", "ours"}
    # An ordinary item the responses file lacks is still an error.
    responses.items.pop("r0a")
    with pytest.raises(UserError, match="system.method: expected the item's method"):
        ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), responses, load_mapping(tmp_path / "m.toml"))


def test_a_range_and_a_skipped_check_answer(tmp_path):
    rows = check_rows()
    rows[0]["Answer.q_3"] = ""      # W0 skips the check on H0: failed, not passed
    rows[3]["Answer.q_3"] = "2"     # W1 answers 2 on H1: within [1, 2]
    write_batch_csv(tmp_path / "b.csv", rows)
    (tmp_path / "m.toml").write_text('missing = "skip"\n' + BY_ID.replace("quality = 1", "quality = [1, 2]"),
                                     encoding="utf-8")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "m.toml"))
    by_assignment = {r.assignment_ids[a]: int(p) for a, p in zip(r.assignment, r.attention_passed)}
    assert by_assignment["A0W0"] == 0 and by_assignment["A1W1"] == 1 and by_assignment["A1W0"] == 1
    assert "attn-0" not in {r.item_ids[i] for i in r.item[r.assignment == r.assignment_ids.index("A0W0")]}


def test_a_mapping_function_marks_checks_and_whole_rows(tmp_path):
    rows = check_rows()
    for row in rows:
        row["Input.practice"] = "yes" if row["HITId"] == "H2" else "no"   # H2 is a practice HIT: all checks
    write_batch_csv(tmp_path / "b.csv", rows)
    (tmp_path / "fn.py").write_text(
        "def ratings(row):\n"
        "    for s in (1, 2, 3):\n"
        "        iid = row[f'Input.id_{s}']\n"
        "        yield {'item_id': iid, 'eval_set': 'e', 'method': row['Input.cond'], 'model': 't',\n"
        "               'aspect': 'quality', 'score': int(row[f'Answer.q_{s}']), 'attention_check': iid.startswith('attn')}\n",
        encoding="utf-8")
    (tmp_path / "m.toml").write_text('function = "fn.py:ratings"\n[[aspects]]\nname = "quality"\n'
                                     '[attention_check]\ncolumn = "Input.practice"\n[attention_check.expected]\n'
                                     'quality = [1, 3]\n', encoding="utf-8")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "m.toml"))
    by_assignment = {r.assignment_ids[a]: int(p) for a, p in zip(r.assignment, r.attention_passed)}
    # H2's whole rows are checks: W2 (3, 3, 2) passes [1, 3], W0 (4, 4, 2) fails.
    assert by_assignment == {"A0W0": 1, "A0W1": 1, "A1W0": 1, "A1W1": 0, "A2W2": 1, "A2W0": 0}
    assert int(r.attention_check.sum()) == 4 + 6


def test_suggest_proposes_checks_and_the_simulated_marker(tmp_path):
    write_batch_csv(tmp_path / "b.csv", check_rows(gold=True, marker=True))
    text = suggest_mapping(read_batch_csv(tmp_path / "b.csv"))
    assert 'simulated = "Answer.mturk_eval_simulated"' in text
    assert 'column = "Input.is_check_{slot}"' in text and "item_id = '^attn-'" in text
    assert 'quality = "{Input.gold_{slot}}"' not in text  # the aspect is named from its answer column
    assert 'q = "{Input.gold_{slot}}"' in text
    assert 'name = "mturk_eval_simulated"' not in text and 'method = "{Input.cond}"' in text
    (tmp_path / "s.toml").write_text(text, encoding="utf-8")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "s.toml"))
    assert int(r.simulated.sum()) == 3 and int(r.attention_check.sum()) == 4
    assert sorted({int(p) for p in r.attention_passed}) == [-1, 0, 1]
    # Without a gold column the section is written commented out, to be filled in.
    plain = suggest_mapping(read_batch_csv_rows(tmp_path, check_rows()))
    assert "# [attention_check]" in plain and "# item_id = '^attn-'" in plain and "\n[attention_check]" not in plain
    question = suggest_mapping(BatchCSV("b.csv", ["HITId", "Input.item", "Answer.q1", "Answer.attention"],
                                        [{"HITId": "H", "Input.item": "x", "Answer.q1": "3", "Answer.attention": "2"}],
                                        [2]))
    assert "# Answer.attention: an attention question outside the rated items, not read" in question
    assert "[attention_check]" not in question and 'name = "attention"' not in question
    nothing = suggest_mapping(BatchCSV("b.csv", ["HITId", "Input.item", "Answer.q1"],
                                       [{"HITId": "H", "Input.item": "x", "Answer.q1": "3"}], [2]))
    assert "attention_check" not in nothing and "simulated" not in nothing


def read_batch_csv_rows(tmp_path, rows):
    write_batch_csv(tmp_path / "plain.csv", rows)
    return read_batch_csv(tmp_path / "plain.csv")


BAD = {
    "no_way_to_find": ("[attention_check]\n[attention_check.expected]\nquality = 1\n",
                       "m.toml: attention_check: expected item_id (a pattern of the check items' ids) or column"),
    "bad_pattern": ('[attention_check]\nitem_id = "attn-("\n[attention_check.expected]\nquality = 1\n',
                    "m.toml: attention_check.item_id: expected a regular expression, got 'attn-('"),
    "no_expected": ('[attention_check]\nitem_id = "^attn-"\n',
                    "m.toml: attention_check.expected: expected the answer a careful rater gives"),
    "unknown_aspect": ('[attention_check]\nitem_id = "^attn-"\n[attention_check.expected]\nfluency = 1\n',
                       "m.toml: attention_check.expected.fluency: expected an aspect of the mapping (quality), got an "
                       "unknown aspect"),
    "outside_scale": ('[attention_check]\nitem_id = "^attn-"\n[attention_check.expected]\nquality = [0, 2]\n',
                      "m.toml: attention_check.expected.quality: expected an integer or [low, high] within quality's "
                      "scale 1 to 5, got [0, 2]"),
    "unknown_key": ('[attention_check]\nitem = "^attn-"\n',
                    "m.toml: attention_check: unknown key 'item' (expected item_id, column, expected)"),
    "missing_marker": ('[attention_check]\ncolumn = "Input.check_{slot}"\n[attention_check.expected]\nquality = 1\n',
                       "m.toml: attention_check.column: 'Input.check_1' names the column 'Input.check_1', which"),
    "missing_simulated": ('simulated = "Answer.is_bot"\n', "m.toml: simulated: 'Answer.is_bot' names the column"),
    "bad_gold": ('[attention_check]\nitem_id = "^attn-"\n[attention_check.expected]\nquality = "{Input.cond}"\n',
                 "b.csv:2: attention_check.expected.quality: expected an integer from 1 to 5 (quality's scale), "
                 "got 'base'"),
    "bad_marker_cell": ('simulated = "Answer.mturk_eval_simulated"\n', "b.csv:3: Answer.mturk_eval_simulated: "
                        "expected true/on/1 or an empty cell (a marker), got 'maybe'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_check_specs(tmp_path, case):
    extra, needle = BAD[case]
    rows = check_rows()
    if case == "bad_marker_cell":
        rows[1]["Answer.mturk_eval_simulated"] = "maybe"
    write_batch_csv(tmp_path / "b.csv", rows)
    # Top-level keys before the first table; tables after the aspects.
    text = (extra + BASE) if not extra.startswith("[") else (BASE + "\n" + extra)
    (tmp_path / "m.toml").write_text(text, encoding="utf-8")
    fails_cleanly(["report", "--batch-csv", str(tmp_path / "b.csv"), "--mapping", str(tmp_path / "m.toml"),
                   "--out", str(tmp_path / "rep"), "-q"], tmp_path, needle)


def test_crowd_form_task_answers_carry_the_simulated_mark_and_the_check_answer(tmp_path):
    rows = []
    for w, (score, check, sim) in enumerate([(4, 1, "1"), (2, 3, ""), (5, 1, True)]):
        answers = {"q_1": str(score), "q_2": str(check), "mturk_eval_simulated": sim}
        rows.append({"HITId": "H", "AssignmentId": f"A{w}", "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
                     "Input.cond": "base", "Input.id_1": "r1", "Input.id_2": "attn-1",
                     "Answer.taskAnswers": json.dumps([answers])})
    write_batch_csv(tmp_path / "b.csv", rows)
    text = suggest_mapping(read_batch_csv(tmp_path / "b.csv"))
    assert 'simulated = "Answer.mturk_eval_simulated"' in text and 'name = "mturk_eval_simulated"' not in text
    (tmp_path / "m.toml").write_text('simulated = "Answer.mturk_eval_simulated"\n'
                                     + BY_ID.replace("items_per_hit = 3", "items_per_hit = 2"), encoding="utf-8")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "m.toml"))
    assert {r.worker_ids[w]: bool(s) for w, s in zip(r.worker, r.simulated)} == {"W0": True, "W1": False, "W2": True}
    assert {r.assignment_ids[a]: int(p) for a, p in zip(r.assignment, r.attention_passed)} == {
        "A0": 1, "A1": 0, "A2": 1}

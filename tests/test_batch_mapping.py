"""Other teams' MTurk batch files: `--mapping` TOML (templates, radio groups, plain values, taskAnswers,
a Python function), `mapping suggest`, short rows as the website writes them, and each bad input as
one line, exit 2, nothing written."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from mturk_eval.analysis.batch_csv import read_batch_csv, write_batch_csv
from mturk_eval.analysis.mapping import load_mapping, ratings_from_batch, suggest_mapping
from mturk_eval.cli import main
from mturk_eval.errors import UserError
from test_bad_inputs import fails_cleanly

ISSUE_MAPPING = '''items_per_hit = 10
slot_base = 1                                   # slots numbered 1..10 in the column names
item_id = "{Input.query_id}-{slot}"             # template over columns and the slot number
[system]                                        # what names the rated system; constants allowed
method = "{Input.experimental_cond}"
eval_set = "pilot"
model = "-"
[[aspects]]
name = "coherence"
scale = [1, 4]
answer = "Answer.coherence_{slot}.option_{value}"   # the cell that is true/on gives the value
'''
SPELLINGS = ["true", "on", "True", "1"]


def radio_rows(n_hits=4, workers=4, seed=0):
    """Ten responses per HIT rated 1-4 through flattened radio groups; each worker spells true
    differently. Returns the rows and the truth {(item_id, worker): score}."""
    rng = random.Random(seed)
    rows, truth = [], {}
    for h in range(n_hits):
        for w in range(workers):
            row = {"HITId": f"H{h}", "AssignmentId": f"A{h}-{w}", "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
                   "Reward": "$0.20", "WorkTimeInSeconds": "120", "Input.query_id": f"q{h}",
                   "Input.experimental_cond": ["baseline", "ours"][h % 2]}
            for s in range(1, 11):
                v = rng.randint(1, 4)
                truth[(f"q{h}-{s}", f"W{w}")] = v
                for o in range(1, 5):
                    row[f"Answer.coherence_{s}.option_{o}"] = SPELLINGS[w % 4] if o == v else ""
            rows.append(row)
    return rows, truth


def as_website(path: Path, rows) -> None:
    """Write rows as the requester website does: header ends Approve,Reject, data rows leave them off."""
    write_batch_csv(path, rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\r\n".join([lines[0]] + [line[:-2] for line in lines[1:]]) + "\r\n", encoding="utf-8")


@pytest.fixture
def issue_files(tmp_path):
    rows, truth = radio_rows()
    as_website(tmp_path / "b.csv", rows)
    (tmp_path / "m.toml").write_text(ISSUE_MAPPING, encoding="utf-8")
    return tmp_path, truth


def got(r):
    return {(r.item_ids[i], r.worker_ids[w]): int(s) for i, w, s in zip(r.item, r.worker, r.score)}


def test_issue_example_radio_groups_short_rows_and_spellings(issue_files):
    tmp, truth = issue_files
    header_cells = next(csv.reader(open(tmp / "b.csv", newline="", encoding="utf-8")))
    row_cells = list(csv.reader(open(tmp / "b.csv", newline="", encoding="utf-8")))[1]
    assert len(row_cells) == len(header_cells) - 2  # the website's short rows
    r = ratings_from_batch(read_batch_csv(tmp / "b.csv"), None, load_mapping(tmp / "m.toml"))
    assert got(r) == truth
    assert [a.name for a in r.aspects] == ["coherence"] and (r.aspects[0].low, r.aspects[0].high) == (1, 4)
    assert set(r.methods) == {"baseline", "ours"} and r.eval_sets == ["pilot"] and r.models == ["-"]
    res = CliRunner().invoke(main, ["report", "--batch-csv", str(tmp / "b.csv"), "--mapping", str(tmp / "m.toml"),
                                    "--out", str(tmp / "rep"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp / "rep" / "report.json").read_text())
    assert list(rep["table2"][0]["aspects"]) == ["coherence"]
    md = (tmp / "rep" / "report.md").read_text()
    assert "| Coherence" in md and "on a 1-4 scale" in md
    assert not (tmp / "rep" / "tables" / "table3.md").exists()  # no aspect asked for Table 3
    # ratings.parquet keeps the scale: reading it back gives the same Table 2
    res = CliRunner().invoke(main, ["report", "--ratings", str(tmp / "rep" / "ratings.parquet"), "--out",
                                    str(tmp / "rep2"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert (tmp / "rep2/tables/table2.csv").read_text() == (tmp / "rep/tables/table2.csv").read_text()


def test_tests_intervals_and_mixed_model_use_the_mappings_aspects(issue_files):
    """The statistics (tests, Holm, intervals, mixed model) name and scale the mapping's own aspects."""
    from mturk_eval.analysis import analysis, comparisons, load_ratings, mixed_models
    from mturk_eval.analysis.frames import frame_csv

    tmp, _ = issue_files
    res = CliRunner().invoke(main, ["report", "--batch-csv", str(tmp / "b.csv"), "--mapping", str(tmp / "m.toml"),
                                    "--out", str(tmp / "rep"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp / "rep" / "report.json").read_text())
    assert [t["aspect"] for t in rep["tests"]] == ["coherence"]
    assert rep["tests"][0]["design"].startswith("unpaired") and rep["tests"][0]["undefined"] == ""
    assert [m["aspect"] for m in rep["mixed_models"]] == ["coherence"]
    an = analysis(load_ratings(tmp / "b.csv", mapping=tmp / "m.toml"), seed=rep["settings"]["seed"])
    lo, hi = an.table2[0]["aspects"]["coherence"]["ci_low"], an.table2[0]["aspects"]["coherence"]["ci_high"]
    assert 1 <= lo < an.table2[0]["aspects"]["coherence"]["mean"] < hi <= 4
    assert an.tests[0]["aspect"] == "coherence" and an.mixed_models[0]["aspect"] == "coherence"
    assert (tmp / "rep" / "mixed_model.csv").read_text() == frame_csv(mixed_models(an))
    assert (tmp / "rep" / "tests.csv").read_text() == frame_csv(comparisons(an))


def test_plain_value_columns_and_table3_bins_from_the_scale(tmp_path):
    rows = []
    for w in range(3):
        rows.append({"HITId": "H", "AssignmentId": f"A{w}", "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
                     "Input.id": "x", "Answer.q0": str(w + 1), "Answer.q1": str(7 - w), "Answer.fun0": "2",
                     "Answer.fun1": "7"})
    write_batch_csv(tmp_path / "b.csv", rows)
    (tmp_path / "m.toml").write_text('items_per_hit = 2\nitem_id = "{Input.id}.{slot}"\n'
                                     '[system]\nmethod = "m"\neval_set = "e"\nmodel = "t"\n'
                                     '[[aspects]]\nname = "quality"\nscale = [1, 7]\nanswer = "Answer.q{slot}"\n'
                                     '[[aspects]]\nname = "humour"\nscale = [1, 7]\nanswer = "Answer.fun{slot}"\n'
                                     'table2 = false\ntable3 = true\n', encoding="utf-8")
    res = CliRunner().invoke(main, ["report", "--batch-csv", str(tmp_path / "b.csv"), "--mapping",
                                    str(tmp_path / "m.toml"), "--out", str(tmp_path / "rep"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    t3 = list(csv.reader(open(tmp_path / "rep/tables/table3.csv")))
    # humour means: item x.0 = 2, x.1 = 7 -> bins [2,3) and [6,7]
    assert t3[0] == ["eval_set", "method", "model", "[1,2)", "[2,3)", "[3,4)", "[4,5)", "[5,6)", "[6,7]", "n"]
    assert t3[1] == ["e", "m", "t", "0", "1", "0", "0", "0", "1", "2"]
    t2 = list(csv.DictReader(open(tmp_path / "rep/tables/table2.csv")))
    assert float(t2[0]["quality_mean"]) == pytest.approx(4.0) and t2[0]["quality_n"] == "6"
    assert "Humour (Table 3)" in (tmp_path / "rep/report.md").read_text()


@pytest.mark.parametrize("form", ["plain", "options", "on"])
def test_crowd_form_task_answers(tmp_path, form):
    rows = []
    for w, score in enumerate([2, 3, 4]):
        if form == "plain":
            obj = {"rate": str(score)}
        elif form == "options":
            obj = {"rate": {str(v): v == score for v in range(1, 6)}}
        else:
            obj = {f"rate.option_{v}": {"on": v == score} for v in range(1, 6)}
        rows.append({"HITId": "H", "AssignmentId": f"A{w}", "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
                     "Input.id": "x", "Answer.taskAnswers": json.dumps([obj])})
    write_batch_csv(tmp_path / "b.csv", rows)
    answer = "Answer.rate.option_{value}" if form == "on" else "Answer.rate"
    (tmp_path / "m.toml").write_text(f'item_id = "{{Input.id}}"\n[system]\nmethod = "m"\neval_set = "e"\nmodel = "t"\n'
                                     f'[[aspects]]\nname = "overall"\nanswer = "{answer}"\n', encoding="utf-8")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "m.toml"))
    assert sorted(r.score.tolist()) == [2, 3, 4]


FUNCTION = '''
def ratings(row):
    if row["Input.cond"] == "boom":
        raise ValueError("cannot read condition boom")
    for k in (1, 2):
        yield {"item_id": row["Input.id"] + f"-{k}", "eval_set": "e", "method": row["Input.cond"],
               "model": "t", "aspect": "fluency", "score": int(row[f"Answer.s{k}"])}
'''


def test_mapping_function(tmp_path):
    (tmp_path / "my_mapping.py").write_text(FUNCTION, encoding="utf-8")
    (tmp_path / "m.toml").write_text('function = "my_mapping.py:ratings"\n[[aspects]]\nname = "fluency"\n',
                                     encoding="utf-8")
    rows = [{"HITId": "H", "AssignmentId": f"A{w}", "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
             "WorkTimeInSeconds": "30", "Input.id": "x", "Input.cond": "c1", "Answer.s1": "4", "Answer.s2": str(w + 1)}
            for w in range(3)]
    write_batch_csv(tmp_path / "b.csv", rows)
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "m.toml"))
    assert got(r) == {("x-1", "W0"): 4, ("x-1", "W1"): 4, ("x-1", "W2"): 4, ("x-2", "W0"): 1, ("x-2", "W1"): 2,
                      ("x-2", "W2"): 3}
    assert r.work_time_s.tolist() == [30.0] * 6 and r.assignment_ids == ["A0", "A1", "A2"]
    rows[2]["Input.cond"] = "boom"
    write_batch_csv(tmp_path / "b2.csv", rows)
    fails_cleanly(["report", "--batch-csv", str(tmp_path / "b2.csv"), "--mapping", str(tmp_path / "m.toml"), "--out",
                   str(tmp_path / "rep"), "-q"], tmp_path,
                  "b2.csv:4: mapping function my_mapping.py:ratings raised ValueError: cannot read condition boom "
                  "(batch row 3)")


def test_longer_row_is_still_an_error_and_short_row_without_required_column(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("HITId,AssignmentId,WorkerId,AssignmentStatus,Approve,Reject\nH,A,W,Approved\nH,A2,W,Approved,,,x\n")
    with pytest.raises(UserError, match=r"b.csv:3: row: expected 6 cells as in the header, got 7"):
        read_batch_csv(p)
    p.write_text("HITId,AssignmentId,WorkerId,AssignmentStatus,Approve,Reject\nH,A,W\n")
    with pytest.raises(UserError, match=r"b.csv:2: row: expected 6 cells as in the header, got 3 \(no AssignmentStatus\)"):
        read_batch_csv(p)


def test_non_rating_batch_file_points_at_mapping_suggest(tmp_path):
    rows = [{"HITId": "H", "AssignmentId": "A", "WorkerId": "W", "AssignmentStatus": "Approved",
             "Input.image_url": "http://example.invalid/1.png", "Answer.label": "cat", "Answer.comment": "nice"}]
    write_batch_csv(tmp_path / "b.csv", rows)
    out = fails_cleanly(["report", "--batch-csv", str(tmp_path / "b.csv"), "--out", str(tmp_path / "rep"), "-q"],
                        tmp_path, "Answer columns found: Answer.label, Answer.comment")
    assert "mturk-eval mapping suggest" in out
    fails_cleanly(["mapping", "suggest", str(tmp_path / "b.csv")], tmp_path,
                  "found no rating answers (Answer.* columns: Answer.label, Answer.comment)")


def test_suggest_writes_a_mapping_that_reads_the_file(issue_files):
    tmp, truth = issue_files
    res = CliRunner().invoke(main, ["mapping", "suggest", str(tmp / "b.csv"), "--out", str(tmp / "s.toml")])
    assert res.exit_code == 0, res.output
    text = (tmp / "s.toml").read_text()
    assert 'items_per_hit = 10' in text and 'slot_base = 1' in text and 'item_id = "{Input.query_id}-{slot}"' in text
    assert 'answer = "Answer.coherence_{slot}.option_{value}"' in text and "scale = [1, 4]" in text
    assert 'method = "{Input.experimental_cond}"' in text
    r = ratings_from_batch(read_batch_csv(tmp / "b.csv"), None, load_mapping(tmp / "s.toml"))
    assert got(r) == truth
    again = CliRunner().invoke(main, ["mapping", "suggest", str(tmp / "b.csv"), "--out", str(tmp / "s.toml")])
    assert again.exit_code == 2 and "exists" in again.output


def test_suggest_plain_columns():
    from mturk_eval.analysis.batch_csv import BatchCSV

    b = BatchCSV("b.csv", ["HITId", "Input.item", "Answer.q1", "Answer.q2", "Answer.note"],
                 [{"HITId": "H", "Input.item": "x", "Answer.q1": "3", "Answer.q2": "5", "Answer.note": "ok"}], [2])
    text = suggest_mapping(b)
    assert 'answer = "Answer.q{slot}"' in text and "items_per_hit = 2" in text and "scale = [3, 5]" in text


# ---------------------------------------------------------------------------------------------- bad input


def _radio_case(tmp, mutate_row=None, mapping=ISSUE_MAPPING):
    rows, _ = radio_rows(n_hits=2, workers=2)
    if mutate_row:
        mutate_row(rows[1])
        if "plain" in mapping:  # every row a plain 1-4 value in option_1, the second row's broken
            for r in rows:
                r.update({f"Answer.coherence_{s}.option_1": r.get(f"Answer.coherence_{s}.option_1") if r is rows[1]
                          and s == 1 else "2" for s in range(1, 11)})
    write_batch_csv(tmp / "b.csv", rows)
    (tmp / "m.toml").write_text(mapping, encoding="utf-8")


BAD = {
    "missing_column": (None, ISSUE_MAPPING.replace("Input.experimental_cond", "Input.condition"),
                       "m.toml: system.method: '{Input.condition}' names the column 'Input.condition', which "),
    "missing_answer_column": (None, ISSUE_MAPPING.replace("Answer.coherence_", "Answer.coh_"),
                              "m.toml: aspects[0].answer: 'Answer.coh_{slot}.option_{value}' names the column "
                              "'Answer.coh_1.option_1', which"),
    "unknown_field": (None, ISSUE_MAPPING.replace("{Input.query_id}-{slot}", "{query}-{slot}"),
                      "m.toml: item_id: '{query}-{slot}': unknown template field {query} (expected {slot}"),
    "outside_scale": (lambda r: r.update({"Answer.coherence_3.option_5": "true", "Answer.coherence_3.option_1": "",
                                          "Answer.coherence_3.option_2": "", "Answer.coherence_3.option_3": "",
                                          "Answer.coherence_3.option_4": ""}), ISSUE_MAPPING,
                      "b.csv:3: Answer.coherence_3.option_5: expected a value from 1 to 4 (coherence's scale), got a "
                      "true cell for 5"),
    "two_true": (lambda r: r.update({f"Answer.coherence_2.option_{o}": "on" if o in (2, 4) else "" for o in range(1, 5)}),
                 ISSUE_MAPPING,
                 "b.csv:3: Answer.coherence_2.option_2: expected one true cell in the radio group, got 2"),
    "none_true": (lambda r: r.update({f"Answer.coherence_2.option_{o}": "" for o in range(1, 5)}), ISSUE_MAPPING,
                  "b.csv:3: Answer.coherence_2.option_1: expected a score from 1 to 4 (coherence), got an empty answer "
                  "(no true cell in the radio group)"),
    "bad_spelling": (lambda r: r.update({"Answer.coherence_1.option_1": "maybe"}), ISSUE_MAPPING,
                     "b.csv:3: Answer.coherence_1.option_1: expected true/on/1 or an empty cell"),
    "plain_outside_scale": (lambda r: r.update({"Answer.coherence_1.option_1": "9"}),
                            "# plain\n" + ISSUE_MAPPING.replace("Answer.coherence_{slot}.option_{value}",
                                                                 "Answer.coherence_{slot}.option_1"),
                            "b.csv:3: Answer.coherence_1.option_1: expected an integer from 1 to 4 (coherence's scale), got '9'"),
    "unknown_key": (None, ISSUE_MAPPING + "colour = 1\n", "m.toml: aspects[0]: unknown key 'colour' (expected name, scale"),
    "bad_scale": (None, ISSUE_MAPPING.replace("[1, 4]", "[4, 1]"), "m.toml: aspects[0].scale: expected [low, high]"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_mapping_inputs(tmp_path, case):
    mutate, mapping, needle = BAD[case]
    _radio_case(tmp_path, mutate, mapping)
    fails_cleanly(["report", "--batch-csv", str(tmp_path / "b.csv"), "--mapping", str(tmp_path / "m.toml"), "--out",
                   str(tmp_path / "rep"), "-q"], tmp_path, needle)


def test_missing_answers_can_be_skipped_and_counted(tmp_path):
    _radio_case(tmp_path, lambda r: r.update({f"Answer.coherence_2.option_{o}": "" for o in range(1, 5)}),
                'missing = "skip"\n' + ISSUE_MAPPING)
    res = CliRunner().invoke(main, ["report", "--batch-csv", str(tmp_path / "b.csv"), "--mapping",
                                    str(tmp_path / "m.toml"), "--out", str(tmp_path / "rep"), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "1 missing answer(s)" in res.stderr
    assert json.loads((tmp_path / "rep/report.json").read_text())["counts"]["rows"] == 2 * 2 * 10 - 1


def test_load_ratings_reads_a_mapped_batch_file(issue_files):
    from mturk_eval.analysis import load_ratings, table2

    tmp, truth = issue_files
    df = load_ratings(tmp / "b.csv", mapping=tmp / "m.toml")
    assert len(df) == len(truth) and list(df["aspect"].cat.categories) == ["coherence"]
    assert dict(zip(zip(df["item_id"].astype(str), df["worker_id"].astype(str)), df["score"])) == truth
    assert df["reward"].eq(0.20).all() and "mapping" in df.attrs["description"]
    assert list(table2(df).columns[4:7]) == ["coherence_mean", "coherence_sd", "coherence_ci_low"]
    with pytest.raises(UserError, match="mturk-eval mapping suggest"):
        load_ratings(tmp / "b.csv")

"""Nothing resolved silently (#17): every value the loaders and the analysis settle on their own (an aspect's
spelling, ids with white space, statuses they do not know, per-assignment values that differ between rows,
check rows without a result, a Reject cell over the status, an unreadable reward, empty slots, batch values
over the responses file, short rows) is a counted warning in report.md, report.json and on stderr; clean
inputs get none of them."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from helpers.analysis import make_rows
from mturk_eval.analysis.batch_csv import read_batch_csv, write_batch_csv
from mturk_eval.analysis.core import analyze
from mturk_eval.analysis.mapping import load_mapping, ratings_from_batch
from mturk_eval.analysis.ratings import ratings_from_batch as own_layout, ratings_from_records, ResponseIndex
from mturk_eval.analysis.ratings import write_ratings_csv
from mturk_eval.cli import main
from mturk_eval.config import ASPECTS, ExperimentConfig
from test_bad_inputs import fails_cleanly


def cfg():
    c = ExperimentConfig(name="t", models=["tiny"])
    c.report.bootstrap_samples = 0
    c.report.mixed_model = False
    return c


def rows_of(item, worker, assignment, method="prompt_tuning", **kw):
    return [{"item_id": item, "eval_set": "persona", "method": method, "model": "tiny", "worker_id": worker,
             "assignment_id": assignment, "aspect": a, "score": 3, **kw} for a in ASPECTS]


def warnings_of(rows):
    return analyze(ratings_from_records(rows, "r"), cfg()).warnings


def one(warnings, needle):
    found = [w for w in warnings if needle in w]
    assert len(found) == 1, (needle, warnings)
    return found[0]


def test_clean_inputs_have_none_of_these_warnings():
    assert warnings_of(make_rows(n_prompts=3, seed=1)) == []


def test_aspect_spellings_are_counted():
    rows = rows_of("x1", "W1", "A1") + rows_of("x2", "W2", "A2")
    rows[0]["aspect"], rows[4]["aspect"], rows[7]["aspect"] = "Fluency", "Fluency", " persona"
    w = one(warnings_of(rows), "spell the aspect")
    assert w == ("3 rating row(s) spell the aspect otherwise than its name ('Fluency' as fluency, ' persona' as "
                 "persona); read as the named aspect.")


def test_ids_with_white_space_are_counted_and_worker_ids_not_shown():
    rows = rows_of("x1", "W1", "A1") + rows_of("x1 ", "W2", "A2") + rows_of("x2", " secret-worker", "A3")
    ws = warnings_of(rows)
    assert one(ws, "item id(s)") == ("1 item id(s) begin or end with white space (e.g. 'x1 '); kept as written, so "
                                     "they are other items than the same ids without it (1 of them also occur "
                                     "without it).")
    assert one(ws, "worker id(s)").startswith("1 worker id(s) begin or end with white space; kept as written")
    assert not any("secret-worker" in w for w in ws)


def test_unknown_statuses_are_counted():
    rows = rows_of("x1", "W1", "A1", status="Approved") + rows_of("x2", "W2", "A2", status="Returned")
    rows += rows_of("x3", "W3", "A3", status="Rejected")
    w = one(warnings_of(rows), "status other than")
    assert w == ("4 rating row(s) have a status other than Submitted, Approved or Rejected ('Returned' (4)); they "
                 "were used as not rejected.")


def test_per_assignment_conflicts_of_status_worker_and_check_result():
    rows = rows_of("x1", "W1", "A1", status="Approved") + rows_of("x2", "W1", "A1", status="Rejected")
    rows += rows_of("x3", "W2", "A2") + rows_of("x4", "W3", "A2")
    rows += rows_of("x5", "W4", "A3", attention_passed=1) + rows_of("x6", "W4", "A3", attention_passed=0)
    rows += rows_of("x7", "W5", "A4", attention_passed=1)
    ws = warnings_of(rows)
    assert one(ws, "different status values") == (
        "1 assignment(s) have different status values on different rows (e.g. A1: 'Approved', 'Rejected'); only "
        "the rows marked Rejected were excluded, and the assignment counts as rejected in the worker figures when "
        "its first row is.")
    assert one(ws, "rows from different workers") == (
        "1 assignment(s) have rows from different workers (e.g. A2: 'W2', 'W3'); each rating row counts for its "
        "own worker, the assignment's attention checks and worker figures for one of them.")
    assert one(ws, "attention_passed 1 on some rows") == (
        "1 assignment(s) have attention_passed 1 on some rows and 0 on others (e.g. A3); read as failed (a failure "
        "anywhere in the assignment wins).")


def test_check_rows_without_a_result_and_items_checked_on_some_rows_only():
    rows = rows_of("x1", "W1", "A1") + rows_of("chk", "W1", "A1", attention_check=1)
    rows += rows_of("x2", "W2", "A2") + rows_of("chk", "W2", "A2", attention_check=0)
    rows += rows_of("x3", "W3", "A3")
    ws = warnings_of(rows)
    assert one(ws, "no attention_passed result") == (
        "1 assignment(s) hold attention-check rows (4) but no attention_passed result (e.g. A1); the check rows "
        "were excluded and the assignments count as unchecked.")
    assert one(ws, "attention checks on some rows") == (
        "1 item(s) are attention checks on some rows and not on others (e.g. 'chk'); only the rows marked "
        "attention_check were excluded (4 unmarked rows of them count as ratings).")


def own_rows():
    rows = []
    for w in range(3):
        row = {"HITId": "H1", "AssignmentId": f"A{w}", "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
               "Reward": "$0.10", "WorkTimeInSeconds": "60", "Input.i0_item_id": "x1", "Input.i0_method": "m1",
               "Input.i0_eval_set": "persona", "Input.i0_model": "tiny", "Input.i1_item_id": "", "Input.i1_method": "",
               "Input.i1_eval_set": "", "Input.i1_model": ""}
        for a in ASPECTS:
            row[f"Answer.i0_{a}"] = "4"
            row[f"Answer.i1_{a}"] = ""
        rows.append(row)
    rows[0]["Reject"] = "bad work"          # Approved, but the Reject cell is filled
    rows[1]["Reward"] = "free"              # not an amount
    return rows


def test_batch_file_resolutions_are_counted(tmp_path):
    write_batch_csv(tmp_path / "b.csv", own_rows())
    text = (tmp_path / "b.csv").read_text(encoding="utf-8").splitlines()
    # The last row also loses the cells from Answer.i1_persona on (beyond Approve, Reject): they belong to
    # the empty slot, so the file still reads, with the short row counted.
    header = text[0].split(",")
    keep = header.index("Answer.i1_persona")
    cells = text[3].split(",")
    text[3] = ",".join(cells[:keep])
    (tmp_path / "b.csv").write_text("\r\n".join(text) + "\r\n", encoding="utf-8")
    responses = ResponseIndex("responses.jsonl", {"x1": {"eval_set": "persona", "method": "m0", "model": "tiny",
                                                         "persona_id": None, "pair_id": None}})
    r = own_layout(read_batch_csv(tmp_path / "b.csv"), responses)
    notes = r.notes
    assert one(notes, "filled Reject cell") == ("1 batch row(s) have a filled Reject cell but another AssignmentStatus "
                                         "(Approved (1)); read as Rejected and excluded.")
    assert one(notes, "Reward") == ("1 batch row(s) have a Reward that is not an amount ('free'); read as unknown "
                                    "(the worker figures use the other rows' reward, or hit.reward).")
    assert one(notes, "empty item slot") == ("3 empty item slot(s) (no item id in a HIT with fewer items than slots) "
                                             "were skipped.")
    assert one(notes, "responses file's") == ("1 item(s) have a method in the batch file other than the responses "
                                              "file's (e.g. 'x1'); the batch file's was used.")
    assert one(notes, "shorter than the header") == ("1 batch row(s) are shorter than the header by more than the "
                                                     "trailing Approve/Reject cells; their missing cells were read as "
                                                     "empty.")


def test_mapping_resolutions_are_counted_and_reach_the_report(tmp_path):
    rows = own_rows()
    write_batch_csv(tmp_path / "b.csv", rows)
    (tmp_path / "m.toml").write_text(
        'items_per_hit = 2\nitem_id = "{Input.i{slot}_item_id}"\n[system]\nmethod = "{Input.i{slot}_method}"\n'
        'eval_set = "persona"\nmodel = "tiny"\n[[aspects]]\nname = "fluency"\nanswer = "Answer.i{slot}_fluency"\n',
        encoding="utf-8")
    (tmp_path / "responses.jsonl").write_text(json.dumps(
        {"item_id": "x1", "eval_set": "persona", "method": "m0", "model": "tiny", "response": "hi"}) + "\n")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), None, load_mapping(tmp_path / "m.toml"))
    assert any("filled Reject cell" in n for n in r.notes) and any("empty item slot" in n for n in r.notes)
    res = CliRunner().invoke(main, [
        "report", "--batch-csv", str(tmp_path / "b.csv"), "--mapping", str(tmp_path / "m.toml"), "--responses",
        str(tmp_path / "responses.jsonl"), "--out", str(tmp_path / "rep"), "--no-plots"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "rep/report.json").read_text())
    md = (tmp_path / "rep/report.md").read_text()
    for needle in ("filled Reject cell", "Reward that is not an amount", "3 empty item slot(s)",
                   "1 item(s) have a method in the batch file other than the responses file's"):
        assert sum(needle in w for w in data["warnings"]) == 1, (needle, data["warnings"])
        assert needle in md
        assert any(line.startswith("warning: ") and needle in line for line in res.stderr.splitlines())


def test_long_csv_with_a_respelled_aspect_through_the_cli(tmp_path):
    rows = make_rows(n_prompts=2, seed=0)
    rows[0]["aspect"] = "FLUENCY"
    write_ratings_csv(tmp_path / "r.csv", rows)
    res = CliRunner().invoke(main, ["report", "--ratings", str(tmp_path / "r.csv"), "--out", str(tmp_path / "rep"),
                                    "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "1 rating row(s) spell the aspect otherwise than its name ('FLUENCY' as fluency)" in (
        tmp_path / "rep/report.md").read_text()


@pytest.mark.parametrize("spec,needle", [
    ('{"aspects": {"relevence": 2}}', "got 'relevence': 2"),
    ('{"aspects": {"fluency": "low"}}', "got 'fluency': 'low'"),
    ('{"aspects": {}}', "got none"),
])
def test_an_own_layout_check_that_everyone_would_pass_is_an_error(tmp_path, spec, needle):
    """Formerly resolved silently: limits on unknown aspects were ignored (the check always passed)."""
    rows = own_rows()
    for row in rows:
        row.pop("Reject", None)
        row["Reward"] = "$0.10"
        row["Input.i0_attention_check"] = spec
    write_batch_csv(tmp_path / "b.csv", rows)
    fails_cleanly(["report", "--batch-csv", str(tmp_path / "b.csv"), "--out", str(tmp_path / "rep"), "-q"], tmp_path,
                  "b.csv:2: Input.i0_attention_check: expected the highest passing score (1 to 5) of one or more of "
                  f"fluency, engagingness, relevance, persona, {needle}")


def test_invalid_ledger_submissions_are_counted(tmp_path):
    from mturk_eval.ledger import Ledger, ledger_path
    from test_report_cli import _fill_ledger
    from test_bad_inputs import write_config

    rows = make_rows(n_prompts=2, seed=3)
    cfg_path = write_config(tmp_path)
    cfg = _fill_ledger(cfg_path, rows)
    res = CliRunner().invoke(main, ["report", "--config", str(cfg_path), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    report = tmp_path / "runs/exp1/report/report.json"
    assert not [w for w in json.loads(report.read_text())["warnings"] if "could not be read" in w]
    with Ledger.open(ledger_path(cfg, "local")) as led:
        led.store_submission(submission_id="ASG-bad", task_id="HIT0", rater_id="AW1", status="Submitted",
                             accept_time=1000.0, submit_time=1040.0, raw_answer="<QuestionFormAnswers/>",
                             scores=None, error="i0_fluency: expected an integer from 1 to 5, got 'x'",
                             simulated=True, attention_passed=None)
    res = CliRunner().invoke(main, ["report", "--config", str(cfg_path), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    (w,) = [w for w in json.loads(report.read_text())["warnings"] if "could not be read" in w]
    assert w == ("1 submission(s) in the ledger could not be read (e.g. i0_fluency: expected an integer from 1 to 5, "
                 "got 'x'); they hold no ratings and count nowhere in this report (`mturk-eval status` counts them).")


def test_columns_the_long_format_does_not_read_are_counted(tmp_path):
    import pandas as pd

    from mturk_eval.analysis import load_ratings
    from mturk_eval.analysis.ratings import ratings_from_frame, read_ratings
    from mturk_eval.io import write_jsonl

    rows = make_rows(n_prompts=2, seed=4)
    for r in rows:
        r["simulate"] = r.pop("simulated")   # misspelt: every rating would silently count as a person's
        r["notes"] = "x"
    pd.DataFrame(rows).to_csv(tmp_path / "r.csv", index=False)   # write_ratings_csv writes known columns only
    write_jsonl(tmp_path / "r.jsonl", rows)
    pd.DataFrame(rows).to_parquet(tmp_path / "r.parquet")
    expected = "2 column(s) not in the long format were ignored ('simulate', 'notes'); it reads item_id, eval_set,"
    for name in ("r.csv", "r.jsonl", "r.parquet"):
        assert one(read_ratings(tmp_path / name).notes, "not in the long format").startswith(expected), name
    (tmp_path / "blank.csv").write_text((tmp_path / "r.csv").read_text() + "\n")  # the careful CSV reader
    assert one(read_ratings(tmp_path / "blank.csv").notes, "not in the long format").startswith(expected)
    assert one(analyze(ratings_from_records(rows, "r"), cfg()).warnings, "not in the long format").startswith(expected)
    assert one(analyze(ratings_from_frame(pd.DataFrame(rows)), cfg()).warnings,
               "not in the long format").startswith(expected)
    # The frame load_ratings gives (and the report's ratings.parquet) holds only columns it reads.
    assert not [n for n in ratings_from_frame(load_ratings(tmp_path / "r.csv")).notes if "long format" in n]

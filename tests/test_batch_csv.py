"""MTurk batch results CSV: column order, round trip, atomic writes and bad input."""
from __future__ import annotations

import csv
import os

import pytest

from mturk_eval.analysis.batch_csv import BATCH_FIXED_COLUMNS, read_batch_csv, write_batch_csv
from mturk_eval.errors import UserError


def _row(hit="H1", worker="AW1", status="Approved", **extra):
    row = {"HITId": hit, "AssignmentId": f"A-{hit}-{worker}", "WorkerId": worker, "AssignmentStatus": status,
           "Reward": "$0.05", "WorkTimeInSeconds": "31", "Approve": "", "Reject": ""}
    row.update(extra)
    return row


def test_fixed_columns_are_the_websites_27():
    assert len(BATCH_FIXED_COLUMNS) == 27
    assert BATCH_FIXED_COLUMNS[0] == "HITId" and BATCH_FIXED_COLUMNS[-1] == "Last7DaysApprovalRate"
    assert BATCH_FIXED_COLUMNS.index("WorkerId") == 15
    assert len(set(BATCH_FIXED_COLUMNS)) == 27


def test_write_orders_columns_and_round_trips(tmp_path):
    rows = [
        _row(**{"Answer.i0_fluency": "4", "Input.item_id": "x.1", "Input.response": 'hi, "there"\nsecond line'}),
        _row(hit="H2", **{"Input.item_id": "x.2", "Answer.i0_fluency": "5", "Answer.i0_persona": "2"}),
    ]
    path = tmp_path / "b.csv"
    write_batch_csv(path, rows)
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header[:27] == list(BATCH_FIXED_COLUMNS)
    assert header[27:] == ["Input.item_id", "Input.response", "Answer.i0_fluency", "Answer.i0_persona", "Approve", "Reject"]
    back = read_batch_csv(path)
    assert back.columns == header
    assert back.rows[0]["Input.response"] == 'hi, "there"\nsecond line'
    assert back.rows[0]["Reward"] == "$0.05"
    assert back.rows[0]["Answer.i0_persona"] == ""  # missing cells are empty
    assert back.rows[1]["Answer.i0_persona"] == "2"
    # the first row spans two physical lines, so the second starts on line 4
    assert back.lines == [2, 4]
    assert back.input_columns == ["Input.item_id", "Input.response"]


def test_write_rejects_unknown_column_and_leaves_old_file(tmp_path):
    path = tmp_path / "b.csv"
    write_batch_csv(path, [_row()])
    before = path.read_bytes()
    with pytest.raises(UserError, match="Bogus: expected one of the 27 fixed columns"):
        write_batch_csv(path, [_row(Bogus="1")])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.csv"]


def test_read_accepts_bom(tmp_path):
    path = tmp_path / "b.csv"
    write_batch_csv(path, [_row()])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_batch_csv(path).rows[0]["HITId"] == "H1"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"b.csv:1: header: expected the batch results columns"),
        ("HITId,WorkerId,AssignmentStatus\nH,AW,Approved\n", r"b.csv:1: header: expected the batch results columns AssignmentId"),
        ("HITId,AssignmentId,WorkerId,AssignmentStatus,HITId\n", r"b.csv:1: header: column 'HITId' appears twice"),
        ("HITId,AssignmentId,WorkerId,AssignmentStatus\nH,A,AW,Approved\nH,A2,AW\n", r"b.csv:3: row: expected 4 cells"),
    ],
)
def test_read_bad_input(tmp_path, text, message):
    path = tmp_path / "b.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        read_batch_csv(path)


def test_read_missing_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_batch_csv(tmp_path / "nope.csv")

"""MTurk's batch results CSV: the file the requester website gives for a batch, read and written.

Layout (see /work/shared/docs/mturk-facts.md): the 27 fixed columns of :data:`BATCH_FIXED_COLUMNS`,
then one ``Input.<name>`` column per input field, then ``Answer.<field>`` columns (or one
``Answer.taskAnswers`` JSON column for crowd-form tasks), then ``Approve`` and ``Reject``.
``collect --export-csv`` writes the ledger in this format (the website offers no such download for HITs
created through the API) and ``report --batch-csv`` reads it. Only the standard library's ``csv`` module
is used: the format is plain RFC 4180 CSV and needs nothing more.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mturk_eval.errors import UserError, where
from mturk_eval.io import atomic_write_text, read_text

BATCH_FIXED_COLUMNS: tuple[str, ...] = (
    "HITId",
    "HITTypeId",
    "Title",
    "Description",
    "Keywords",
    "Reward",
    "CreationTime",
    "MaxAssignments",
    "RequesterAnnotation",
    "AssignmentDurationInSeconds",
    "AutoApprovalDelayInSeconds",
    "Expiration",
    "NumberOfSimilarHITs",
    "LifetimeInSeconds",
    "AssignmentId",
    "WorkerId",
    "AssignmentStatus",
    "AcceptTime",
    "SubmitTime",
    "AutoApprovalTime",
    "ApprovalTime",
    "RejectionTime",
    "RequesterFeedback",
    "WorkTimeInSeconds",
    "LifetimeApprovalRate",
    "Last30DaysApprovalRate",
    "Last7DaysApprovalRate",
)
"""The 27 fixed columns, in the website's order."""

TRAILING_COLUMNS: tuple[str, ...] = ("Approve", "Reject")

# Columns a reader cannot do without; the other fixed columns may be absent from hand-made files.
REQUIRED_COLUMNS: tuple[str, ...] = ("HITId", "AssignmentId", "WorkerId", "AssignmentStatus")


@dataclass
class BatchCSV:
    """A parsed batch results file: its columns, and one dict per row with the CSV line it starts on."""

    path: str
    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    # Rows shorter than the header by more than the trailing Approve/Reject cells (read as empty cells).
    short_rows: int = 0

    @property
    def input_columns(self) -> list[str]:
        return [c for c in self.columns if c.startswith("Input.")]

    @property
    def answer_columns(self) -> list[str]:
        return [c for c in self.columns if c.startswith("Answer.")]


def batch_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The column order for ``rows``: the 27 fixed, ``Input.*`` and ``Answer.*`` in order of first
    appearance, then ``Approve, Reject``. Any other key is an error (it has no place in the format)."""
    inputs: dict[str, None] = {}
    answers: dict[str, None] = {}
    fixed = set(BATCH_FIXED_COLUMNS) | set(TRAILING_COLUMNS)
    for i, row in enumerate(rows):
        for key in row:
            if key.startswith("Input.") and len(key) > 6:
                inputs.setdefault(key)
            elif key.startswith("Answer.") and len(key) > 7:
                answers.setdefault(key)
            elif key not in fixed:
                raise UserError(
                    f"batch row {i}: {key}: expected one of the 27 fixed columns, Input.<name>, "
                    f"Answer.<name>, Approve or Reject, got an unknown column"
                )
    return [*BATCH_FIXED_COLUMNS, *inputs, *answers, *TRAILING_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_batch_csv(rows: list[dict[str, Any]]) -> str:
    """The CSV text for ``rows`` (keys are full column names; missing cells are left empty)."""
    columns = batch_columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_batch_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as a batch results CSV, atomically (readers see the old file or the whole new one).

    Each row is a dict keyed by column name: the fixed ones (``HITId``, ``WorkerId``, ``Reward`` as
    ``"$0.05"``, ...), ``Input.<name>``, ``Answer.<name>``, ``Approve``, ``Reject``.
    """
    atomic_write_text(path, format_batch_csv(rows))


def read_batch_csv(
    path: str | os.PathLike,
    *,
    required: tuple[str, ...] = REQUIRED_COLUMNS,
) -> BatchCSV:
    """Read a batch results CSV. Errors name the file and line: a missing required column, a duplicated
    column, a row with more cells than the header, or one with fewer that lacks a required column. A row
    shorter than the header otherwise has its trailing cells empty, as the website writes them."""
    path = Path(path)
    text = read_text(path, encoding="utf-8-sig")  # the website's files may start with a BOM
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{where(path, 1)}: header: expected the batch results columns, got an empty file") from None
    except csv.Error as exc:
        raise UserError(f"{where(path, 1)}: header: not valid CSV ({exc})") from None
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise UserError(f"{where(path, 1)}: header: column {name!r} appears twice")
        seen.add(name)
    missing = [c for c in required if c not in seen]
    if missing:
        raise UserError(
            f"{where(path, 1)}: header: expected the batch results columns {', '.join(missing)}, "
            f"got {', '.join(header[:8])}{', ...' if len(header) > 8 else ''}"
        )
    out = BatchCSV(path=str(path), columns=header)
    n = len(header)
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise UserError(f"{where(path, line)}: not valid CSV ({exc})") from None
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            line = reader.line_num + 1
            continue
        if len(cells) < n:
            # The requester website leaves trailing empty cells off (Approve, Reject): read them as empty,
            # unless a column a reader cannot do without is among the missing ones.
            lost = [c for c in header[len(cells):] if c in required]
            if lost:
                raise UserError(f"{where(path, line)}: row: expected {n} cells as in the header, got {len(cells)} "
                                f"(no {', '.join(lost)})")
            if any(c not in TRAILING_COLUMNS for c in header[len(cells):]):
                out.short_rows += 1
            cells = cells + [""] * (n - len(cells))
        elif len(cells) > n:
            raise UserError(f"{where(path, line)}: row: expected {n} cells as in the header, got {len(cells)}")
        out.rows.append(dict(zip(header, cells)))
        out.lines.append(line)
        line = reader.line_num + 1
    return out

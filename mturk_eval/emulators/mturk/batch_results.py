"""The local MTurk's batch results CSV: what the requester website's "Download CSV" gives for a batch.

``GET /_sandbox/batch-results.csv?hitTypeId=...`` (every HIT when no type is given) writes one row per
submitted, approved or rejected assignment in the website's layout (27 fixed columns, then one
``Answer.<QuestionIdentifier>`` column per answer: the FreeText, or the chosen SelectionIdentifiers
joined with ``|``; a crowd-form HIT has its one ``Answer.taskAnswers`` JSON column), written by
:func:`mturk_eval.analysis.batch_csv.format_batch_csv`. On MTurk HITs made through the API never appear as
website batches; the local MTurk offers the file anyway, since third-party tools and old analysis
scripts read this format. HITs made through the API have no ``Input.*`` columns (they had no input CSV).
"""
from __future__ import annotations

from typing import Any

from mturk_eval.analysis.batch_csv import format_batch_csv
from mturk_eval.emulators.mturk import question_form
from mturk_eval.emulators.mturk.models import DONE, Store
from mturk_eval.platforms.mturk.batch_export import website_time


def batch_rows(store: Store, now: float, hit_type_id: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = 0
    while True:
        page = store.list_hits(now, after, 200, type_id=hit_type_id)
        if not page:
            return rows
        after = page[-1].row["seq"]
        for v in page:
            h = v.row
            for a in store.list_assignments(h["id"], list(DONE), 0, 1000000, now):
                prof = store.worker_profile(a["worker_id"])
                decided = prof["approved"] + prof["rejected"]
                rate = (f"{100 * prof['approved'] // decided}% ({prof['approved']}/{decided})" if decided
                        else "0% (0/0)")
                row: dict[str, Any] = {
                    "HITId": h["id"], "HITTypeId": h["hit_type_id"], "Title": h["title"],
                    "Description": h["description"], "Keywords": h["keywords"] or "", "Reward": f"${h['reward']}",
                    "CreationTime": website_time(h["created"]), "MaxAssignments": h["max_assignments"],
                    "RequesterAnnotation": h["annotation"] or "",
                    "AssignmentDurationInSeconds": h["assignment_duration"],
                    "AutoApprovalDelayInSeconds": h["auto_approval_delay"], "Expiration": website_time(h["expiration"]),
                    "NumberOfSimilarHITs": "", "LifetimeInSeconds": h["lifetime"], "AssignmentId": a["id"],
                    "WorkerId": a["worker_id"], "AssignmentStatus": a["status"],
                    "AcceptTime": website_time(a["accept_time"]), "SubmitTime": website_time(a["submit_time"]),
                    "AutoApprovalTime": website_time(a["auto_approval_time"]),
                    "ApprovalTime": website_time(a["approval_time"]),
                    "RejectionTime": website_time(a["rejection_time"]), "RequesterFeedback": a["feedback"] or "",
                    "WorkTimeInSeconds": int(round(a["submit_time"] - a["accept_time"])),
                    "LifetimeApprovalRate": rate, "Last30DaysApprovalRate": rate, "Last7DaysApprovalRate": rate,
                }
                for qid, value in question_form.read_answers(a["answer"]).items():
                    row[f"Answer.{qid}"] = value if isinstance(value, str) else "|".join(value)
                rows.append(row)


def batch_csv(store: Store, now: float, hit_type_id: str | None = None) -> str:
    return format_batch_csv(batch_rows(store, now, hit_type_id))

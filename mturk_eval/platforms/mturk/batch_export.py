"""The ledger as MTurk's batch results CSV (``collect --export-csv``), and the website's time format.

MTurk's requester website gives a batch's results as a CSV (layout, reading and writing:
:mod:`mturk_eval.analysis.batch_csv`); HITs made through the API never appear there, so ``collect
--export-csv`` writes the ledger in that layout instead, for every platform (it is the one export
format, and what ``report --batch-csv`` reads). Rater and submission ids leave the machine as
pseudonyms (:mod:`mturk_eval.privacy`). :func:`website_time` also serves the local MTurk's own
download (:mod:`mturk_eval.emulators.mturk.batch_results`).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from typing import TYPE_CHECKING

from mturk_eval.analysis.batch_csv import write_batch_csv
from mturk_eval.privacy import Pseudonymiser, answer_free_text_fields, pseudonymise_batch_rows

if TYPE_CHECKING:
    from mturk_eval.config import ExperimentConfig
    from mturk_eval.ledger import Ledger


def export_batch_csv(cfg: "ExperimentConfig", ledger: "Ledger", path: str | os.PathLike, pseudonyms: Pseudonymiser,
                     batches: list[str] | None = None) -> list[str]:
    """Write the submissions of ``batches`` (default all) to ``path`` with pseudonymous rater and
    submission ids; return the ``Answer.*`` columns that hold free text (possibly identifying)."""
    rows = pseudonymise_batch_rows(batch_rows(cfg, ledger, batches), pseudonyms)
    write_batch_csv(path, rows)
    return list(dict.fromkeys(
        f"Answer.{name}" for r in rows
        for name in answer_free_text_fields({k[7:]: v for k, v in r.items() if k.startswith("Answer.")})))


def website_time(epoch: float | None) -> str:
    """The requester website's time format (``Thu Oct 31 14:41:08 UTC 2019``)."""
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")


def batch_rows(cfg: "ExperimentConfig", ledger: "Ledger", batches: list[str] | None = None) -> list[dict]:
    """One batch-results CSV row per stored assignment (inputs per slot: ``Input.i{k}_<field>``); with
    ``batches``, only the assignments of those batches' HITs."""
    h_cfg = cfg.hit
    rows = []
    hits = {h.task_id: h for h in ledger.tasks() if h.task_id}
    hit_rows = {r["task_id"]: r for r in ledger.task_status_rows() if r["task_id"]}
    for a in ledger.submissions():
        h = hits.get(a.task_id)
        if batches is not None and (h is None or h.batch not in batches):
            continue
        rec = ledger.submission_record(a.submission_id)
        hr = hit_rows.get(a.task_id)
        row = {
            "HITId": a.task_id, "HITTypeId": h.type_id if h else "", "Title": h_cfg.title,
            "Description": h_cfg.description, "Keywords": h_cfg.keywords,
            "Reward": f"${h.reward if h else h_cfg.reward}",
            "CreationTime": website_time(hr["created_at"]) if hr else "",
            "MaxAssignments": h.places if h else "", "RequesterAnnotation": h.annotation if h else "",
            "AssignmentDurationInSeconds": h_cfg.assignment_duration_s,
            "AutoApprovalDelayInSeconds": h_cfg.auto_approval_delay_s,
            "Expiration": website_time(hr["expiration"]) if hr else "", "NumberOfSimilarHITs": "",
            "LifetimeInSeconds": h_cfg.lifetime_s, "AssignmentId": a.submission_id, "WorkerId": a.rater_id,
            "AssignmentStatus": a.status, "AcceptTime": website_time(rec["accept_time"]),
            "SubmitTime": website_time(rec["submit_time"]), "AutoApprovalTime": "",
            "ApprovalTime": website_time(rec["reviewed_at"]) if a.status == "Approved" else "",
            "RejectionTime": website_time(rec["reviewed_at"]) if a.status == "Rejected" else "",
            "RequesterFeedback": rec["feedback"] or "",
            "WorkTimeInSeconds": "" if a.work_time_s is None else int(round(a.work_time_s)),
            "LifetimeApprovalRate": "", "Last30DaysApprovalRate": "", "Last7DaysApprovalRate": "",
        }
        for k, it in enumerate(ledger.task_items(a.task_id)):
            row[f"Input.i{k}_item_id"] = it["item_id"]
            row[f"Input.i{k}_persona"] = json.dumps(it["persona"], ensure_ascii=False)
            row[f"Input.i{k}_utterance"] = it["utterance"]
            row[f"Input.i{k}_response"] = it["response"]
            # Item fields and the attention check, so that `report --batch-csv` can map rows without the ledger.
            for f in ("eval_set", "method", "model", "persona_id"):
                row[f"Input.i{k}_{f}"] = it.get(f) or ""
            if it.get("attention_check"):
                row[f"Input.i{k}_attention_check"] = json.dumps(it["attention_check"], ensure_ascii=False)
        for name, value in ledger.submission_fields(a.submission_id).items():
            row[f"Answer.{name}"] = value
        rows.append(row)
    return rows

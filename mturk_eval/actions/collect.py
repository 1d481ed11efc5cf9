"""``collect``: fetch every submitted assignment of the batch's HITs, parse and validate its answer,
and store it in the ledger (idempotent: an assignment is upserted by id, its answers replaced).

Optionally writes the MTurk batch-results CSV (``mturk_eval.analysis.batch_csv``) from the ledger.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mturk_eval.actions.common import describe_batches, experiment_lock, make_platform, open_ledger, select_batches
from mturk_eval.config import ExperimentConfig
from mturk_eval.ledger import Ledger
from mturk_eval.platforms.mturk.answers import attention_passed, parse_answer, parse_fields, AnswerError
from mturk_eval.platforms.crowd_platform import CrowdPlatform

COLLECTED_THROUGH = "collected_through"  # ledger meta key: start time of the last complete collect


def collected_through_key(batch: str) -> str:
    """Ledger meta key: start time of the last complete ``collect --batch`` covering ``batch``."""
    return f"{COLLECTED_THROUGH}.{batch}"


def collected_through(ledger: Ledger, batch: str) -> float:
    """When ``batch`` was last collected completely (every batch at once, or that batch alone)."""
    return max(float(ledger.get_meta(COLLECTED_THROUGH) or 0.0),
               float(ledger.get_meta(collected_through_key(batch)) or 0.0))


@dataclass
class CollectResult:
    hits: int = 0
    new: int = 0
    updated: int = 0
    invalid: int = 0
    simulated: int = 0
    attention_failed: int = 0
    exported: Path | None = None
    batches: str = ""  # which batches were collected ("batches: ... (all)")


def collect(cfg: ExperimentConfig, *, target: str = "sandbox", endpoint_url: str | None = None,
            platform: CrowdPlatform | None = None, export_csv: str | Path | None = None,
            progress: bool = True, batches: tuple[str, ...] = ()) -> CollectResult:
    """Collect the HITs of ``batches`` (default: every batch of the ledger); ``export_csv`` then holds
    the assignments of those batches."""
    result = CollectResult()
    # The ledger is opened (and checked) before the lock is taken: a refused run leaves no lock file.
    with open_ledger(cfg, target, create=False) as ledger:
        known = ledger.batches()
        selected = select_batches(ledger, batches)
        result.batches = describe_batches(selected, known)
        with experiment_lock(cfg, target, "collect"):
            _collect(cfg, ledger, platform or make_platform(target, endpoint_url), result, selected,
                     everything=selected == known, export_csv=export_csv, progress=progress)
    return result


def _collect(cfg: ExperimentConfig, ledger: Ledger, plat: CrowdPlatform, result: CollectResult,
             selected: list[str], *, everything: bool, export_csv, progress: bool) -> None:
    started = time.time()
    hits = [h for h in ledger.hits() if h.hit_id and h.state != "deleted" and h.batch in selected]
    for h in tqdm(hits, desc="collect", unit="HIT", disable=None if progress else True):
        items = ledger.hit_items(h.hit_id)
        result.hits += 1
        for sub in plat.list_submissions(h.hit_id):
            parsed = parse_answer(sub.answer_xml, len(items))
            passed = attention_passed(parsed.scores, items)
            new = ledger.store_assignment(
                assignment_id=sub.assignment_id, hit_id=h.hit_id, worker_id=sub.worker_id, status=sub.status,
                accept_time=sub.accept_time, submit_time=sub.submit_time, answer_xml=sub.answer_xml,
                scores=parsed.scores, error=parsed.error, simulated=parsed.simulated, attention_passed=passed)
            result.new += int(new)
            result.updated += int(not new)
            result.invalid += int(parsed.scores is None)
            result.simulated += int(parsed.simulated)
            result.attention_failed += int(passed is False)
    # Every HIT was listed: what was submitted before ``started`` is in the ledger (status uses this
    # for HITs that expired before it, whose GetHIT counts cannot tell never-taken from submitted).
    if everything:
        ledger.set_meta(COLLECTED_THROUGH, repr(started))
    else:
        for b in selected:
            ledger.set_meta(collected_through_key(b), repr(started))
    if export_csv:
        from mturk_eval.analysis.batch_csv import write_batch_csv

        write_batch_csv(export_csv, batch_rows(cfg, ledger, None if everything else selected))
        result.exported = Path(export_csv)


def _mturk_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")


def batch_rows(cfg: ExperimentConfig, ledger: Ledger, batches: list[str] | None = None) -> list[dict]:
    """One batch-results CSV row per stored assignment (inputs per slot: ``Input.i{k}_<field>``); with
    ``batches``, only the assignments of those batches' HITs."""
    h_cfg = cfg.hit
    rows = []
    hits = {h.hit_id: h for h in ledger.hits() if h.hit_id}
    hit_rows = {r["hit_id"]: r for r in ledger.hit_status_rows() if r["hit_id"]}
    for a in ledger.assignments():
        h = hits.get(a.hit_id)
        if batches is not None and (h is None or h.batch not in batches):
            continue
        rec = ledger.assignment_record(a.assignment_id)
        hr = hit_rows.get(a.hit_id)
        row = {
            "HITId": a.hit_id, "HITTypeId": h.hit_type_id if h else "", "Title": h_cfg.title,
            "Description": h_cfg.description, "Keywords": h_cfg.keywords,
            "Reward": f"${h.reward if h else h_cfg.reward}",
            "CreationTime": _mturk_time(hr["created_at"]) if hr else "",
            "MaxAssignments": h.max_assignments if h else "", "RequesterAnnotation": h.annotation if h else "",
            "AssignmentDurationInSeconds": h_cfg.assignment_duration_s,
            "AutoApprovalDelayInSeconds": h_cfg.auto_approval_delay_s,
            "Expiration": _mturk_time(hr["expiration"]) if hr else "", "NumberOfSimilarHITs": "",
            "LifetimeInSeconds": h_cfg.lifetime_s, "AssignmentId": a.assignment_id, "WorkerId": a.worker_id,
            "AssignmentStatus": a.status, "AcceptTime": _mturk_time(rec["accept_time"]),
            "SubmitTime": _mturk_time(rec["submit_time"]), "AutoApprovalTime": "",
            "ApprovalTime": _mturk_time(rec["reviewed_at"]) if a.status == "Approved" else "",
            "RejectionTime": _mturk_time(rec["reviewed_at"]) if a.status == "Rejected" else "",
            "RequesterFeedback": rec["feedback"] or "",
            "WorkTimeInSeconds": "" if a.work_time_s is None else int(round(a.work_time_s)),
            "LifetimeApprovalRate": "", "Last30DaysApprovalRate": "", "Last7DaysApprovalRate": "",
        }
        for k, it in enumerate(ledger.hit_items(a.hit_id)):
            row[f"Input.i{k}_item_id"] = it["item_id"]
            row[f"Input.i{k}_persona"] = json.dumps(it["persona"], ensure_ascii=False)
            row[f"Input.i{k}_utterance"] = it["utterance"]
            row[f"Input.i{k}_response"] = it["response"]
            # Item fields and the attention check, so that `report --batch-csv` can map rows without the ledger.
            for f in ("eval_set", "method", "model", "persona_id"):
                row[f"Input.i{k}_{f}"] = it.get(f) or ""
            if it.get("attention_check"):
                row[f"Input.i{k}_attention_check"] = json.dumps(it["attention_check"], ensure_ascii=False)
        try:
            fields = parse_fields(rec["answer_xml"])
        except AnswerError:
            fields = {}
        for name, value in fields.items():
            row[f"Answer.{name}"] = value
        rows.append(row)
    return rows

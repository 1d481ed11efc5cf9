"""``collect``: fetch every submission of the batch's tasks, validate its answer fields and store it in
the ledger (idempotent: a submission is upserted by id, its answers replaced). The platform reads its
own answer format (MTurk: QuestionFormAnswers XML) into ``{field: value}``; the fields are read here.

Optionally writes the ledger as an MTurk batch-results CSV (:mod:`mturk_eval.platforms.mturk.batch_export`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mturk_eval.actions.common import describe_batches, experiment_lock, open_ledger, platform_for, select_batches
from mturk_eval.actions.participants import is_deleted
from mturk_eval.config import ExperimentConfig
from mturk_eval.ledger import Ledger
from mturk_eval.platforms.crowd_platform import CrowdPlatform
from mturk_eval.privacy import Pseudonymiser
from mturk_eval.tasks.answers import attention_passed, read_answer

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
    deleted: int = 0  # submissions skipped: deleted at the participant's request (participants delete)
    free_text_columns: list[str] = field(default_factory=list)  # in the export: possibly identifying
    batches: str = ""  # which batches were collected ("batches: ... (all)")


def collect(cfg: ExperimentConfig, *, target: str = "sandbox", endpoint_url: str | None = None,
            platform: CrowdPlatform | None = None, export_csv: str | Path | None = None,
            progress: bool = True, batches: tuple[str, ...] = (), platform_name: str | None = None) -> CollectResult:
    """Collect the HITs of ``batches`` (default: every batch of the ledger); ``export_csv`` then holds
    the assignments of those batches."""
    result = CollectResult()
    plat = platform_for(cfg, platform, target=target, endpoint_url=endpoint_url, platform_name=platform_name)
    # The ledger is opened (and checked) before the lock is taken: a refused run leaves no lock file.
    with open_ledger(cfg, target, create=False, platform=plat) as ledger:
        known = ledger.batches()
        selected = select_batches(ledger, batches)
        result.batches = describe_batches(selected, known)
        with experiment_lock(cfg, target, "collect"):
            _collect(cfg, ledger, plat, result, selected,
                     everything=selected == known, export_csv=export_csv, progress=progress)
    return result


def _collect(cfg: ExperimentConfig, ledger: Ledger, plat: CrowdPlatform, result: CollectResult,
             selected: list[str], *, everything: bool, export_csv, progress: bool) -> None:
    started = time.time()
    # The export leaves the machine: WorkerId and AssignmentId become pseudonyms (docs/participants.md).
    # The key is checked first, so a refused export (key missing) collects nothing either.
    pseudonyms = Pseudonymiser.for_run(cfg.run_dir) if export_csv else None
    hits = [h for h in ledger.tasks() if h.task_id and h.state != "deleted" and h.batch in selected]
    for h in tqdm(hits, desc="collect", unit=plat.vocabulary.task, disable=None if progress else True):
        items = ledger.task_items(h.task_id)
        result.hits += 1
        for sub in plat.list_submissions(h.task_id):
            if is_deleted(ledger, sub.rater_id, sub.submission_id):
                result.deleted += 1  # deleted at the participant's request: never stored again
                continue
            parsed = read_answer(sub.fields, len(items), sub.error)
            passed = attention_passed(parsed.scores, items)
            new = ledger.store_submission(
                submission_id=sub.submission_id, task_id=h.task_id, rater_id=sub.rater_id, status=sub.status,
                accept_time=sub.accept_time, submit_time=sub.submit_time, raw_answer=sub.raw, fields=sub.fields,
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
        # MTurk's batch-results layout for every platform: the one export format, and what
        # `report --batch-csv` reads.
        from mturk_eval.platforms.mturk.batch_export import export_batch_csv

        result.free_text_columns = export_batch_csv(cfg, ledger, export_csv, pseudonyms,
                                                    None if everything else selected)
        result.exported = Path(export_csv)

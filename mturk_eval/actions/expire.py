"""``expire``: stop the batch's tasks from being worked on, or with ``delete`` remove those the platform
allows (:attr:`TaskState.deletable`; MTurk: Reviewable, nothing in progress), whose submissions are all
reviewed and all collected in the ledger (deleting a task loses the answers not fetched)."""
from __future__ import annotations

from dataclasses import dataclass

from mturk_eval.actions.common import experiment_lock, open_ledger, platform_for, select_batches
from mturk_eval.config import ExperimentConfig
from mturk_eval.platforms.crowd_platform import SUBMITTED, CrowdPlatform


@dataclass
class ExpireOutcome:
    task_id: str
    action: str  # expired | deleted | skipped
    detail: str = ""


def expire(cfg: ExperimentConfig, *, target: str = "sandbox", endpoint_url: str | None = None, delete: bool = False,
           dry_run: bool = False, platform: CrowdPlatform | None = None,
           batches: tuple[str, ...] = (), platform_name: str | None = None) -> list[ExpireOutcome]:
    """Expire (or delete) the HITs of ``batches`` (default: every batch of the ledger)."""
    out: list[ExpireOutcome] = []
    plat = platform_for(cfg, platform, target=target, endpoint_url=endpoint_url, platform_name=platform_name)
    # The ledger is opened (and checked) before the lock is taken: a refused run leaves no lock file.
    with open_ledger(cfg, target, create=False, platform=plat) as ledger:
        selected = set(select_batches(ledger, batches))
        with experiment_lock(cfg, target, "expire"):
            _expire(ledger, plat, selected, out, delete, dry_run)
    return out


def _expire(ledger, plat: CrowdPlatform, selected: set[str], out: list[ExpireOutcome], delete: bool,
            dry_run: bool) -> None:
    for h in ledger.tasks():
        if h.batch not in selected:
            continue
        if not h.task_id or h.state == "deleted":
            continue
        if not delete:
            if h.state == "expired":
                continue
            if not dry_run:
                plat.expire(h.task_id)
                ledger.set_task_state(h.task_id, "expired")
            out.append(ExpireOutcome(h.task_id, "expired"))
            continue
        st = plat.task_state(h.task_id)
        stored = ledger.submissions(h.task_id)
        undecided = [a.submission_id for a in stored if a.status == SUBMITTED]
        # Submissions the platform auto-approved but collect never fetched would be lost with the task.
        uncollected = st.completed - len(stored)
        if not st.deletable or st.pending or uncollected > 0 or undecided:
            w = plat.vocabulary
            why = (f"{w.task} is {st.status}" if not st.deletable and not st.pending else
                   f"{st.pending} {w.submissions} in progress" if st.pending else
                   f"{plat.title} has {st.completed} completed {w.submissions} but the ledger only {len(stored)}:"
                   f" run collect first, or their answers are lost with the {w.task}" if uncollected > 0 else
                   f"{len(undecided)} submitted {w.submissions} not yet approved or rejected (run review)")
            out.append(ExpireOutcome(h.task_id, "skipped", why))
            continue
        if not dry_run:
            plat.delete(h.task_id)
            ledger.set_task_state(h.task_id, "deleted")
        out.append(ExpireOutcome(h.task_id, "deleted"))

"""``expire``: stop the batch's HITs from being worked on (UpdateExpirationForHIT to a past date), or
with ``delete`` remove those MTurk allows (Reviewable, every assignment approved or rejected) and whose
completed assignments are all collected in the ledger (deleting a HIT loses the answers not fetched)."""
from __future__ import annotations

from dataclasses import dataclass

from mturk_eval.actions.common import experiment_lock, make_platform, open_ledger, select_batches
from mturk_eval.config import ExperimentConfig
from mturk_eval.platforms.crowd_platform import CrowdPlatform


@dataclass
class ExpireOutcome:
    hit_id: str
    action: str  # expired | deleted | skipped
    detail: str = ""


def expire(cfg: ExperimentConfig, *, target: str = "sandbox", endpoint_url: str | None = None, delete: bool = False,
           dry_run: bool = False, platform: CrowdPlatform | None = None,
           batches: tuple[str, ...] = ()) -> list[ExpireOutcome]:
    """Expire (or delete) the HITs of ``batches`` (default: every batch of the ledger)."""
    out: list[ExpireOutcome] = []
    # The ledger is opened (and checked) before the lock is taken: a refused run leaves no lock file.
    with open_ledger(cfg, target, create=False) as ledger:
        selected = set(select_batches(ledger, batches))
        with experiment_lock(cfg, target, "expire"):
            _expire(ledger, platform or make_platform(target, endpoint_url), selected, out, delete, dry_run)
    return out


def _expire(ledger, plat: CrowdPlatform, selected: set[str], out: list[ExpireOutcome], delete: bool,
            dry_run: bool) -> None:
    for h in ledger.hits():
        if h.batch not in selected:
            continue
        if not h.hit_id or h.state == "deleted":
            continue
        if not delete:
            if h.state == "expired":
                continue
            if not dry_run:
                plat.expire(h.hit_id)
                ledger.set_hit_state(h.hit_id, "expired")
            out.append(ExpireOutcome(h.hit_id, "expired"))
            continue
        st = plat.task_state(h.hit_id)
        stored = ledger.assignments(h.hit_id)
        undecided = [a.assignment_id for a in stored if a.status == "Submitted"]
        # Assignments MTurk auto-approved but collect never fetched would be lost with the HIT.
        uncollected = st.completed - len(stored)
        if st.status != "Reviewable" or st.pending or uncollected > 0 or undecided:
            why = (f"HIT is {st.status}" if st.status != "Reviewable" else
                   f"{st.pending} assignments in progress" if st.pending else
                   f"MTurk has {st.completed} completed assignments but the ledger only {len(stored)}:"
                   " run collect first, or their answers are lost with the HIT" if uncollected > 0 else
                   f"{len(undecided)} submitted assignments not yet approved or rejected (run review)")
            out.append(ExpireOutcome(h.hit_id, "skipped", why))
            continue
        if not dry_run:
            plat.delete(h.hit_id)
            ledger.set_hit_state(h.hit_id, "deleted")
        out.append(ExpireOutcome(h.hit_id, "deleted"))

"""``status``: the batch's HITs and assignments by state, cost so far and estimated time left.

With a platform it refreshes each HIT (GetHIT) first; ``offline`` reads the ledger only.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from mturk_eval.actions.common import make_platform, open_ledger
from mturk_eval.config import ExperimentConfig
from mturk_eval.mturk import fees, quals
from mturk_eval.platform import CrowdPlatform


@dataclass
class StatusReport:
    target: str
    hits_by_state: dict[str, int] = field(default_factory=dict)        # ledger: pending/created/expired/deleted
    hits_by_status: dict[str, int] = field(default_factory=dict)       # MTurk HITStatus
    assignments_total: int = 0                                         # max assignments of created HITs
    assignments_by_status: dict[str, int] = field(default_factory=dict)  # stored: Submitted/Approved/Rejected
    in_progress: int = 0                                               # accepted, not yet submitted
    available: int = 0
    invalid: int = 0
    attention_failed: int = 0
    cost_so_far: Decimal = Decimal("0.00")     # approved assignments + paid bonuses, with fees
    cost_committed: Decimal = Decimal("0.00")  # everything the created HITs can still cost
    eta_s: float | None = None

    def format(self) -> str:
        def counts(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

        done = sum(self.assignments_by_status.values())
        eta = "unknown" if self.eta_s is None else ("done" if self.eta_s == 0 else _duration(self.eta_s))
        return "\n".join([
            f"target: {self.target}",
            f"HITs (ledger): {counts(self.hits_by_state)}",
            f"HITs (MTurk):  {counts(self.hits_by_status)}",
            f"assignments: {done} submitted of {self.assignments_total} ({counts(self.assignments_by_status)});"
            f" {self.in_progress} in progress, {self.available} available",
            f"invalid answers: {self.invalid}; failed attention checks: {self.attention_failed}",
            f"cost so far: ${self.cost_so_far} (approved work and bonuses, with fees);"
            f" at most ${self.cost_committed} when every assignment is approved",
            f"estimated time left: {eta}",
        ])


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def status(cfg: ExperimentConfig, *, target: str = "sandbox", endpoint_url: str | None = None,
           platform: CrowdPlatform | None = None, offline: bool = False, now: float | None = None) -> StatusReport:
    now = time.time() if now is None else now
    with open_ledger(cfg, target, create=False) as ledger:
        if not offline:
            plat = platform or make_platform(target, endpoint_url)
            for h in ledger.hits():
                if h.hit_id and h.state != "deleted":
                    st = plat.task_state(h.hit_id)
                    ledger.record_hit_status(h.hit_id, st.status, st.pending, st.available, st.completed, st.expiration)
        rows = ledger.hit_status_rows()
        rep = StatusReport(target=target)
        rep.hits_by_state = dict(Counter(r["state"] for r in rows))
        rep.hits_by_status = dict(Counter(r["hit_status"] for r in rows if r["hit_status"]))
        created = [r for r in rows if r["hit_id"]]
        rep.assignments_total = sum(r["max_assignments"] for r in created)
        rep.in_progress = sum(r["assignments_pending"] or 0 for r in created)
        rep.available = sum(r["assignments_available"] or 0 for r in created
                            if (r["expiration"] or now + 1) > now and r["state"] == "created")
        assignments = ledger.assignments()
        rep.assignments_by_status = dict(Counter(a.status for a in assignments))
        rep.invalid = sum(1 for a in assignments if not a.valid)
        rep.attention_failed = sum(1 for a in assignments if a.attention_passed is False)

        masters = quals.uses_masters(cfg.hit.qualifications)
        reward_of = {r["hit_id"]: (r["reward"], r["max_assignments"]) for r in created}
        for a in assignments:
            reward, n = reward_of.get(a.hit_id, (cfg.hit.reward, cfg.hit.assignments_per_hit))
            each = fees.money(reward) + fees.assignment_fee(reward, n, masters)
            if a.status == "Approved":
                rep.cost_so_far += each
        for b in ledger.bonuses():
            if b["state"] == "paid":
                rep.cost_so_far += fees.money(b["amount"]) + fees.bonus_fee(b["amount"])
        rep.cost_committed = rep.cost_so_far
        for r in created:
            each = fees.money(r["reward"]) + fees.assignment_fee(r["reward"], r["max_assignments"], masters)
            not_approved = r["max_assignments"] - sum(1 for a in assignments if a.hit_id == r["hit_id"]
                                                      and a.status in ("Approved", "Rejected"))
            if r["state"] in ("expired", "deleted"):
                not_approved = sum(1 for a in assignments if a.hit_id == r["hit_id"] and a.status == "Submitted")
            rep.cost_committed += each * max(0, not_approved)

        rep.eta_s = _eta(created, assignments, rep.assignments_total, now)
        return rep


def _eta(created, assignments, total: int, now: float) -> float | None:
    """Remaining assignments / submission rate since the first HIT went up, capped at the latest expiry."""
    done = len(assignments)
    if total and done >= total:
        return 0.0
    starts = [r["created_at"] for r in created if r["created_at"]]
    if not starts or done == 0:
        return None
    elapsed = max(1.0, now - min(starts))
    eta = (total - done) / (done / elapsed)
    expiries = [r["expiration"] for r in created if r["expiration"]]
    if expiries:
        eta = min(eta, max(0.0, max(expiries) - now))
    return eta

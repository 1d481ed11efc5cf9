"""``status``: the batch's HITs and assignments by state, cost so far and estimated time left.

With a platform it refreshes each HIT (GetHIT) first; ``offline`` reads the ledger only.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from mturk_eval.actions.collect import collected_through
from mturk_eval.actions.common import describe_batches, make_platform, open_ledger, select_batches
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.platforms.mturk import fees, quals
from mturk_eval.platforms.mturk.retry import EndpointUnreachable
from mturk_eval.platforms.crowd_platform import CrowdPlatform


@dataclass
class StatusReport:
    target: str
    hits_by_state: dict[str, int] = field(default_factory=dict)        # ledger: pending/created/expired/deleted
    hits_by_status: dict[str, int] = field(default_factory=dict)       # MTurk HITStatus; deleted HITs: "deleted"
    assignments_total: int = 0                                         # max assignments of created HITs
    assignments_by_status: dict[str, int] = field(default_factory=dict)  # collected: Submitted/Approved/Rejected
    in_progress: int = 0                                               # accepted, not yet submitted
    available: int = 0
    # MTurk's side (GetHIT: NumberOfAssignmentsPending/Available/Completed), as a range: an expired HIT
    # does not say how many of its unfinished assignments were never taken.
    mturk_known: bool = False          # every HIT with an id has been asked about at least once
    mturk_finished: tuple[int, int] = (0, 0)   # submitted, approved or rejected on MTurk (low, high)
    uncollected: tuple[int, int] = (0, 0)      # of those, not yet in the ledger (low, high)
    offline: bool = False
    asked_at: float | None = None      # oldest GetHIT answer the MTurk counts rest on
    invalid: int = 0
    attention_failed: int = 0
    cost_so_far: Decimal = Decimal("0.00")     # approved assignments + paid bonuses, with fees
    cost_committed: Decimal = Decimal("0.00")  # everything the created HITs can still cost
    eta_s: float | None = None
    batches: str = ""                  # which batches are counted ("batches: main, b2 (all)")

    def format(self) -> str:
        def counts(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

        def span(r: tuple[int, int]) -> str:
            return str(r[0]) if r[0] == r[1] else f"{r[0]} to {r[1]}"

        collected = sum(self.assignments_by_status.values())
        eta = "unknown" if self.eta_s is None else ("done" if self.eta_s == 0 else _duration(self.eta_s))
        if not self.mturk_known:
            on_mturk = "not asked yet (run status without --offline)"
        else:
            on_mturk = (f"{span(self.mturk_finished)} of {self.assignments_total} finished (submitted, approved or"
                        f" rejected); {self.in_progress} in progress, {self.available} available")
            if self.mturk_finished[0] != self.mturk_finished[1]:
                on_mturk += " (an expired HIT does not say how many of its assignments were never taken)"
        asked = ""
        if self.offline and self.asked_at is not None:
            asked = " (as last asked, " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.asked_at)) + ")"
        col = f"assignments collected: {collected} ({counts(self.assignments_by_status)})"
        if self.uncollected[1] > 0:
            lo, hi = self.uncollected
            col += (f"; {span(self.uncollected)} finished on MTurk not collected yet" if lo else
                    f"; up to {hi} finished on MTurk may not be collected yet") + ": run `mturk-eval collect`"
        return "\n".join([
            f"target: {self.target}" + (f"; {self.batches}" if self.batches else ""),
            f"HITs (ledger): {counts(self.hits_by_state)}",
            f"HITs (MTurk):  {counts(self.hits_by_status)}",
            f"assignments on MTurk{asked}: {on_mturk}",
            col,
            f"invalid answers: {self.invalid}; failed attention checks: {self.attention_failed}",
            f"cost so far: ${self.cost_so_far} (approved work and bonuses, with fees);"
            f" at most ${self.cost_committed} when every assignment is approved",
            f"estimated time left: {eta}",
        ])


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def status(cfg: ExperimentConfig, *, target: str = "sandbox", endpoint_url: str | None = None,
           platform: CrowdPlatform | None = None, offline: bool = False, now: float | None = None,
           batches: tuple[str, ...] = ()) -> StatusReport:
    """The report for the HITs of ``batches`` (default: every batch of the ledger)."""
    now = time.time() if now is None else now
    with open_ledger(cfg, target, create=False) as ledger:
        known = ledger.batches()
        selected = select_batches(ledger, batches)
        if not offline:
            plat = platform or make_platform(target, endpoint_url)
            try:
                for h in ledger.hits():
                    if h.hit_id and h.state != "deleted" and h.batch in selected:
                        st = plat.task_state(h.hit_id)
                        ledger.record_hit_status(h.hit_id, st.status, st.pending, st.available, st.completed,
                                                 st.expiration)
            except EndpointUnreachable as exc:
                raise UserError(f"{exc.message}; `mturk-eval status --offline` shows what the ledger knows") from None
        rows = [r for r in ledger.hit_status_rows() if r["batch"] in selected]
        rep = StatusReport(target=target, offline=offline, batches=describe_batches(selected, known))
        rep.hits_by_state = dict(Counter(r["state"] for r in rows))
        created = [r for r in rows if r["hit_id"]]
        # A deleted HIT keeps the status last seen before it was deleted: count it as deleted, once.
        rep.hits_by_status = dict(Counter("deleted" if r["state"] == "deleted" else r["hit_status"]
                                          for r in created if r["state"] == "deleted" or r["hit_status"]))
        on_mturk = [r for r in created if r["state"] != "deleted"]
        rep.assignments_total = sum(r["max_assignments"] for r in created)
        rep.in_progress = sum(r["assignments_pending"] or 0 for r in on_mturk)
        rep.available = sum(r["assignments_available"] or 0 for r in on_mturk
                            if (r["expiration"] or now + 1) > now and r["state"] == "created")
        ids = {r["hit_id"] for r in created}
        assignments = [a for a in ledger.assignments() if a.hit_id in ids]
        rep.assignments_by_status = dict(Counter(a.status for a in assignments))
        through = {b: collected_through(ledger, b) for b in selected}
        done = _mturk_counts(rep, created, Counter(a.hit_id for a in assignments), now, through)
        rep.invalid = sum(1 for a in assignments if not a.valid)
        rep.attention_failed = sum(1 for a in assignments if a.attention_passed is False)

        masters = quals.uses_masters(cfg.hit.qualifications)
        reward_of = {r["hit_id"]: (r["reward"], r["max_assignments"]) for r in created}
        for a in assignments:
            reward, n = reward_of.get(a.hit_id, (cfg.hit.reward, cfg.hit.assignments_per_hit))
            each = fees.money(reward) + fees.assignment_fee(reward, n, masters)
            if a.status == "Approved":
                rep.cost_so_far += each
        aids = {a.assignment_id for a in assignments}
        for b in ledger.bonuses():
            if b["state"] == "paid" and b["assignment_id"] in aids:
                rep.cost_so_far += fees.money(b["amount"]) + fees.bonus_fee(b["amount"])
        rep.cost_committed = rep.cost_so_far
        for r in created:
            each = fees.money(r["reward"]) + fees.assignment_fee(r["reward"], r["max_assignments"], masters)
            not_approved = r["max_assignments"] - sum(1 for a in assignments if a.hit_id == r["hit_id"]
                                                      and a.status in ("Approved", "Rejected"))
            if r["state"] in ("expired", "deleted"):
                not_approved = sum(1 for a in assignments if a.hit_id == r["hit_id"] and a.status == "Submitted")
            rep.cost_committed += each * max(0, not_approved)

        rep.eta_s = _eta(created, done, rep.assignments_total, now)
        return rep


def _mturk_counts(rep: StatusReport, created, collected: Counter, now: float,
                  collected_through: dict[str, float] | None = None) -> int:
    """Fill in the MTurk-side counts of ``rep`` from the HITs' last GetHIT answers (NumberOfAssignments
    Pending/Available/Completed, where Completed means approved or rejected) beside the assignments the
    ledger has collected; return how many assignments are finished as far as anyone knows (for the ETA).
    ``collected_through``: per batch, when it was last collected completely."""
    collected_through = collected_through or {}
    fin_lo = fin_hi = unc_lo = unc_hi = done = 0
    known = True
    asked = []
    for r in created:
        n_col = collected.get(r["hit_id"], 0)
        if r["state"] == "deleted":  # deleted only once every assignment was reviewed: nothing more comes
            lo = hi = max(n_col, r["assignments_completed"] or 0)
        elif r["hit_status"] is None:  # never asked (status --offline before any status)
            known = False
            lo = hi = n_col
        else:
            asked.append(r["refreshed_at"] or now)
            pending, available = r["assignments_pending"] or 0, r["assignments_available"] or 0
            completed = r["assignments_completed"] or 0
            open_ = r["state"] == "created" and (r["expiration"] is None
                                                 or r["expiration"] > (r["refreshed_at"] or now))
            if open_ or available:
                lo = hi = max(n_col, r["max_assignments"] - pending - available)
            elif r["expiration"] is not None and r["expiration"] <= collected_through.get(r["batch"], 0.0):
                lo = hi = max(n_col, completed)  # expired before a complete collect: all was collected
            else:  # expired: its never-taken assignments are not "available" any more
                lo, hi = max(n_col, completed), max(n_col, completed, r["max_assignments"] - pending)
        fin_lo, fin_hi = fin_lo + lo, fin_hi + hi
        unc_lo, unc_hi = unc_lo + max(0, lo - n_col), unc_hi + max(0, hi - n_col)
        done += lo
    rep.mturk_known = known
    rep.mturk_finished, rep.uncollected = (fin_lo, fin_hi), (unc_lo, unc_hi)
    rep.asked_at = min(asked) if asked else None
    return done


def _eta(created, done: int, total: int, now: float) -> float | None:
    """Remaining assignments / submission rate since the first HIT went up, capped at the latest expiry."""
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

"""``publish``: responses.jsonl -> HITs on the platform, exactly once, recorded in the ledger.

Order of work (each step safe to interrupt, even by SIGKILL):
1. read and validate the responses (warn about empty ones); plan HITs for items not yet planned in
   this batch (attention checks mixed in), render every question (so a 64 KB overflow stops before
   anything is written);
2. show the plan and the cost (rewards + MTurk fees) of every HIT not yet created; refuse empty
   responses about to be published unless ``allow_empty``, a cost above ``--max-cost`` or the account
   balance; ``--live`` needs ``--yes`` or a confirmation (refused after the cost is shown when not
   interactive). Steps 1-2 only read the ledger (if there is one), so a refused run takes no lock and
   creates no file;
3. take the experiment's lock, create the ledger if needed, check the plan against it again (another
   run may have changed the batch meanwhile), then commit the plan (state ``pending`` with each HIT's
   deterministic UniqueRequestToken);
4. create the HIT type once; recover HITs left ``pending`` by a crash more than ``RECOVER_AFTER_S`` ago
   by their RequesterAnnotation (MTurk forgets request tokens after 24 h);
5. CreateHITWithHITType for every pending HIT, ``publish_concurrency`` at a time within ``publish_rate``
   calls per second; each HIT id is committed as soon as it returns (``HitAlreadyExists`` -> the
   existing HIT's id).
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from mturk_eval.tasks import builder as builder
from mturk_eval.actions.common import experiment_lock, make_platform, open_ledger
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.ledger import Ledger, ledger_path
from mturk_eval.platforms.mturk import fees, quals
from mturk_eval.platforms.mturk.client import submit_url_for
from mturk_eval.platforms.mturk.retry import EndpointUnreachable
from mturk_eval.platforms.crowd_platform import CrowdPlatform, TaskSpec, TaskType

# Pending HITs first tried longer ago than this are looked up by annotation before their token is
# reused: MTurk remembers a UniqueRequestToken for 24 hours only.
RECOVER_AFTER_S = 12 * 3600


@dataclass
class PublishResult:
    target: str
    ledger: Path
    cost: fees.CostEstimate
    planned: int = 0          # HITs added to the plan by this run
    created: int = 0          # HITs created by this run
    recovered: int = 0        # HITs found already existing (resumed after a crash)
    already: int = 0          # HITs created by earlier runs
    hit_type_id: str | None = None
    preview_url: str | None = None
    dry_run: bool = False
    messages: list[str] = field(default_factory=list)


class RateLimiter:
    """At most ``rate`` acquisitions per second across threads (evenly spaced start times)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


def task_type(cfg: ExperimentConfig, target: str) -> TaskType:
    h = cfg.hit
    return TaskType(title=h.title, description=h.description, keywords=h.keywords, reward=h.reward,
                    assignment_duration_s=h.assignment_duration_s, auto_approval_delay_s=h.auto_approval_delay_s,
                    qualifications=tuple(quals.build_requirements(h.qualifications, target)))


def _check_unchanged(ledger: Ledger, items: list[dict[str, Any]], path: str | Path) -> None:
    known = ledger.known_item_ids()
    for it in items:
        if it["item_id"] in known:
            stored = ledger.item(it["item_id"])
            stored.pop("attention_check", None)
            if json.dumps(stored, sort_keys=True) != json.dumps(it, sort_keys=True):
                raise UserError(f"{path}: item_id: {it['item_id']!r} differs from the item already in the ledger"
                                f" {ledger.path}; give changed responses new item ids")


def _questions(ledger_items: Callable[[list[str]], list[dict[str, Any]]], hit_plans: list[dict[str, Any]],
               cfg: ExperimentConfig, submit_url: str) -> dict[str, str]:
    return {h["hit_key"]: builder.build_question(ledger_items(h["item_ids"]), cfg, submit_url) for h in hit_plans}


@dataclass
class _Plan:
    """What a publish run would do, worked out from the ledger's state (``state``) without writing."""
    new_hits: list[dict[str, Any]]
    by_id: dict[str, dict[str, Any]]
    old_pending: list
    questions: dict[str, str]
    cost: fees.CostEstimate
    already: int
    n_attn: int
    state: tuple

    @property
    def to_create(self) -> int:
        return len(self.old_pending) + len(self.new_hits)


def _batch_state(ledger: Ledger, batch: str) -> tuple:
    """Everything of the ledger a batch's plan depends on (item contents never change once stored)."""
    return _batch_state_of(ledger.hits(batch=batch))


def _batch_state_of(batch_hits: list) -> tuple:
    return tuple((h.hit_key, h.state, tuple(h.item_ids)) for h in batch_hits)


def _check_pending_settings(cfg: ExperimentConfig, old_pending: list, batch: str) -> None:
    """HITs left ``pending`` are created as the ledger planned them (MaxAssignments, reward); refuse to
    resume them under a config that changed either, so the HIT type, the cost and the ledger agree."""
    for h in old_pending:
        if h.max_assignments != cfg.hit.assignments_per_hit:
            what = (f"hit.assignments_per_hit is {cfg.hit.assignments_per_hit} but {len(old_pending)} HITs left"
                    f" pending were planned with {h.max_assignments}")
            restore = f"hit.assignments_per_hit: {h.max_assignments}"
        elif fees.money(h.reward) != fees.money(cfg.hit.reward):
            what = (f"hit.reward is {fees.money(cfg.hit.reward)} but {len(old_pending)} HITs left pending were"
                    f" planned with {fees.money(h.reward)}")
            restore = f"hit.reward: {h.reward}"
        else:
            continue
        raise UserError(f"batch {batch}: {what}; set {restore} again to resume them, or publish the changed"
                        " setting under a new --batch; nothing was written or published")


def _make_plan(cfg: ExperimentConfig, ledger: Ledger, items: list[dict[str, Any]], responses_path: str | Path, *,
               target: str, batch: str, submit_url: str) -> _Plan:
    """Steps 1-2 of the module docstring against ``ledger``; reads it and writes nothing."""
    _check_unchanged(ledger, items, responses_path)
    batch_hits = ledger.hits(batch=batch)
    planned_ids = {iid for h in batch_hits for iid in h.item_ids}
    new_items = [it for it in items if it["item_id"] not in planned_ids]
    n_attn_before = sum(1 for h in batch_hits for iid in h.item_ids if iid.startswith("attn."))
    attention = builder.make_attention_checks(new_items, cfg.hit.attention_check_rate, cfg.seed, cfg.language,
                                              f"{batch}.{n_attn_before}") if new_items else []
    new_hits = builder.plan_hits(
        new_items + attention, experiment=cfg.name, target=target, batch=batch, seed=cfg.seed,
        items_per_hit=cfg.hit.items_per_hit, max_assignments=cfg.hit.assignments_per_hit,
        reward=cfg.hit.reward, start_index=len(batch_hits))
    by_id = {it["item_id"]: it for it in new_items + attention}
    # Render now: a question over 64 KB stops the run before anything is written or spent.
    new_questions = _questions(lambda ids: [by_id[i] for i in ids], new_hits, cfg, submit_url)
    old_pending = [h for h in batch_hits if h.state == "pending"]
    _check_pending_settings(cfg, old_pending, batch)
    old_questions = _questions(lambda ids: [ledger.item(i) for i in ids],
                               [{"hit_key": h.hit_key, "item_ids": h.item_ids} for h in old_pending],
                               cfg, submit_url)
    # Pending HITs are priced from their ledger rows (what CreateHIT will send); the check above makes
    # them agree with the config, so one estimate covers the run.
    masters = quals.uses_masters(cfg.hit.qualifications)
    rows = [(h.max_assignments, h.reward) for h in old_pending]
    rows += [(h["max_assignments"], h["reward"]) for h in new_hits]
    kinds = set((n, fees.money(r)) for n, r in rows)
    if len(kinds) > 1:  # cannot happen after _check_pending_settings; never under-price a run
        raise UserError(f"batch {batch}: HITs with different rewards or assignment counts cannot be priced"
                        " together; publish under a new --batch")
    n_asg, reward = next(iter(kinds)) if kinds else (cfg.hit.assignments_per_hit, fees.money(cfg.hit.reward))
    cost = fees.estimate(len(rows), n_asg, str(reward), masters)
    n_attn = sum(1 for h in new_hits for i in h["item_ids"] if i in by_id and by_id[i].get("attention_check"))
    return _Plan(new_hits=new_hits, by_id=by_id, old_pending=old_pending,
                 questions={**old_questions, **new_questions}, cost=cost,
                 already=len([h for h in batch_hits if h.state != "pending"]), n_attn=n_attn,
                 state=_batch_state_of(batch_hits))


def publish(cfg: ExperimentConfig, responses_path: str | Path, *, target: str = "sandbox",
            endpoint_url: str | None = None, batch: str = "main", yes: bool = False,
            max_cost: float | None = None, dry_run: bool = False,
            confirm: Callable[[str], bool] | None = None, echo: Callable[[str], None] = print,
            platform: CrowdPlatform | None = None, progress: bool = True, allow_empty: bool = False,
            interactive: bool = True) -> PublishResult:
    """Publish the responses' items (see the module docstring). ``confirm`` asks the user (live only);
    ``interactive=False`` (no terminal) refuses ``--live`` without ``yes`` once the plan and cost are
    shown, before the platform is contacted. Empty responses new to this batch are refused unless
    ``allow_empty``.

    Every check (responses, questions, cost, balance, confirmation) runs before the experiment's lock
    is taken or its ledger created, so a refused run leaves no file behind; under the lock the plan is
    checked against the ledger again (another run may have changed it meanwhile)."""
    builder.check_batch(batch)
    items = builder.load_responses(responses_path)
    empty = builder.empty_responses(items)
    if max_cost is None:
        max_cost = cfg.hit.max_cost
    settings = task_type(cfg, target)
    submit_url = platform.submit_url if platform else submit_url_for(target, endpoint_url)
    path = ledger_path(cfg, target)
    # Steps 1-2 read the ledger if there is one and create nothing (no lock, no file).
    with Ledger.open(path if path.exists() else ":memory:") as ledger:
        if path.exists():
            ledger.check_bound(cfg.name, target)
        plan = _make_plan(cfg, ledger, items, responses_path, target=target, batch=batch, submit_url=submit_url)
        cost, to_create = plan.cost, plan.to_create
        result = PublishResult(target=target, ledger=path, cost=cost, already=plan.already, dry_run=dry_run)
        if empty:
            echo(f"warning: {builder.describe_empty(empty, len(items), responses_path)}"
                 " (workers would rate a blank reply)")
        echo(f"target: {target}{' (' + endpoint_url + ')' if endpoint_url else ''}; batch {batch};"
             f" {len(items)} items in {responses_path}; {len(plan.new_hits)} new HITs planned"
             f" ({plan.n_attn} attention checks), {len(plan.old_pending)} left pending,"
             f" {plan.already} already created")
        echo(f"cost of this run: {cost.describe()}")
        if to_create == 0:
            echo("nothing to publish: every item of this batch already has its HIT")
            if platform is not None:
                result.preview_url = _preview(ledger, platform, batch)
            return result
    new_empty = [i for i in empty if i in plan.by_id]
    if new_empty and not allow_empty and not dry_run:
        raise UserError(f"{builder.describe_empty(new_empty, len(items), responses_path)}; workers would rate a"
                        " blank reply: regenerate or remove them, or give --allow-empty to publish them anyway;"
                        " nothing was written or published")
    if max_cost is not None and cost.total > fees.money(max_cost):
        raise UserError(f"--max-cost: this run costs ${cost.total}, above the limit ${fees.money(max_cost)};"
                        " raise the limit or publish fewer items")
    if dry_run:
        if new_empty and not allow_empty:
            echo(f"publish will refuse the {len(new_empty)} empty responses unless given --allow-empty")
        echo("dry run: nothing was written or published")
        return result
    if target == "live" and not yes and not interactive:
        raise UserError("--live: not running interactively, so give --yes to confirm spending real money;"
                        " nothing was written or published")
    plat = platform or make_platform(target, endpoint_url, cfg.hit.publish_concurrency)
    balance = plat.balance()
    if balance is not None:
        echo(f"account balance: ${balance}")
        if balance < cost.total:
            raise UserError(f"account balance ${balance} is below this run's cost ${cost.total};"
                            " add funds or publish fewer items")
    if target == "live" and not yes:
        if confirm is None or not confirm(f"Publish {to_create} HITs on LIVE MTurk for ${cost.total}?"):
            raise UserError("live publishing not confirmed: nothing was published (use --yes to skip the question)")

    with experiment_lock(cfg, target, "publish"), open_ledger(cfg, target) as ledger:
        if _batch_state(ledger, batch) == plan.state:
            _check_unchanged(ledger, items, responses_path)  # another batch may have stored these ids meanwhile
        else:
            # Another run published this batch between the checks above and the lock: plan again.
            plan = _make_plan(cfg, ledger, items, responses_path, target=target, batch=batch, submit_url=submit_url)
            if plan.cost.total > cost.total:
                raise UserError(f"{ledger.path}: batch {batch} changed while this run was checking it (another"
                                " publish?); run publish again")
            if plan.to_create == 0:
                echo("nothing to publish: every item of this batch already has its HIT")
                result.preview_url = _preview(ledger, plat, batch)
                return result
            result.cost, result.already = plan.cost, plan.already

        # Step 3: the plan is committed before any CreateHIT call.
        if plan.new_hits:
            ledger.add_plan(list(plan.by_id.values()), plan.new_hits)
            result.planned = len(plan.new_hits)

        # Step 4: one HIT type for the batch.
        type_id = ledger.hit_type_for(settings.as_dict())
        if type_id is None:
            type_id = plat.create_task_type(settings)
            ledger.record_hit_type(type_id, settings.as_dict())
        result.hit_type_id = type_id

        pending = ledger.hits(state="pending", batch=batch)
        stale = {h.annotation: h for h in pending
                 if h.first_attempt_at is not None and time.time() - h.first_attempt_at > RECOVER_AFTER_S}
        if stale:
            for ann, pub in plat.find_by_annotation(set(stale)).items():
                ledger.record_created(stale[ann].hit_key, pub.task_id, pub.type_id, pub.group_id,
                                      expiration=pub.expiration)
                result.recovered += 1
            pending = ledger.hits(state="pending", batch=batch)

        _create_all(cfg, ledger, plat, pending, plan.questions, type_id, result, progress)
        result.preview_url = _preview(ledger, plat, batch)
        if result.preview_url:
            echo(f"workers see the HITs at {result.preview_url}")
        return result


def _preview(ledger: Ledger, plat: CrowdPlatform, batch: str) -> str | None:
    groups = [h.hit_group_id for h in ledger.hits(batch=batch) if h.hit_group_id]
    return plat.preview_url(groups[0]) if groups else None


def _create_all(cfg: ExperimentConfig, ledger: Ledger, plat: CrowdPlatform, pending: list, questions: dict[str, str],
                type_id: str, result: PublishResult, progress: bool) -> None:
    """CreateHIT for each pending HIT: worker threads call the platform, this thread writes the ledger."""
    limiter = RateLimiter(cfg.hit.publish_rate)

    def create(spec: TaskSpec):
        limiter.acquire()
        return plat.publish(spec)

    failures: list[tuple[str, BaseException]] = []
    queue = list(pending)
    bar = tqdm(total=len(pending), desc="publish", unit="HIT", disable=None if progress else True)
    with ThreadPoolExecutor(max_workers=max(1, cfg.hit.publish_concurrency)) as pool:
        running: dict[Future, Any] = {}
        while queue or running:
            while queue and not failures and len(running) < max(1, cfg.hit.publish_concurrency):
                h = queue.pop(0)
                ledger.mark_attempt(h.hit_key)
                spec = TaskSpec(type_id=type_id, question=questions[h.hit_key], max_assignments=h.max_assignments,
                                lifetime_s=cfg.hit.lifetime_s, request_token=h.request_token, annotation=h.annotation)
                running[pool.submit(create, spec)] = h
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                h = running.pop(fut)
                try:
                    pub = fut.result()
                except Exception as exc:  # reported below, after the calls in flight have finished
                    ledger.record_hit_error(h.hit_key, str(exc))
                    failures.append((h.hit_key, exc))
                    continue
                ledger.record_created(h.hit_key, pub.task_id, pub.type_id or type_id, pub.group_id,
                                      builder.question_sha(questions[h.hit_key]), pub.expiration)
                if pub.recovered:
                    result.recovered += 1
                else:
                    result.created += 1
                bar.update(1)
    bar.close()
    if failures:
        left = len(ledger.hits(state="pending"))
        key, exc = failures[0]
        if isinstance(exc, EndpointUnreachable):
            msg = exc.reason  # the call's outcome is unknown; the rerun's same token settles it
        else:
            msg = exc.message if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        raise UserError(f"publishing HIT {key} failed: {msg}; {result.created + result.recovered} HITs created"
                        f" this run, {left} still pending in {ledger.path}; fix the cause and run publish"
                        " again to resume (no HIT is created twice)")

"""The workflow verbs on Prolific: publish, status, collect, review, expire (``--platform prolific``).

One study per batch. ``publish`` puts the batch's tasks on the rating site (its store) and the study
on Prolific, in this order of checks and writes:

1. offline checks, nothing sent: the reward per estimated hour against the minimum, the site URL
   (https for a real study), the token (``PROLIFIC_TOKEN``, real API only), the responses and the plan;
2. reads only: workspace/project, the filter ids against ``GET /filters/``, the blocklist group, the
   study already made for this batch (places only grow), Prolific's cost calculator;
3. the cost, ours beside Prolific's, the higher one counted; ``--max-cost``, ``--dry-run``, and for a
   real study ``--yes`` or a confirmation;
4. with ``--sandbox`` and no ``--public-url``: the rating site started in the background (127.0.0.1, a free
   port, :func:`mturk_eval.emulators.background.ensure_site`); a real study needs the site's public URL;
5. under the experiment's lock: the site batch, the ledger plan, then
   :meth:`ProlificPlatform.ensure_study` (intent, lookup by internal_name, create, publish, grow).

Ledger: ``runs/<exp>/ledger.prolific.sqlite`` (real) or ``ledger.prolific-emulator.sqlite``; tasks are
the site's tasks, submissions are Prolific's (id = SESSION_ID), joined to the site's answers by it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.ledger import Ledger, SubmissionRow
from mturk_eval.platforms.prolific import contract, fees
from mturk_eval.platforms.prolific.client import EMULATOR_TOKEN, ProlificClient, token_from_env
from mturk_eval.platforms.prolific.prolific_platform import (ProlificPlatform, check_public_url, completion_codes,
                                                            hourly_check, internal_name, study_url)
from mturk_eval.platforms.prolific.records import Records
from mturk_eval.platforms.prolific.settings import ProlificSettings, check_rejection
from mturk_eval.site.store import SiteStore, site_store_path

from mturk_eval.tasks import builder

STATUS_TO_LEDGER = {"AWAITING REVIEW": "Submitted", "APPROVED": "Approved", "PARTIALLY APPROVED": "Approved",
                    "REJECTED": "Rejected"}
# Ended without rating: the participant's reservation on the site goes back to the pool (RESERVED and
# ACTIVE are left pending: they may still rate).
FREES_TASK = ("RETURNED", "TIMED-OUT", "SCREENED OUT")
# The ledger status of one of those that collect had already stored (see _withdraw).
WITHDRAWN = {"RETURNED": "Returned", "TIMED-OUT": "Timed-out", "SCREENED OUT": "Screened out"}
_MONEY = re.compile(r"[0-9]+(\.[0-9]{1,2})?")


def settings_of(cfg: ExperimentConfig) -> ProlificSettings:
    """The ``[platform.prolific]`` table of the config as :class:`ProlificSettings` (checked)."""
    from mturk_eval.platforms.registry import settings_for

    return settings_for(cfg, "prolific")


def target_name(emulator: bool) -> str:
    return "prolific-emulator" if emulator else "prolific"


def ledger_file(cfg: ExperimentConfig, emulator: bool) -> Path:
    """``runs/<exp>/ledger.prolific.sqlite`` or ``ledger.prolific-emulator.sqlite``."""
    from mturk_eval.ledger import ledger_path

    return ledger_path(cfg, target_name(emulator))


def completion_url_for(api_url: str, emulator: bool, configured: str) -> str:
    """Where the site sends a finished participant: Prolific's app, or the emulator serving the same path."""
    if not emulator:
        return configured
    p = urlsplit(api_url)
    return f"{p.scheme}://{p.netloc}/submissions/complete"


def connect(cfg: ExperimentConfig, *, sandbox: bool, api_url: str | None, echo: Callable[[str], None] = print,
            sleep: Callable[[float], None] | None = None, start: bool = False) -> ProlificPlatform:
    """The platform for the real API (PROLIFIC_TOKEN) or the local emulator (its own dummy token)."""
    s = settings_of(cfg)
    if sandbox:
        if not api_url:
            api_url = background_emulator(cfg, echo, start)
        token = EMULATOR_TOKEN  # PROLIFIC_TOKEN is never sent to the emulator
    else:
        api_url = api_url or s.api_url
        token = None
    options = {"sleep": sleep} if sleep is not None else {}
    return ProlificPlatform(api_client(s, api_url, token, **options), s, emulator=sandbox, echo=echo)


def api_client(s: ProlificSettings, api_url: str, token: str | None = None, *, env: dict | None = None,
               **options) -> ProlificClient:
    """A client for the API at ``api_url`` (``/api/v1/`` added when it is missing) with ``token``, or when
    None PROLIFIC_TOKEN from ``env`` (the process environment by default; checked, never shown). Retries
    are the settings' unless ``options`` (:class:`ProlificClient`'s attempts, base, cap, timeout, sleep)
    override them."""
    if token is None:
        token = token_from_env(s.token_pattern, env)
    if not re.match(r"https?://[^\s/]+", api_url):
        raise UserError(f"--api-url: expected an http(s) URL, got {api_url!r}")
    if not api_url.rstrip("/").endswith("/api/v1"):
        api_url = api_url.rstrip("/") + "/api/v1/"
    options = {"attempts": s.retry_attempts, "base": s.retry_base_s, "cap": s.retry_cap_s, **options}
    return ProlificClient(api_url, token, **options)


def background_emulator(cfg: ExperimentConfig, echo: Callable[[str], None], start: bool) -> str:
    """The bundled local server of ``--sandbox`` (:mod:`mturk_eval.emulators.background`): the same process
    answers Prolific's paths. ``publish`` starts it; the other verbs find it (or restart it on its state)."""
    from mturk_eval.emulators.background import ensure_sandbox

    return ensure_sandbox(cfg.run_dir, echo, start=start).url


def background_site(cfg: ExperimentConfig, echo: Callable[[str], None], start: bool) -> str:
    """The rating site in the background (``--sandbox`` without ``--public-url``): started by ``publish``,
    found (or restarted on its store and port) by the verbs whose participants need it."""
    from mturk_eval.emulators.background import ensure_site

    return ensure_site(cfg.run_dir, cfg.source_path, echo, start=start).url


def _open(cfg: ExperimentConfig, emulator: bool, create: bool = True) -> tuple[Ledger, Records]:
    path = ledger_file(cfg, emulator)
    if not create and not path.exists():
        raise UserError(f"{path}: nothing published on Prolific{' (emulator)' if emulator else ''} yet: run"
                        " `mturk-eval publish --platform prolific` first")
    ledger = Ledger.open(path)
    try:
        ledger.bind(cfg.name, target_name(emulator), "prolific")
        return ledger, Records(ledger.conn)
    except BaseException:
        ledger.close()
        raise


def _lock(cfg: ExperimentConfig, emulator: bool, command: str):
    from mturk_eval.actions.common import experiment_lock

    return experiment_lock(cfg, target_name(emulator), command)


# --------------------------------------------------------------------------------------------------
# publish

@dataclass
class PublishOutcome:
    batch: str
    places: int
    tasks: int
    cost: fees.Cost
    calculator: Decimal | None
    charged_minor: Decimal
    study_id: str | None = None
    status: str | None = None
    dry_run: bool = False
    participant_url: str | None = None
    messages: list[str] = field(default_factory=list)


def _plan(cfg: ExperimentConfig, items: list[dict], batch: str) -> tuple[list[dict], list[dict]]:
    attention = builder.make_attention_checks(items, cfg.hit.attention_check_rate, cfg.seed, cfg.language, batch)
    tasks = builder.plan_tasks(items + attention, experiment=cfg.name, target="prolific", batch=batch, seed=cfg.seed,
                               items_per_hit=cfg.hit.items_per_hit, places=cfg.hit.assignments_per_hit,
                               reward=settings_of(cfg).reward)
    return items + attention, tasks


def publish(cfg: ExperimentConfig, responses_path: str | Path, *, sandbox: bool = True, api_url: str | None = None,
            public_url: str | None = None, batch: str = "main", yes: bool = False, max_cost: float | None = None,
            dry_run: bool = False, confirm: Callable[[str], bool] | None = None, interactive: bool = True,
            echo: Callable[[str], None] = print, platform: ProlificPlatform | None = None) -> PublishOutcome:
    s = settings_of(cfg)
    builder.check_batch(batch)
    hourly = hourly_check(s)
    if not sandbox:
        public_url = public_url or cfg.site.public_url
        if not public_url:
            raise UserError("--public-url: give the rating site's address (`mturk-eval serve` prints it; [site]"
                            " public_url in the config); Prolific sends participants there; nothing was sent")
    # --sandbox without --public-url: the rating site in the background, started below once the checks pass.
    if public_url:
        check_public_url(public_url, emulator=sandbox)
    items = builder.load_responses(responses_path)
    empty = builder.empty_responses(items)
    if empty:
        raise UserError(f"{builder.describe_empty(empty, len(items), responses_path)}; participants would rate a"
                        " blank reply: regenerate or remove them; nothing was sent")
    all_items, tasks = _plan(cfg, items, batch)
    plat = platform or connect(cfg, sandbox=sandbox, api_url=api_url, echo=echo, start=True)
    k = cfg.hit.assignments_per_hit
    places = len(tasks) * k

    # Reads only (nothing is created): account, filters, blocklist group, the batch's study if any.
    plat.workspace_and_project()
    block_gid = plat.blocklist_group(create=False)
    filters = s.named_filters(block_gid)
    plat.check_filters(filters)
    path = ledger_file(cfg, sandbox)
    rec = None
    if path.exists():
        with Ledger.open(path) as ledger:
            ledger.check_bound(cfg.name, target_name(sandbox), "prolific")
            rec = Records(ledger.conn).study(batch)
    existing = plat.client.get_study(rec.study_id) if rec and rec.study_id else None
    if existing is None and rec is not None:
        existing = plat.find_study(internal_name(cfg.name, batch))
    have = int(existing["total_available_places"]) if existing and existing["status"] != "UNPUBLISHED" else 0
    if existing and places < int(existing["total_available_places"]):
        raise UserError(f"batch {batch}: the study {existing['id']} already has {existing['total_available_places']}"
                        f" places and this run asks for {places}; Prolific only lets places grow (publish the same"
                        " items, or a new --batch); nothing was sent")
    new_places = places - have
    cost = fees.study_cost(s.reward_minor, new_places, fee_rate=s.fee_rate, vat_rate=s.vat_rate, currency=s.currency)
    calc = plat.calculator(s.reward_minor, new_places) if new_places else Decimal(0)
    counted = max(cost.total, calc)
    out = PublishOutcome(batch, places, len(tasks), cost, calc, counted, dry_run=dry_run)
    sym = fees.SYMBOLS.get(s.currency, "")
    echo(f"Prolific{' (local emulator)' if sandbox else ''}: batch {batch}; {len(items)} items + "
         f"{len(all_items) - len(items)} attention checks in {len(tasks)} tasks x {k} participants = {places} places"
         f" ({have} already published); reward {sym}{s.reward} for ~{s.estimated_completion_time} min"
         f" = {sym}{hourly}/h")
    echo(f"cost of this run: {new_places} places: {cost.describe()}; Prolific's calculator:"
         f" {cost.money(calc)} (counted: {cost.money(counted)})")
    if cost.major(calc) != cost.major():
        echo("note: Prolific's figure differs from ours; check platform.prolific.fee_rate and vat_rate")
    if max_cost is not None and cost.major(counted) > Decimal(str(max_cost)).quantize(Decimal("0.01")):
        raise UserError(f"--max-cost: this run costs {cost.money(counted)}, above the limit {sym}{max_cost:.2f};"
                        " raise the limit or publish fewer items; nothing was sent")
    if dry_run:
        echo("dry run: nothing was written or sent")
        return out
    if not sandbox and new_places and not yes:
        if not interactive:
            raise UserError("a real Prolific study spends money: not running interactively, so give --yes; nothing"
                            " was sent")
        if confirm is None or not confirm(f"Publish {new_places} places on Prolific for {cost.money(counted)}?"):
            raise UserError("publishing not confirmed: nothing was sent (use --yes to skip the question)")

    if not public_url:
        public_url = background_site(cfg, echo, start=True)
    with _lock(cfg, sandbox, "publish"):
        ledger, records = _open(cfg, sandbox)
        with ledger:
            codes = completion_codes(cfg.name, batch)
            with SiteStore.open(site_store_path(cfg.run_dir)) as store:
                task_ids = store.add_batch(batch, all_items, [{"task_key": t["task_key"], "item_ids": t["item_ids"]}
                                                              for t in tasks],
                                           k=k, reservation_s=60 * (s.maximum_allowed_time or 3 * s.estimated_completion_time),
                                           language=cfg.language)
                store.update_settings(batch, platform="prolific", completion_code=codes["COMPLETED"],
                                      failed_attention_code=codes["FAILED_ATTENTION_CHECK"],
                                      no_consent_code=codes["NO_CONSENT"],
                                      completion_url=completion_url_for(plat.client.api_url, sandbox, s.completion_url))
            planned = {h.task_key for h in ledger.tasks(batch=batch)}
            new = [t for t in tasks if t["task_key"] not in planned]
            if new:
                ledger.add_plan(all_items, new)
            body = plat.study_body(experiment=cfg.name, batch=batch, title=cfg.hit.title,
                                   description=cfg.hit.description, places=places, public_url=public_url + f"/p/{batch}",
                                   filters=filters)
            res = plat.ensure_study(records, batch, body)
            # What all the study's places cost by our rules (each run showed its new places' share first).
            shown = fees.study_cost(s.reward_minor, res.places, fee_rate=s.fee_rate, vat_rate=s.vat_rate).total
            records.set_study(batch, shown_cost=float(shown))
            for t, tid in zip(tasks, task_ids):
                ledger.record_created(t["task_key"], tid, None, res.study_id)
    out.study_id, out.status = res.study_id, res.status
    what = "created and published" if res.created else "found (an earlier run made it) and published" \
        if res.recovered else f"grown by {res.raised_by} places" if res.raised_by else "already published"
    echo(f"study {res.study_id}: {what}; status {res.status}, {res.places} places")
    if sandbox:
        from mturk_eval.emulators.prolific.urls import take_url

        out.participant_url = take_url(plat.client.api_url.split("/api/v1")[0], res.study_id)
        echo(f"participants open it at {out.participant_url} (the emulator's Prolific side)")
    return out


# --------------------------------------------------------------------------------------------------
# status and collect

def status(cfg: ExperimentConfig, *, sandbox: bool = True, api_url: str | None = None,
           echo: Callable[[str], None] = print, platform: ProlificPlatform | None = None) -> list[dict]:
    ledger, records = _open(cfg, sandbox, create=False)
    with ledger:
        plat = platform or connect(cfg, sandbox=sandbox, api_url=api_url, echo=echo)
        out = []
        for rec in records.studies():
            if not rec.study_id:
                echo(f"batch {rec.batch}: study intended but not created yet (run publish again)")
                continue
            st = plat.client.get_study(rec.study_id)
            counts = plat.client.counts(rec.study_id)
            shown = {k: v for k, v in counts.items() if v and k != "TOTAL"}
            echo(f"batch {rec.batch}: study {rec.study_id} {st['status']}; {st.get('places_taken', '?')}/"
                 f"{st['total_available_places']} places taken; submissions: "
                 + (", ".join(f"{k} {v}" for k, v in shown.items()) or "none"))
            out.append({"batch": rec.batch, "study": st, "counts": counts})
        return out


@dataclass
class CollectOutcome:
    stored: int = 0
    new: int = 0
    without_answers: int = 0
    declined: int = 0
    released: int = 0
    attention_failed: int = 0
    failed_code: int = 0        # of those, handed the FAILED_ATTENTION_CHECK code by the site
    withdrawn: int = 0          # stored earlier, then RETURNED / SCREENED OUT on Prolific: answers dropped
    statuses: dict[str, int] = field(default_factory=dict)


def collect(cfg: ExperimentConfig, *, sandbox: bool = True, api_url: str | None = None,
            echo: Callable[[str], None] = print, platform: ProlificPlatform | None = None) -> CollectOutcome:
    from mturk_eval.tasks.answers import attention_passed, validate_scores

    out = CollectOutcome()
    ledger, records = _open(cfg, sandbox, create=False)
    with ledger, _lock(cfg, sandbox, "collect"), SiteStore.open(site_store_path(cfg.run_dir)) as store:
        plat = platform or connect(cfg, sandbox=sandbox, api_url=api_url, echo=echo)
        known = {a.submission_id: a for a in ledger.submissions()}
        for rec in records.studies():
            if not rec.study_id:
                continue
            for sub in plat.submissions(rec.study_id):
                st = sub["status"]
                out.statuses[st] = out.statuses.get(st, 0) + 1
                sid, pid = sub["id"], sub["participant_id"]
                if st in FREES_TASK:
                    out.released += store.release_rater("prolific", pid, "returned", ref=sid, submitted=True)
                    out.withdrawn += _withdraw(ledger, known.get(sid), st)
                    continue
                if st not in STATUS_TO_LEDGER:
                    continue
                codes = completion_codes(cfg.name, rec.batch)
                if sub.get("study_code") == codes["NO_CONSENT"]:
                    out.declined += 1
                    continue
                a = store.by_ref("prolific", sid)
                if a is None or not a.answers:
                    out.without_answers += 1
                    continue
                items = store.task_items(a.task_id)
                scores, error = validate_scores(a.answers, len(items))
                passed = attention_passed(scores, items)
                # The site handed this participant the FAILED_ATTENTION_CHECK code (from the same answers); the
                # code is what Prolific shows the participant and the researcher, so it decides.
                if sub.get("study_code") == codes["FAILED_ATTENTION_CHECK"]:
                    passed = False
                    out.failed_code += 1
                out.attention_failed += passed is False
                new = ledger.store_submission(
                    submission_id=sid, task_id=a.task_id, rater_id=pid, status=STATUS_TO_LEDGER[st],
                    accept_time=a.reserved_at, submit_time=a.submitted_at, raw_answer=json.dumps(a.answers),
                    scores=scores, error=error, simulated=a.simulated, attention_passed=passed, fields=a.answers)
                out.stored += 1
                out.new += new
    withdrawn = f"; {out.withdrawn} stored earlier, now withdrawn (answers dropped)" if out.withdrawn else ""
    echo(f"collected {out.stored} submissions with answers ({out.new} new; {out.attention_failed} failed an attention"
         f" check, {out.failed_code} of them with the FAILED_ATTENTION_CHECK code); {out.without_answers} without"
         f" answers on the site; {out.declined} declined consent (NO_CONSENT code: ask them in Prolific to return the"
         f" study); {out.released} tasks freed by returns, time-outs or screen-outs{withdrawn}; Prolific statuses: "
         + (", ".join(f"{k} {v}" for k, v in sorted(out.statuses.items())) or "none"))
    return out


def _withdraw(ledger: Ledger, a: SubmissionRow | None, status: str) -> int:
    """A submission collect stored earlier (AWAITING REVIEW) that Prolific now shows as RETURNED, TIMED-OUT or
    SCREENED OUT: the participant withdrew (or was screened out), so it leaves review (approving it would be
    refused) and its answers leave the ratings; the row stays, with Prolific's status. 1 when it changed."""
    label = WITHDRAWN[status]
    if a is None or a.status == label:
        return 0
    accept = None if a.submit_time is None or a.work_time_s is None else a.submit_time - a.work_time_s
    ledger.store_submission(submission_id=a.submission_id, task_id=a.task_id, rater_id=a.rater_id, status=label,
                            accept_time=accept, submit_time=a.submit_time, raw_answer="", scores=None,
                            error=f"{status} on Prolific after collect: answers not used", simulated=a.simulated,
                            attention_passed=None)
    return 1


def collect_before_report(cfg: ExperimentConfig, target: str, echo: Callable[[str], None] = print) -> CollectOutcome:
    """``report`` collects first: from the bundled emulator (or the URL the studies were published at)
    for ``prolific-emulator``, from the real API for ``prolific``."""
    emulator = target == "prolific-emulator"
    api_url = None
    if emulator:
        from mturk_eval.emulators.background import read_record

        if read_record(cfg.run_dir) is None:
            ledger, records = _open(cfg, emulator, create=False)
            with ledger:
                api_url = next((r.api_url for r in records.studies()), None)
    return collect(cfg, sandbox=emulator, api_url=api_url, echo=echo)


# --------------------------------------------------------------------------------------------------
# review

@dataclass
class ReviewPlan:
    approve: list[tuple[str, str, str]] = field(default_factory=list)   # (submission, participant, study)
    reject: list[tuple[str, str, str]] = field(default_factory=list)
    bonus: list[tuple[str, str, str]] = field(default_factory=list)
    block: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bonus_cost: fees.Cost | None = None


def review(cfg: ExperimentConfig, *, sandbox: bool = True, api_url: str | None = None, apply: bool = False,
           reject_failed_attention: bool = False, rejection: str = "failed_attention",
           rejection_category: str | None = None, rejection_message: str | None = None,
           block_failed_attention: bool = False, block: tuple[str, ...] = (), bonus: str | None = None,
           bonus_label: str = "bonus", bonus_paid: tuple[str, ...] = (), bonus_unpaid: tuple[str, ...] = (),
           yes: bool = False, interactive: bool = True, max_cost: float | None = None,
           confirm: Callable[[str], bool] | None = None, echo: Callable[[str], None] = print,
           platform: ProlificPlatform | None = None) -> ReviewPlan:
    s = settings_of(cfg)
    # Offline checks first: nothing is sent when an option is wrong.
    if reject_failed_attention:
        if rejection_category is not None or rejection_message is not None:
            category, message = rejection_category or "FAILED_CHECK", rejection_message or ""
        elif rejection in s.rejections:
            category, message = s.rejections[rejection].category, s.rejections[rejection].message
        else:
            raise UserError(f"--rejection: no template {rejection!r} in [platform.prolific.rejections] (known:"
                            f" {', '.join(sorted(s.rejections)) or 'none'}); nothing was sent")
        check_rejection(category, message, "--rejection")
    if bonus is not None and (not _MONEY.fullmatch(bonus) or contract.minor_units(bonus) < 1):
        raise UserError(f"--bonus: expected an amount like 0.50 (major units of {s.currency}), got {bonus!r};"
                        " nothing was sent")
    for p in block:
        if not re.fullmatch(r"[0-9a-f]{24}", p):
            raise UserError(f"--block: expected a Prolific participant id (24 hex characters), got {p!r}; nothing"
                            " was sent")
    plan = ReviewPlan()
    ledger, records = _open(cfg, sandbox, create=False)
    with ledger, _lock(cfg, sandbox, "review"), SiteStore.open(site_store_path(cfg.run_dir)) as store:
        for bid in bonus_paid + bonus_unpaid:
            if not records.bulk_rows(bid):
                raise UserError(f"--bonus-paid/--bonus-unpaid: no bulk bonus {bid!r} in {ledger.path}")
        plat = platform or connect(cfg, sandbox=sandbox, api_url=api_url, echo=echo)
        study_of = {h.task_id: h.group_id for h in ledger.tasks() if h.task_id}
        failed, failed_subs = set(), set()
        for a in ledger.submissions():
            study = study_of.get(a.task_id)
            if study is None:
                continue
            if a.attention_passed is False:
                failed.add(a.rater_id)
                failed_subs.add(a.submission_id)
            if a.status == "Approved" and bonus is not None and records.bonus(a.submission_id, bonus_label) is None:
                plan.bonus.append((a.submission_id, a.rater_id, study))
            if a.status != "Submitted":
                continue
            if not a.valid or ledger.answer_count(a.submission_id) == 0:
                plan.skipped.append(f"{a.submission_id}: answers not usable ({a.error})")
                continue
            if a.attention_passed is False and reject_failed_attention:
                plan.reject.append((a.submission_id, a.rater_id, study))
                continue
            plan.approve.append((a.submission_id, a.rater_id, study))
            if bonus is not None and records.bonus(a.submission_id, bonus_label) is None:
                plan.bonus.append((a.submission_id, a.rater_id, study))
        to_block = list(dict.fromkeys([*block, *(sorted(failed) if block_failed_attention else [])]))
        plan.block = [p for p in to_block if (records.block(p) or {}).get("state") != "blocked"]
        pending_bonus = len(records.bonuses("intent")) + len(records.bonuses("set_up"))
        if bonus is not None:
            plan.bonus_cost = fees.bonus_cost([contract.minor_units(bonus)] * len(plan.bonus), fee_rate=s.fee_rate,
                                              vat_rate=s.vat_rate, currency=s.currency)
        failed_kept = sum(1 for sid, _, _ in plan.approve if sid in failed_subs)
        if failed_kept:
            echo(f"{failed_kept} submissions to approve failed an attention check (the site gave them the"
                 " FAILED_ATTENTION_CHECK code, which leaves them AWAITING REVIEW on Prolific); --reject-failed-attention"
                 " rejects them instead (category FAILED_CHECK)")
        echo(f"review: approve {len(plan.approve)}, reject {len(plan.reject)}"
             + (f" ({category}: {message[:60]}...)" if plan.reject else "")
             + f", bonus {len(plan.bonus)}" + (f" x {bonus} = {plan.bonus_cost.describe()}" if plan.bonus else "")
             + (f" (+ {pending_bonus} left from an earlier run)" if pending_bonus else "")
             + f", block {len(plan.block)}, skipped {len(plan.skipped)}")
        for line in plan.skipped[:5]:
            echo(f"  skipped {line}")
        if not apply:
            echo("dry run: nothing was sent (give --apply to do it)")
            return plan
        if plan.bonus_cost is not None and max_cost is not None and plan.bonus_cost.major() > Decimal(str(max_cost)):
            raise UserError(f"--max-cost: the bonuses cost {plan.bonus_cost.money()}, above {max_cost:.2f}; nothing"
                            " was sent")
        if not sandbox and plan.bonus and not yes:
            if not interactive or confirm is None or not confirm(f"Pay {len(plan.bonus)} bonuses for"
                                                                 f" {plan.bonus_cost.money()}?"):
                raise UserError("bonuses on a real study spend money: give --yes (or confirm); nothing was sent")
        for bid in bonus_paid:
            records.bulk_state(bid, "paid")
            echo(f"bonus {bid}: recorded as paid (you checked it in Prolific)")
        for bid in bonus_unpaid:
            records.bulk_state(bid, "set_up")
            echo(f"bonus {bid}: will be paid now (you checked Prolific did not pay it)")

        if plan.approve:
            plat.approve([sid for sid, _, _ in plan.approve])
            for sid, _, _ in plan.approve:
                ledger.set_submission_status(sid, "Approved", "approved")
                _site_review(store, sid, "approved")
        for sid, _, _ in plan.reject:
            plat.reject(sid, category, message)
            ledger.set_submission_status(sid, "Rejected", "rejected", message)
            _site_review(store, sid, "rejected", message)
        if plan.bonus:
            records.bonus_intents([(sid, bonus_label, study, pid, contract.minor_units(bonus))
                                   for sid, pid, study in plan.bonus])
        n, total = plat.pay_bonuses(records, echo)
        if n:
            echo(f"bonuses paid: {n} participants, Prolific's total {contract.major_units(total)}")
        for b in records.bonuses("paid"):  # the neutral bonus table too, so that the report counts them
            token = f"prolific:{b['bulk_id']}:{b['submission_id']}"
            if ledger.bonus(token) is None:
                ledger.add_bonus(token, b["submission_id"], b["participant_id"], contract.major_units(b["amount"]),
                                 b["label"])
                ledger.mark_bonus_paid(token)
        if plan.block:
            for p in plan.block:
                records.set_block(p, "pending")
            gid = plat.block(plan.block)
            for p in plan.block:
                records.set_block(p, "blocked", gid)
                store.block_rater("prolific", p, "blocked by review")
            echo(f"blocked {len(plan.block)} participants: participant group {gid} ({s.blocklist_group}) is applied"
                 f" as a {s.blocklist_filter_id} filter on later studies")
        return plan


def _site_review(store: SiteStore, submission_id: str, decision: str, feedback: str | None = None) -> None:
    a = store.by_ref("prolific", submission_id)
    if a is not None and a.state in ("submitted", "approved", "rejected"):
        store.review(a.assignment_id, decision, feedback)


# --------------------------------------------------------------------------------------------------
# expire

def expire(cfg: ExperimentConfig, *, sandbox: bool = True, api_url: str | None = None, stop: bool = False,
           yes: bool = False, interactive: bool = True, confirm: Callable[[str], bool] | None = None,
           echo: Callable[[str], None] = print, platform: ProlificPlatform | None = None) -> list[str]:
    ledger, records = _open(cfg, sandbox, create=False)
    with ledger:
        studies = [r for r in records.studies() if r.study_id]
        if stop:
            echo("STOP is final: a stopped Prolific study can never be restarted, and its unused places end;"
                 " PAUSE (the default) can be undone")
            if not yes:
                if not interactive or confirm is None or not confirm(f"Stop {len(studies)} studies for good?"):
                    raise UserError("stopping not confirmed: nothing was sent (give --yes, or leave out --stop to"
                                    " pause)")
        plat = platform or connect(cfg, sandbox=sandbox, api_url=api_url, echo=echo)
        out = []
        with _lock(cfg, sandbox, "expire"):
            for rec in studies:
                new, sent = plat.stop(rec.study_id) if stop else plat.pause(rec.study_id)
                if sent:
                    records.set_study(rec.batch, state="stopped" if stop else "paused")
                    echo(f"batch {rec.batch}: study {rec.study_id} {'stopped' if stop else 'paused'}; status {new}")
                else:
                    echo(f"batch {rec.batch}: study {rec.study_id} is {new}: nothing to {'stop' if stop else 'pause'}")
                out.append(new)
            if stop:
                with SiteStore.open(site_store_path(cfg.run_dir)) as store:
                    for rec in studies:
                        if store.batch(rec.batch) is not None:
                            store.close_batch(rec.batch)
        return out

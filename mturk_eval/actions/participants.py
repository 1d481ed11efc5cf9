"""``participants``: answer a participant's data-subject requests (access, deletion) and manage the
experiment's pseudonym key.

A participant is known by their real rater id (an MTurk worker id, a Prolific participant id, an invite
identity) or by the pseudonym the exports show (``r-...``, :mod:`mturk_eval.privacy`). Both are looked
up in every ledger of the experiment (``runs/<exp>/ledger.<target>.sqlite``) and in the rating site's
store (``runs/<exp>/site.sqlite``: raters, invites, consent and onboarding records, site submissions),
through the store's ``rater_data`` / ``delete_rater``.

Deleting removes the participant's submissions (answers, scores, raw answer documents, review
feedback), their bonus and block records and so their real id from the ledgers, then rewrites the
SQLite files so the removed bytes do not linger in free pages or the write-ahead log. What stays is a
tombstone: the SHA-256 of the rater id and of each removed submission id (not the ids), so that a later
``collect`` does not fetch the same submissions back from the platform. Deletion is refused while a
submission is not yet reviewed or a bonus is pending (the participant would not be paid) unless
``force``. Reports written earlier are not touched: the result lists the files that still show the
participant's pseudonym, and says that their tables include the removed ratings until the report is
written again.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.ledger import TARGETS, Ledger, ledger_path
from mturk_eval.privacy import (KEY_ID_META, Pseudonymiser, is_pseudonym, key_id_of, key_path, write_new_key,
                                write_private_text)

def is_deleted(ledger: Ledger, rater_id: str, submission_id: str) -> bool:
    """Whether a submission (or its rater) was deleted at the participant's request; ``collect`` skips
    such submissions so they are not stored again."""
    return ledger.is_deleted(rater_id, submission_id)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "__dataclass_fields__"):
        from dataclasses import asdict

        return _jsonable(asdict(x))
    if isinstance(x, bytes):
        return x.hex()
    return str(x)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def _ledgers(cfg: ExperimentConfig) -> list[tuple[str, Path]]:
    return [(t, ledger_path(cfg, t)) for t in TARGETS if ledger_path(cfg, t).exists()]


def _site_path(cfg: ExperimentConfig) -> Path | None:
    from mturk_eval.site.store import site_store_path

    p = site_store_path(cfg.run_dir)
    return p if p.exists() else None


def _site_raters(store: Any) -> list[tuple[str, str]]:
    # (platform, rater_id) of every rater the site knows: the store's raters table (its API looks one
    # rater up by platform and id; a pseudonym needs them all).
    return [(r[0], r[1]) for r in store._conn().execute("SELECT platform, rater_id FROM raters")]


@dataclass
class Participant:
    rater_id: str
    pseudonym: str | None               # None when the key is missing and the real id was given
    ledgers: list[tuple[str, Path]]     # (target, path) of the ledgers that hold them
    site_platforms: list[str] = field(default_factory=list)  # platforms under which the site knows them


def _pseudonymiser(cfg: ExperimentConfig, wanted: str) -> Pseudonymiser | None:
    """The experiment's key; without it a real id can still be looked up (not a pseudonym)."""
    try:
        return Pseudonymiser.for_run(cfg.run_dir)
    except UserError:
        if is_pseudonym(wanted):
            raise
        return None


def find_participant(cfg: ExperimentConfig, wanted: str) -> Participant:
    """The participant whose real id or pseudonym is ``wanted``; unknown -> one-line UserError."""
    wanted = wanted.strip()
    ledgers = _ledgers(cfg)
    site = _site_path(cfg)
    if not ledgers and site is None:
        raise UserError(f"{cfg.run_dir}: expected a ledger (ledger.<target>.sqlite) or a rating-site store "
                        "(site.sqlite), got none; nobody has taken part in this experiment yet")
    p = _pseudonymiser(cfg, wanted)

    def match(ids: list[str]) -> str | None:
        return wanted if wanted in ids else (p.find(wanted, ids) if p is not None else None)

    found: set[str] = set()
    holders = []
    for target, path in ledgers:
        with Ledger.open(path, create=False) as led:
            m = match(led.rater_ids())
        if m is not None:
            found.add(m)
            holders.append((target, path))
    platforms = []
    if site is not None:
        from mturk_eval.site.store import SiteStore

        with SiteStore.open(site, create=False) as store:
            known = _site_raters(store)
        m = match([r for _, r in known])
        if m is not None:
            found.add(m)
            platforms = [plat for plat, r in known if r == m]
    if not found:
        what = "pseudonym" if is_pseudonym(wanted) else "rater id"
        where = [*(lp.name for _, lp in ledgers), *([site.name] if site else [])]
        raise UserError(f"{wanted}: no participant with this {what} in {cfg.run_dir} ({', '.join(where)}); "
                        "expected a rater id or a pseudonym (r-...) from this experiment's exports")
    (rater_id,) = found  # one real id has one pseudonym, so the ledgers and the site agree
    return Participant(rater_id, p.rater(rater_id) if p is not None else None, holders, platforms)


# --------------------------------------------------------------------------------------------------
# Access


def _submission(a: dict[str, Any]) -> dict[str, Any]:
    return {
        "submission_id": a["submission_id"], "task_id": a["task_id"], "status": a["status"],
        "accepted_at": _iso(a["accept_time"]), "submitted_at": _iso(a["submit_time"]),
        "work_time_s": a["work_time_s"], "answers": a["fields"], "ratings": a["answers"],
        "raw_answer": a["raw_answer"],
        "valid": bool(a["valid"]), "problem": a["error"], "simulated": bool(a["simulated"]),
        "attention_check_passed": None if a["attention_passed"] is None else bool(a["attention_passed"]),
        "review": {"action": a["review_action"], "feedback": a["feedback"], "at": _iso(a["reviewed_at"])},
        "stored_at": _iso(a["stored_at"]),
    }


def export_participant(cfg: ExperimentConfig, wanted: str) -> dict[str, Any]:
    """Everything the experiment holds about one participant (data-subject access), as JSON-ready data."""
    who = find_participant(cfg, wanted)
    held = []
    for target, path in who.ledgers:
        with Ledger.open(path, create=False) as led:
            rec = led.rater_record(who.rater_id)
        held.append({
            "ledger": str(path), "target": target,
            "submissions": [_submission(a) for a in rec["submissions"]],
            "bonuses": [{"submission_id": b["submission_id"], "amount_usd": b["amount"], "reason": b["reason"],
                         "state": b["state"], "created_at": _iso(b["created_at"]), "paid_at": _iso(b["paid_at"])}
                        for b in rec["bonuses"]],
            "blocks": [{"reason": b["reason"], "state": b["state"], "created_at": _iso(b["created_at"])}
                       for b in rec["blocks"]],
        })
    site = []
    if who.site_platforms:
        from mturk_eval.site.store import SiteStore

        with SiteStore.open(_site_path(cfg), create=False) as store:
            site = [_jsonable(store.rater_data(plat, who.rater_id)) for plat in who.site_platforms]
    return {
        "experiment": cfg.name,
        "participant": {"rater_id": who.rater_id, "pseudonym": who.pseudonym},
        "exported_at": _iso(time.time()),
        "about": ("Everything this experiment's mturk-eval data holds about this participant: their submissions "
                  "(answers, scores, times, review), bonuses and blocks, from each ledger; from the rating site, "
                  "their invite, consent and onboarding records and site submissions. Shared exports (the "
                  "report, collect --export-csv) show only the pseudonym. The recruiting platform keeps its own "
                  "records (ask it directly)."),
        "ledgers": held,
        "rating_site": site,
        "exports_showing_pseudonym": [str(p) for p in _exports_with(cfg, who.pseudonym)],
    }


# --------------------------------------------------------------------------------------------------
# Deletion


@dataclass
class DeleteResult:
    participant: Participant
    submissions: int = 0
    ratings: int = 0
    bonuses: int = 0
    blocks: int = 0
    unpaid: list[str] = field(default_factory=list)     # submissions deleted before review (force)
    reports: list[Path] = field(default_factory=list)   # written earlier, still showing the pseudonym
    report_dirs: list[Path] = field(default_factory=list)  # written earlier: tables include the ratings
    backups: list[Path] = field(default_factory=list)   # ledger backups that may still hold the data
    site: dict[str, int] = field(default_factory=dict)  # rows removed from the rating site's store, by table
    run_dir: Path = Path(".")


def _compact(path: Path) -> None:
    """Rewrite the site's SQLite file so deleted rows leave no bytes behind (free pages, the WAL)."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


EXPORT_SUFFIXES = (".md", ".json", ".csv", ".tex", ".txt", ".html", ".parquet")


def _shows(f: Path, pseudonym: str) -> bool:
    if f.suffix == ".parquet":  # compressed: look in its rater columns instead of its bytes
        import pyarrow.parquet as pq

        cols = [c for c in pq.read_schema(f).names if c in ("worker_id", "WorkerId", "rater_id")]
        return any(pseudonym in set(pq.read_table(f, columns=[c]).column(c).to_pylist()) for c in cols)
    return pseudonym.encode() in f.read_bytes()


def _exports_with(cfg: ExperimentConfig, pseudonym: str | None) -> list[Path]:
    """Export-like files (reports, CSV/JSON/Parquet) under the experiment's folder that show
    ``pseudonym``; exports written elsewhere (``report --out DIR``, ``collect --export-csv FILE``) are not
    known to the toolkit."""
    if pseudonym is None or not cfg.run_dir.exists():
        return []
    out = []
    for f in sorted(cfg.run_dir.rglob("*")):
        if f.suffix not in EXPORT_SUFFIXES or not f.is_file():
            continue
        try:
            if f.stat().st_size <= 500_000_000 and _shows(f, pseudonym):
                out.append(f)
        except (OSError, ValueError):  # unreadable, or not really Parquet: not an export we know
            continue
    return out


def delete_participant(cfg: ExperimentConfig, wanted: str, *, force: bool = False) -> DeleteResult:
    """Remove one participant's answers and identity from every ledger of the experiment."""
    from mturk_eval.actions.common import experiment_lock

    who = find_participant(cfg, wanted)
    res = DeleteResult(who, run_dir=cfg.run_dir)
    unpaid: list[str] = []
    for target, path in who.ledgers:
        with Ledger.open(path, create=False) as led:
            subs, bonuses = led.rater_unsettled(who.rater_id)
            if (subs or bonuses) and not force:
                what = []
                if subs:
                    what.append(f"{len(subs)} submission(s) not yet reviewed ({', '.join(subs[:3])})")
                if bonuses:
                    what.append(f"{len(bonuses)} pending bonus(es)")
                raise UserError(f"{path}: {who.pseudonym or who.rater_id}: {' and '.join(what)}; run "
                                "`mturk-eval review --apply` first so the participant is paid, or pass --force "
                                "to delete unpaid; nothing deleted")
            unpaid += subs
    for target, path in who.ledgers:
        with experiment_lock(cfg, target, "participants delete"):
            with Ledger.open(path, create=False) as led:
                removed = led.delete_rater(who.rater_id)
            res.submissions += removed["submissions"]
            res.ratings += removed["answers"]
            res.bonuses += removed["bonuses"]
            res.blocks += removed["blocks"]
    if who.site_platforms:
        from mturk_eval.site.store import SiteStore

        site = _site_path(cfg)
        with SiteStore.open(site, create=False) as store:
            store._conn().execute("PRAGMA secure_delete=ON")
            for plat in who.site_platforms:
                for table, n in store.delete_rater(plat, who.rater_id).items():
                    res.site[table] = res.site.get(table, 0) + n
        _compact(site)
    res.unpaid = unpaid
    res.reports = _exports_with(cfg, who.pseudonym)
    res.report_dirs = sorted({f.parent for f in cfg.run_dir.rglob("report.json")})
    res.backups = sorted(p for p in cfg.run_dir.glob("ledger.*") if p.suffix not in (".sqlite",)
                         and not p.name.endswith(("-wal", "-shm")))
    return res


def describe_deletion(res: DeleteResult) -> list[str]:
    """What ``participants delete`` prints: what went, and what remains where."""
    who = res.participant
    name = who.pseudonym or "the participant"
    lines = []
    if who.ledgers:
        lines.append(f"deleted {name}: {res.submissions} submission(s) with {res.ratings} rating(s), {res.bonuses} "
                     f"bonus record(s), {res.blocks} block(s), and their rater id, from "
                     + ", ".join(str(p) for _, p in who.ledgers))
    if who.site_platforms:
        removed = ", ".join(f"{n} {table}" for table, n in res.site.items() if n) or "their rater record"
        lines.append(f"deleted {name} from the rating site's store: {removed}")
    if res.unpaid:
        lines.append(f"warning: {len(res.unpaid)} submission(s) were deleted before review (--force); the "
                     "platform may still approve and pay them automatically")
    if res.report_dirs:
        lines.append("reports written before now still include their ratings in the tables: "
                     + ", ".join(str(d) for d in res.report_dirs) + "; run `mturk-eval report` again to drop them")
    if res.reports:
        lines.append(f"files that still show the pseudonym {who.pseudonym}: " + ", ".join(str(p) for p in res.reports))
    if who.pseudonym:
        lines.append(f"exports written outside {res.run_dir} (report --out, collect --export-csv) may show "
                     f"{who.pseudonym} too")
    if res.backups:
        lines.append("ledger backups may still hold their data (delete or re-make them): "
                     + ", ".join(str(p) for p in res.backups))
    lines.append("copies already shared cannot be recalled (they carry only the pseudonym); the recruiting "
                 "platform keeps its own records; a later `collect` does not bring these submissions back")
    return lines


# --------------------------------------------------------------------------------------------------
# The key


def new_key(cfg: ExperimentConfig) -> str:
    """Make a new pseudonym key when the old one is lost for good; records its id in the ledgers (so
    exports work again). Refuses when a key file exists. Returns the new key id."""
    path = key_path(cfg.run_dir)
    if path.exists():
        raise UserError(f"{path}: a key already exists; a new one would change every pseudonym. Nothing done")
    kid = key_id_of(write_new_key(path))
    for _, lp in _ledgers(cfg):
        with Ledger.open(lp, create=False) as led:
            led.set_meta(KEY_ID_META, kid)
    return kid


def write_export(data: dict[str, Any], out: Path) -> None:
    """Write an access export as JSON, readable by the owner only (it holds personal data)."""
    write_private_text(out, json.dumps(data, ensure_ascii=False, indent=2) + "\n")

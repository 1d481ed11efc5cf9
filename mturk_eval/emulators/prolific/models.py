"""State of the local Prolific emulator (moto's ``models.py``): one researcher account in SQLite.

Holds the account (user, one workspace, one project, balance), studies with their statuses and
transitions, submissions with theirs, completion codes and their actions, bulk bonus set-ups and
payments, participant groups and the money charged. Everything a restart must keep is in the
database; ``:memory:`` serves throwaway servers.

Prolific's documented behaviour (../shared/docs/prolific/prolific-api.md §3-§10) is applied here:
places full -> AWAITING REVIEW, all reviewed -> COMPLETED, a rejection while ACTIVE pauses the study,
STOP is final, places only grow, a submission ACTIVE past ``maximum_allowed_time`` times out (lazily,
on the next call), paying a bonus set-up twice pays twice (the endpoint is not idempotent, and the
emulator does not hide that). Time is ``time.time()`` plus an offset kept in the database, so tests
move it forward (:meth:`ProlificBackend.advance_clock`) instead of sleeping.

Errors are :class:`ProlificAPIError` with the HTTP status; ``responses.py`` gives them Prolific's
nested error body.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from mturk_eval.errors import UserError
from mturk_eval.platforms.prolific import contract, fees

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, internal_name TEXT,
    status TEXT NOT NULL, stopped INTEGER NOT NULL DEFAULT 0, project TEXT, data TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, study_id TEXT NOT NULL,
    participant_id TEXT NOT NULL, status TEXT NOT NULL, started REAL NOT NULL, completed REAL,
    study_code TEXT, return_requested REAL, simulated INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS submissions_study ON submissions (study_id, status);
CREATE TABLE IF NOT EXISTS bulk_bonuses (
    id TEXT PRIMARY KEY, study_id TEXT NOT NULL, lines TEXT NOT NULL, amount REAL NOT NULL,
    fees REAL NOT NULL, vat REAL NOT NULL, created REAL NOT NULL, times_paid INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS bonus_payments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, bulk_id TEXT NOT NULL, submission_id TEXT NOT NULL,
    amount INTEGER NOT NULL, visible_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL, workspace_id TEXT NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL, participant_id TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (group_id, participant_id));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, ref TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, ref TEXT NOT NULL, rewards REAL NOT NULL,
    fees REAL NOT NULL, vat REAL NOT NULL, time REAL NOT NULL);
"""

# Submissions that hold a place (§5: returns, time-outs and rejections free theirs).
HOLDS_PLACE = ("RESERVED", "ACTIVE", "AWAITING REVIEW", "APPROVED", "PARTIALLY APPROVED", "SCREENED OUT")
UNREVIEWED = ("RESERVED", "ACTIVE", "AWAITING REVIEW")

# GET /filters/: the ids the contract's examples use (plus the ⚠ blocklist one), with their types.
FILTER_CATALOGUE = [
    {"filter_id": "age", "title": "Age", "type": "range", "data_type": "integer",
     "description": "Participants' age", "question": "What is your age?"},
    {"filter_id": "handedness", "title": "Handedness", "type": "select", "data_type": "ChoiceID",
     "question": "Are you left or right handed?", "choices": {"0": "Left-handed", "1": "Right-handed",
                                                              "2": "Ambidextrous"}},
    {"filter_id": "first-language", "title": "First language", "type": "select", "data_type": "ChoiceID",
     "question": "What is your first language?", "choices": {"0": "English", "1": "Japanese", "2": "Other"}},
    {"filter_id": "javascript", "title": "Custom group", "type": "select", "data_type": "ChoiceID",
     "choices": {"0": "Yes", "1": "No"}},
    {"filter_id": contract.GROUP_ALLOWLIST, "title": "Participant group allowlist", "type": "select",
     "data_type": "ParticipantGroupID"},
    {"filter_id": contract.GROUP_BLOCKLIST, "title": "Participant group blocklist", "type": "select",
     "data_type": "ParticipantGroupID"},
    {"filter_id": contract.STUDIES_BLOCKLIST, "title": "Previous studies blocklist", "type": "select",
     "data_type": "StudyID"},
    {"filter_id": "previous_studies", "title": "Previous Studies AllowList", "type": "select",
     "data_type": "StudyID"},
]
FILTER_IDS = {f["filter_id"]: f for f in FILTER_CATALOGUE}


class ProlificAPIError(Exception):
    def __init__(self, status: int, detail: Any, title: str | None = None):
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.title = title or {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
                               409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests",
                               500: "Internal Server Error"}.get(status, "Error")


def bad(detail: Any) -> ProlificAPIError:
    return ProlificAPIError(400, detail)


def new_id() -> str:
    return secrets.token_hex(12)  # 24 hex, as most Prolific ids


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ProlificBackend:
    """The emulated account. Every public method runs in one transaction under the lock."""

    def __init__(self, path: str | Path = ":memory:", *, currency: str = "GBP", balance_minor: int = 10_000_00,
                 fee_rate: str = fees.DEFAULT_FEE_RATE, vat_rate: str = fees.DEFAULT_VAT_RATE,
                 bonus_delay_s: float = 0.0, tokens: tuple[str, ...] = ()):
        self.path = str(path)
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{self.path}: cannot create its folder ({exc.strerror or exc})") from None
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a Prolific emulator state database (SQLite) ({exc})") from None
        self.lock = threading.RLock()
        self.fee_rate, self.vat_rate, self.bonus_delay_s = fee_rate, vat_rate, bonus_delay_s
        self.tokens = tuple(tokens)
        with self.transaction():
            self._init_account(currency, balance_minor)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def transaction(self) -> Iterator[float]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                now = self.now()
                self.tick(now)
                yield now
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def now(self) -> float:
        with self.lock:
            return time.time() + float(self._meta("clock_offset", "0"))

    def advance_clock(self, seconds: float) -> float:
        with self.lock:
            self._set_meta("clock_offset", str(float(self._meta("clock_offset", "0")) + seconds))
            return self.now()

    def _init_account(self, currency: str, balance_minor: int) -> None:
        if self._meta("user_id"):
            return
        for k, v in (("user_id", new_id()), ("workspace_id", new_id()), ("project_id", new_id()),
                     ("wallet_id", new_id()), ("currency", currency), ("balance", str(balance_minor))):
            self._set_meta(k, v)

    # ------------------------------------------------------------------ account (§1)
    def token_ok(self, token: str) -> bool:
        return (token in self.tokens) if self.tokens else contract.token_ok(token)

    @property
    def currency(self) -> str:
        return self._meta("currency", "GBP")

    def user(self) -> dict:
        bal = float(Decimal(self._meta("balance")))
        return {"id": self._meta("user_id"), "email": "researcher@emulator.invalid", "first_name": "Local",
                "last_name": "Researcher", "name": "Local Researcher", "username": "local-researcher",
                "user_type": "researcher", "currency_code": self.currency, "balance": bal, "available_balance": bal}

    def workspace(self, workspace_id: str | None = None) -> dict:
        wid = self._meta("workspace_id")
        if workspace_id is not None and workspace_id != wid:
            raise ProlificAPIError(404, f"Workspace {workspace_id} not found.")
        uid = self._meta("user_id")
        return {"id": wid, "title": "Local emulator workspace", "description": "The local Prolific emulator",
                "owner": uid, "users": [{"id": uid, "name": "Local Researcher", "email": "researcher@emulator.invalid",
                                         "roles": ["WORKSPACE_ADMIN"]}],
                "naivety_distribution_rate": 0.5, "wallet": self._meta("wallet_id"),
                "projects": [{"id": self._meta("project_id"), "title": "Local project", "type": "PRIVATE"}]}

    def project(self, project_id: str) -> dict:
        if project_id != self._meta("project_id"):
            raise ProlificAPIError(404, f"Project {project_id} not found.")
        uid = self._meta("user_id")
        return {"id": project_id, "title": "Local project", "type": "PRIVATE", "description": "", "owner": uid,
                "public_details": None, "users": [{"id": uid, "name": "Local Researcher",
                                                   "email": "researcher@emulator.invalid", "roles": ["PROJECT_EDITOR"]}],
                "workspace": self._meta("workspace_id"), "naivety_distribution_rate": 0.5}

    def check_project(self, project_id: str) -> None:
        self.project(project_id)

    # ------------------------------------------------------------------ money
    def cost(self, rewards_minor: Decimal | int) -> fees.Cost:
        return fees.charge(rewards_minor, self.fee_rate, self.vat_rate, self.currency)

    def _charge(self, kind: str, ref: str, cost: fees.Cost, now: float) -> None:
        bal = Decimal(self._meta("balance"))
        if cost.total > 0 and bal < cost.total:
            raise bad(f"Insufficient balance: this needs {cost.money()}, the workspace has"
                      f" {cost.money(bal)}.")
        self._set_meta("balance", str(bal - cost.total))
        self.db.execute("INSERT INTO charges (kind, ref, rewards, fees, vat, time) VALUES (?, ?, ?, ?, ?, ?)",
                        (kind, ref, float(cost.rewards), float(cost.fees), float(cost.vat), now))

    def _event(self, kind: str, ref: str) -> None:
        """A state change worth counting (tests check that each approval happens once)."""
        self.db.execute("INSERT INTO events (kind, ref, time) VALUES (?, ?, ?)", (kind, ref, self.now()))

    def events(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT kind, ref FROM events ORDER BY seq")]

    def charges(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM charges ORDER BY seq")]

    # ------------------------------------------------------------------ time-driven changes
    def tick(self, now: float) -> None:
        for row in self.db.execute("SELECT s.id, s.started, st.data FROM submissions s JOIN studies st"
                                   " ON st.id = s.study_id WHERE s.status IN ('RESERVED', 'ACTIVE')").fetchall():
            limit = json.loads(row["data"]).get("maximum_allowed_time")
            if limit and now - row["started"] > limit * 60:
                self.db.execute("UPDATE submissions SET status='TIMED-OUT' WHERE id=?", (row["id"],))
        for row in self.db.execute("SELECT id FROM studies WHERE status IN ('ACTIVE', 'AWAITING REVIEW', 'COMPLETED')"
                                   ).fetchall():
            self._settle_study(row["id"])

    def _counts(self, study_id: str) -> dict[str, int]:
        out = {k: 0 for k in contract.COUNT_KEYS}
        for r in self.db.execute("SELECT status, COUNT(*) n FROM submissions WHERE study_id=? GROUP BY status",
                                 (study_id,)):
            out[r["status"]] = r["n"]
        out["TOTAL"] = sum(out.values())
        return out

    def places_taken(self, study_id: str) -> int:
        marks = ",".join("?" * len(HOLDS_PLACE))
        return self.db.execute(f"SELECT COUNT(*) FROM submissions WHERE study_id=? AND status IN ({marks})",
                               (study_id, *HOLDS_PLACE)).fetchone()[0]

    def _settle_study(self, study_id: str) -> None:
        """The automatic transitions: full -> AWAITING REVIEW; everything reviewed -> COMPLETED; a
        place freed in a full study's review -> PAUSED (the researcher may START to refill it)."""
        row = self._study_row(study_id)
        status, data = row["status"], json.loads(row["data"])
        taken = self.places_taken(study_id)
        unreviewed = sum(self._counts(study_id)[s] for s in UNREVIEWED)
        full = taken >= data["total_available_places"]
        if status == "ACTIVE" and full:
            status = "AWAITING REVIEW"
        if status == "AWAITING REVIEW" and not row["stopped"] and not full and data.get("_was_full"):
            status = "PAUSED"
        if status in ("AWAITING REVIEW",) and unreviewed == 0 and (full or row["stopped"]):
            status = "COMPLETED"
        if status == "COMPLETED" and unreviewed > 0:
            status = "AWAITING REVIEW"
        if full:
            data["_was_full"] = True
        self.db.execute("UPDATE studies SET status=?, data=? WHERE id=?", (status, json.dumps(data), study_id))

    # ------------------------------------------------------------------ studies (§2-§5)
    def _study_row(self, study_id: str) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM studies WHERE id=?", (study_id,)).fetchone()
        if row is None:
            raise ProlificAPIError(404, f"Study {study_id} not found.")
        return row

    def study(self, study_id: str) -> dict:
        row = self._study_row(study_id)
        data = {k: v for k, v in json.loads(row["data"]).items() if not k.startswith("_")}
        cost = self.cost(Decimal(data["reward"]) * data["total_available_places"])
        minutes = data["estimated_completion_time"]
        data.update({
            "id": row["id"], "status": row["status"], "date_created": iso(row["created"]),
            "published_at": iso(json.loads(row["data"]).get("_published")),
            "places_taken": self.places_taken(study_id), "currency_code": self.currency,
            "presentment_currency_code": self.currency, "total_cost": float(cost.total),
            "estimated_reward_per_hour": round(data["reward"] * 60 / minutes) if minutes else None,
            "is_pilot": False, "is_underpaying": None, "completion_url": None,
            "researcher": {"id": self._meta("user_id"), "name": "Local Researcher"},
        })
        return data

    def study_short(self, row: sqlite3.Row) -> dict:
        data = json.loads(row["data"])
        return {"id": row["id"], "name": data["name"], "internal_name": row["internal_name"], "status": row["status"],
                "study_type": data.get("study_type", "SINGLE"), "total_available_places": data["total_available_places"],
                "places_taken": self.places_taken(row["id"]), "reward": data["reward"],
                "date_created": iso(row["created"]), "published_at": iso(data.get("_published")),
                "total_cost": float(self.cost(Decimal(data["reward"]) * data["total_available_places"]).total)}

    def create_study(self, body: dict, now: float) -> dict:
        project = body.get("project")
        if project:
            self.check_project(project)
        data = dict(body)
        data.setdefault("internal_name", "")
        data.setdefault("description", "")
        data.setdefault("completion_codes", [])
        data.setdefault("filters", [])
        data.setdefault("peripheral_requirements", [])
        data.setdefault("study_type", "SINGLE")
        sid = new_id()
        self.db.execute("INSERT INTO studies (id, internal_name, status, project, data, created)"
                        " VALUES (?, ?, 'UNPUBLISHED', ?, ?, ?)",
                        (sid, data.get("internal_name") or None, project, json.dumps(data), now))
        return self.study(sid)

    def list_studies(self, states: list[str] | None = None, project: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM studies", []
        where = []
        if states:
            where.append(f"status IN ({','.join('?' * len(states))})")
            args += states
        if project:
            where.append("project = ?")
            args.append(project)
        if where:
            q += " WHERE " + " AND ".join(where)
        return [self.study_short(r) for r in self.db.execute(q + " ORDER BY seq", args)]

    def update_study(self, study_id: str, fields: dict, now: float) -> dict:
        row = self._study_row(study_id)
        data = json.loads(row["data"])
        if row["status"] != "UNPUBLISHED":
            locked = sorted(set(fields) - contract.PUBLISHED_UPDATABLE)
            if locked:
                raise bad(f"Cannot update {locked[0]} on a published study (status {row['status']}); only"
                          f" {', '.join(sorted(contract.PUBLISHED_UPDATABLE))} can change.")
            if row["stopped"]:
                raise bad("This study has been stopped; it cannot be changed.")
        places = fields.get("total_available_places")
        if places is not None and row["status"] != "UNPUBLISHED":
            old = data["total_available_places"]
            if places < old:
                raise bad(f"total_available_places can only be increased (it is {old}, asked for {places}).")
            if places > old:
                self._charge("places", study_id, self.cost(Decimal(data["reward"]) * (places - old)), now)
                if row["status"] == "AWAITING REVIEW":
                    self.db.execute("UPDATE studies SET status='ACTIVE' WHERE id=?", (study_id,))
        if "project" in fields and fields["project"]:
            self.check_project(fields["project"])
        if places is not None and places > data["total_available_places"]:
            data.pop("_was_full", None)
        data.update(fields)
        self.db.execute("UPDATE studies SET data=?, internal_name=? WHERE id=?",
                        (json.dumps(data), data.get("internal_name") or None, study_id))
        self._settle_study(study_id)
        return self.study(study_id)

    def delete_study(self, study_id: str) -> None:
        row = self._study_row(study_id)
        if row["status"] != "UNPUBLISHED":
            raise bad("Published studies cannot be deleted, but you can delete draft studies.")
        self.db.execute("DELETE FROM studies WHERE id=?", (study_id,))

    def transition_study(self, study_id: str, action: str, now: float) -> dict:
        row = self._study_row(study_id)
        status, data = row["status"], json.loads(row["data"])
        if row["stopped"]:
            raise bad(f"This study has been stopped; {action} is not possible (stopping is final).")
        if action == "PUBLISH":
            if status != "UNPUBLISHED":
                raise bad(f"Cannot PUBLISH a study in status {status}.")
            if not data.get("completion_codes") and not data.get("completion_code"):
                raise bad("A study needs at least one completion code before it can be published.")
            if not data.get("external_study_url") and not data.get("access_details"):
                raise bad("A study needs an external_study_url before it can be published.")
            self._charge("publish", study_id, self.cost(Decimal(data["reward"]) * data["total_available_places"]), now)
            data["_published"] = now
            status = "ACTIVE"
        elif action == "PAUSE":
            if status != "ACTIVE":
                raise bad(f"Cannot PAUSE a study in status {status}.")
            status = "PAUSED"
        elif action == "START":
            if status not in ("PAUSED", "AWAITING REVIEW"):
                raise bad(f"Cannot START a study in status {status}.")
            data.pop("_was_full", None)
            status = "ACTIVE"
        elif action == "STOP":
            if status not in ("ACTIVE", "PAUSED", "AWAITING REVIEW"):
                raise bad(f"Cannot STOP a study in status {status}.")
            # Unused places are given back: money is only kept for places that were taken.
            unused = max(0, data["total_available_places"] - self.places_taken(study_id))
            if unused:
                refund = self.cost(Decimal(data["reward"]) * unused)
                self._charge("refund", study_id, fees.Cost(-refund.rewards, -refund.fees, -refund.vat, self.currency),
                             now)
            self.db.execute("UPDATE studies SET stopped=1 WHERE id=?", (study_id,))
            status = "AWAITING REVIEW"
        self.db.execute("UPDATE studies SET status=?, data=? WHERE id=?", (status, json.dumps(data), study_id))
        self._settle_study(study_id)
        return self.study(study_id)

    # ------------------------------------------------------------------ participants (§12)
    def start_submission(self, study_id: str, participant_id: str, now: float, simulated: bool = False) -> dict:
        row = self._study_row(study_id)
        data = json.loads(row["data"])
        if row["status"] != "ACTIVE":
            raise ProlificAPIError(409, f"This study is not open (status {row['status']}).")
        existing = self.db.execute("SELECT * FROM submissions WHERE study_id=? AND participant_id=? ORDER BY seq",
                                   (study_id, participant_id)).fetchall()
        active = [r for r in existing if r["status"] in ("RESERVED", "ACTIVE")]
        if active:
            return self._submission_short(active[-1])
        limit = (data.get("submissions_config") or {}).get("max_submissions_per_participant", 1)
        if limit != -1 and len(existing) >= limit:
            raise ProlificAPIError(409, "You have already taken part in this study.")
        if self.places_taken(study_id) >= data["total_available_places"]:
            raise ProlificAPIError(409, "This study is full.")
        for f in data.get("filters", []):
            fid, values = f.get("filter_id"), f.get("selected_values") or []
            member = lambda: any(self.db.execute(  # noqa: E731
                "SELECT 1 FROM group_members WHERE group_id=? AND participant_id=?", (g, participant_id)).fetchone()
                for g in values)
            if fid == contract.GROUP_BLOCKLIST and member():
                raise ProlificAPIError(409, "You are not eligible for this study.")
            if fid == contract.GROUP_ALLOWLIST and not member():
                raise ProlificAPIError(409, "You are not eligible for this study.")
            if fid == contract.STUDIES_BLOCKLIST and self.db.execute(
                    f"SELECT 1 FROM submissions WHERE participant_id=? AND study_id IN ({','.join('?' * len(values))})",
                    (participant_id, *values)).fetchone():
                raise ProlificAPIError(409, "You are not eligible for this study.")
        sid = new_id()
        self.db.execute("INSERT INTO submissions (id, study_id, participant_id, status, started, simulated)"
                        " VALUES (?, ?, ?, 'ACTIVE', ?, ?)", (sid, study_id, participant_id, now, int(simulated)))
        self._settle_study(study_id)
        return self.submission(sid)

    def complete_submission(self, submission_id: str, code: str, now: float) -> dict:
        """The participant reached the completion URL with ``code`` (§12): run the code's actions."""
        sub = self._submission_row(submission_id)
        if sub["status"] != "ACTIVE":
            raise ProlificAPIError(409, f"This submission is {sub['status']}; it cannot be completed.")
        data = json.loads(self._study_row(sub["study_id"])["data"])
        codes = {c["code"]: c for c in data.get("completion_codes", [])}
        if code not in codes:
            raise ProlificAPIError(400, "This completion code is not valid for this study.")
        status = "AWAITING REVIEW"
        for act in codes[code].get("actions", []):
            if act["action"] == "AUTOMATICALLY_APPROVE":
                status = "APPROVED"
            elif act["action"] == "ADD_TO_PARTICIPANT_GROUP":
                self._add_members(act["participant_group"], [sub["participant_id"]], now)
            elif act["action"] == "REMOVE_FROM_PARTICIPANT_GROUP":
                self.db.execute("DELETE FROM group_members WHERE group_id=? AND participant_id=?",
                                (act["participant_group"], sub["participant_id"]))
        self.db.execute("UPDATE submissions SET status=?, completed=?, study_code=? WHERE id=?",
                        (status, now, code, submission_id))
        self._settle_study(sub["study_id"])
        return self.submission(submission_id)

    def return_submission(self, submission_id: str, now: float) -> dict:
        sub = self._submission_row(submission_id)
        if sub["status"] not in ("RESERVED", "ACTIVE", "AWAITING REVIEW"):
            raise ProlificAPIError(409, f"This submission is {sub['status']}; it cannot be returned.")
        self.db.execute("UPDATE submissions SET status='RETURNED', completed=? WHERE id=?", (now, submission_id))
        self._settle_study(sub["study_id"])
        return self.submission(submission_id)

    def force_submission_status(self, submission_id: str, status: str, now: float) -> dict:
        """Emulator admin only (Prolific has no such call): put a submission straight into any of the
        contract's statuses (§7), as :meth:`return_submission` and the time-out do for theirs, so that
        tests and ``sandbox participants`` can make the ones the simulated flow never reaches (RESERVED,
        SCREENED OUT, PARTIALLY APPROVED). A status that ends the submission sets its ``completed_at``."""
        if status not in contract.SUBMISSION_STATUSES:
            raise bad({"status": [f"\"{status}\" is not a valid choice ({', '.join(contract.SUBMISSION_STATUSES)})."]})
        sub = self._submission_row(submission_id)
        ended = None if status in ("RESERVED", "ACTIVE") else (sub["completed"] or now)
        self.db.execute("UPDATE submissions SET status=?, completed=? WHERE id=?", (status, ended, submission_id))
        self._event("forced " + status.lower(), submission_id)
        self._settle_study(sub["study_id"])
        return self.submission(submission_id)

    # ------------------------------------------------------------------ submissions (§7-§8)
    def _submission_row(self, submission_id: str) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM submissions WHERE id=?", (submission_id,)).fetchone()
        if row is None:
            raise ProlificAPIError(404, f"Submission {submission_id} not found.")
        return row

    def _bonuses_of(self, submission_id: str) -> list[int]:
        now = self.now()
        return [r["amount"] for r in self.db.execute(
            "SELECT amount FROM bonus_payments WHERE submission_id=? AND visible_at<=? ORDER BY seq",
            (submission_id, now))]

    def _submission_short(self, r: sqlite3.Row) -> dict:
        siblings = self.db.execute("SELECT COUNT(*) FROM submissions WHERE study_id=? AND participant_id=?",
                                   (r["study_id"], r["participant_id"])).fetchone()[0]
        return {"id": r["id"], "participant_id": r["participant_id"], "status": r["status"],
                "started_at": iso(r["started"]), "completed_at": iso(r["completed"]), "has_siblings": siblings > 1,
                "study_code": r["study_code"], "return_requested": iso(r["return_requested"]),
                "study_id": r["study_id"], "bonus_payments": self._bonuses_of(r["id"]),
                "is_complete": r["completed"] is not None,
                "time_taken": round(r["completed"] - r["started"]) if r["completed"] else None}

    def submission(self, submission_id: str) -> dict:
        r = self._submission_row(submission_id)
        return {"id": r["id"], "started_at": iso(r["started"]), "status": r["status"], "study_id": r["study_id"],
                "completed_at": iso(r["completed"]), "entered_code": r["study_code"], "participant": r["participant_id"],
                "participant_id": r["participant_id"], "study_code": r["study_code"], "parent_study_id": None,
                "bonus_payments": self._bonuses_of(r["id"]), "return_requested": iso(r["return_requested"])}

    def list_submissions(self, study_id: str | None = None, statuses: list[str] | None = None) -> list[dict]:
        q, args, where = "SELECT * FROM submissions", [], []
        if study_id:
            self._study_row(study_id)
            where.append("study_id=?")
            args.append(study_id)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += statuses
        if where:
            q += " WHERE " + " AND ".join(where)
        return [self._submission_short(r) for r in self.db.execute(q + " ORDER BY seq", args)]

    def counts(self, study_id: str) -> dict[str, int]:
        self._study_row(study_id)
        return self._counts(study_id)

    def transition_submission(self, submission_id: str, body: dict, now: float) -> dict:
        sub = self._submission_row(submission_id)
        action, status = body["action"], sub["status"]
        target = {"APPROVE": "APPROVED", "REJECT": "REJECTED"}.get(action)
        if action in ("APPROVE", "REJECT"):
            if status == target:
                return self.submission(submission_id)  # documented: a repeat is ignored
            if status != "AWAITING REVIEW":
                raise bad(f"Cannot {action} a submission in status {status}.")
            self.db.execute("UPDATE submissions SET status=? WHERE id=?", (target, submission_id))
            self._event(target.lower(), submission_id)
            if action == "REJECT" and self._study_row(sub["study_id"])["status"] == "ACTIVE":
                self.db.execute("UPDATE studies SET status='PAUSED' WHERE id=?", (sub["study_id"],))
        elif action == "COMPLETE":
            return self.complete_submission(submission_id, body["completion_code"], now)
        else:
            raise bad(f"The local emulator does not implement the {action} transition.")
        self._settle_study(sub["study_id"])
        return self.submission(submission_id)

    def bulk_approve(self, submission_ids: list[str], now: float) -> None:
        rows = [self._submission_row(s) for s in submission_ids]
        wrong = [r["id"] for r in rows if r["status"] not in ("AWAITING REVIEW", "APPROVED")]
        if wrong:
            raise bad(f"These submissions are not awaiting review: {', '.join(wrong[:10])}.")
        for r in rows:
            if r["status"] != "APPROVED":  # an approved one is left as it is
                self.db.execute("UPDATE submissions SET status='APPROVED' WHERE id=?", (r["id"],))
                self._event("approved", r["id"])
        for study_id in {r["study_id"] for r in rows}:
            self._settle_study(study_id)

    def participant_submissions(self, study_id: str, participant_ids: list[str]) -> list[str]:
        out = []
        for p in participant_ids:
            r = self.db.execute("SELECT id FROM submissions WHERE study_id=? AND participant_id=? ORDER BY seq DESC",
                                (study_id, p)).fetchone()
            if r is None:
                raise bad(f"Participant {p} has no submission in study {study_id}.")
            out.append(r["id"])
        return out

    # ------------------------------------------------------------------ bonuses (§9)
    def create_bonus(self, study_id: str, lines: list[tuple[str, Decimal]], now: float) -> dict:
        self._study_row(study_id)
        resolved, unknown = [], []
        for ident, amount in lines:
            r = self.db.execute("SELECT id FROM submissions WHERE study_id=? AND (id=? OR participant_id=?)"
                                " ORDER BY seq DESC", (study_id, ident, ident)).fetchone()
            if r is None:
                unknown.append(ident)
            else:
                resolved.append((r["id"], int((amount * 100).to_integral_value())))
        if unknown:
            raise bad(f"These IDs did not take part in study {study_id}: {', '.join(unknown[:10])}.")
        cost = self.cost(sum(a for _, a in resolved))
        bid = new_id()
        self.db.execute("INSERT INTO bulk_bonuses (id, study_id, lines, amount, fees, vat, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", (bid, study_id, json.dumps(resolved), float(cost.rewards),
                                                          float(cost.fees), float(cost.vat), now))
        return {"id": bid, "study": study_id, "amount": float(cost.rewards), "fees": float(cost.fees),
                "vat": float(cost.vat), "total_amount": float(cost.total)}

    def pay_bonus(self, bulk_id: str, now: float) -> str:
        row = self.db.execute("SELECT * FROM bulk_bonuses WHERE id=?", (bulk_id,)).fetchone()
        if row is None:
            raise ProlificAPIError(404, f"Bulk bonus payment {bulk_id} not found.")
        # Not idempotent (documented): every call pays every line again.
        self._charge("bonus", bulk_id, fees.Cost(Decimal(str(row["amount"])), Decimal(str(row["fees"])),
                                                 Decimal(str(row["vat"])), self.currency), now)
        for sub_id, amount in json.loads(row["lines"]):
            self.db.execute("INSERT INTO bonus_payments (bulk_id, submission_id, amount, visible_at)"
                            " VALUES (?, ?, ?, ?)", (bulk_id, sub_id, amount, now + self.bonus_delay_s))
        self.db.execute("UPDATE bulk_bonuses SET times_paid = times_paid + 1 WHERE id=?", (bulk_id,))
        return (f"Bulk bonus payment with ID {bulk_id} is being processed asynchronously. Payments will be"
                " completed shortly.")

    def bonus_payments(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM bonus_payments ORDER BY seq")]

    # ------------------------------------------------------------------ participant groups (§10)
    def _group_row(self, group_id: str) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM groups WHERE id=? AND is_deleted=0", (group_id,)).fetchone()
        if row is None:
            raise ProlificAPIError(404, f"Participant group {group_id} not found.")
        return row

    def group(self, group_id: str) -> dict:
        r = self._group_row(group_id)
        n = self.db.execute("SELECT COUNT(*) FROM group_members WHERE group_id=?", (group_id,)).fetchone()[0]
        return {"id": r["id"], "name": r["name"], "description": r["description"], "workspace_id": r["workspace_id"],
                "project_id": None, "participant_count": n, "is_deleted": False, "feeder_studies": []}

    def list_groups(self, workspace_id: str | None) -> list[dict]:
        q, args = "SELECT id FROM groups WHERE is_deleted=0", []
        if workspace_id:
            q += " AND workspace_id=?"
            args.append(workspace_id)
        return [self.group(r["id"]) for r in self.db.execute(q + " ORDER BY seq", args)]

    def create_group(self, body: dict, now: float) -> dict:
        wid = body.get("workspace_id")
        if not wid and not body.get("organisation_id"):
            raise bad("Either a workspace or organisation ID must be specified.")
        if wid:
            self.workspace(wid)
        gid = new_id()
        self.db.execute("INSERT INTO groups (id, name, description, workspace_id) VALUES (?, ?, ?, ?)",
                        (gid, body["name"], body.get("description", ""), wid or body.get("organisation_id")))
        self._add_members(gid, body.get("participant_ids", []), now)
        return self.group(gid)

    def update_group(self, group_id: str, fields: dict) -> dict:
        self._group_row(group_id)
        for k in ("name", "description"):
            if k in fields:
                self.db.execute(f"UPDATE groups SET {k}=? WHERE id=?", (fields[k], group_id))
        return self.group(group_id)

    def delete_group(self, group_id: str) -> None:
        self._group_row(group_id)
        self.db.execute("UPDATE groups SET is_deleted=1 WHERE id=?", (group_id,))

    def _add_members(self, group_id: str, participant_ids: list[str], now: float) -> None:
        self._group_row(group_id)
        for p in participant_ids:
            self.db.execute("INSERT OR IGNORE INTO group_members VALUES (?, ?, ?)", (group_id, p, now))

    def members(self, group_id: str) -> list[dict]:
        self._group_row(group_id)
        return [{"participant_id": r["participant_id"], "datetime_created": iso(r["created"])}
                for r in self.db.execute("SELECT * FROM group_members WHERE group_id=? ORDER BY created, participant_id",
                                         (group_id,))]

    def add_members(self, group_id: str, participant_ids: list[str], now: float) -> list[dict]:
        self._add_members(group_id, participant_ids, now)
        return self.members(group_id)

    def remove_members(self, group_id: str, participant_ids: list[str]) -> list[dict]:
        self._group_row(group_id)
        for p in participant_ids:
            self.db.execute("DELETE FROM group_members WHERE group_id=? AND participant_id=?", (group_id, p))
        return self.members(group_id)

    # ------------------------------------------------------------------ admin
    def state(self) -> dict:
        return {"studies": [self.study_short(r) for r in self.db.execute("SELECT * FROM studies ORDER BY seq")],
                "submissions": self.list_submissions(), "charges": self.charges(),
                "bonus_payments": self.bonus_payments(), "events": self.events(), "balance": float(Decimal(self._meta("balance"))),
                "currency": self.currency, "now": self.now()}


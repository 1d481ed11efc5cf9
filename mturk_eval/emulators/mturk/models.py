"""SQLite state of the local MTurk sandbox: HIT types, HITs, assignments, bonuses, blocks.

The server keeps everything here so that a restart loses nothing. MTurk's time-driven behaviour
(auto-approval after the delay, expiry, abandoned assignments) is applied lazily: every read or write
first calls :meth:`Store.tick`, which moves rows whose deadline has passed. The clock is
``time.time()`` plus an offset kept in the database, so tests can jump forward in time
(:meth:`Store.advance_clock`) without sleeping.

All methods raise :class:`SandboxError` with MTurk's error type and TurkErrorCode; the server turns it
into the service's JSON error shape.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mturk_eval.errors import UserError

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SANDBOX_BALANCE = "10000.00"
TOKEN_TTL_S = 24 * 3600
OVERRIDE_REJECTION_S = 30 * 24 * 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hit_types (
    id TEXT PRIMARY KEY, group_id TEXT NOT NULL, fingerprint TEXT UNIQUE NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
    keywords TEXT, reward TEXT NOT NULL, assignment_duration INTEGER NOT NULL,
    auto_approval_delay INTEGER NOT NULL, qualifications TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS hits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, hit_type_id TEXT NOT NULL,
    question TEXT NOT NULL, max_assignments INTEGER NOT NULL, lifetime INTEGER NOT NULL,
    annotation TEXT, created REAL NOT NULL, expiration REAL NOT NULL,
    reviewing INTEGER NOT NULL DEFAULT 0, disposed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS request_tokens (
    op TEXT NOT NULL, token TEXT NOT NULL, ref TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (op, token));
CREATE TABLE IF NOT EXISTS assignments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, hit_id TEXT NOT NULL,
    worker_id TEXT NOT NULL, status TEXT NOT NULL, accept_time REAL NOT NULL, deadline REAL NOT NULL,
    submit_time REAL, auto_approval_time REAL, approval_time REAL, rejection_time REAL,
    answer TEXT, feedback TEXT, simulated INTEGER NOT NULL DEFAULT 0,
    UNIQUE (hit_id, worker_id));
CREATE INDEX IF NOT EXISTS assignments_hit ON assignments (hit_id, status);
CREATE TABLE IF NOT EXISTS bonuses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, worker_id TEXT NOT NULL, assignment_id TEXT NOT NULL,
    amount TEXT NOT NULL, reason TEXT NOT NULL, token TEXT, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS worker_blocks (worker_id TEXT PRIMARY KEY, reason TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS qualification_types (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, name TEXT UNIQUE NOT NULL,
    data TEXT NOT NULL);
"""

# Assignment states inside the store. The API shows only Submitted, Approved, Rejected; Accepted is a
# worker holding the HIT, Abandoned one whose deadline passed unsubmitted.
ACCEPTED, SUBMITTED, APPROVED, REJECTED, ABANDONED = "Accepted", "Submitted", "Approved", "Rejected", "Abandoned"
DONE = (SUBMITTED, APPROVED, REJECTED)


class SandboxError(Exception):
    """An error the service returns: ``kind`` is RequestError or ServiceFault (the JSON ``__type``)."""

    def __init__(self, message: str, code: str = "AWS.MechanicalTurk.InvalidParameterValue",
                 kind: str = "RequestError", status: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = kind
        self.status = status


def new_id(length: int = 30, prefix: str = "") -> str:
    """An id like MTurk's: upper-case letters and digits (``^[A-Z0-9]+$``), 30 characters."""
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(length - len(prefix)))


def _ms(t: float) -> str:
    return f"({int(t * 1000)} s)"


@dataclass
class HITView:
    """A HIT with its type's settings and its derived counts, as the API shows it."""

    row: dict[str, Any]
    status: str
    pending: int
    available: int
    completed: int


class Store:
    """The sandbox's state in one SQLite file (``:memory:`` for throwaway servers)."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{self.path}: cannot create its folder {parent} ({exc.strerror or exc})") from None
        try:
            # One connection shared by the server's threads, serialised by a lock: SQLite writes are
            # serialised anyway, and this keeps every operation one transaction.
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise UserError(f"{self.path}: cannot open the sandbox state ({exc})") from None
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        try:
            with self.lock:
                if self.path != ":memory:":
                    self.db.execute("PRAGMA journal_mode=WAL")
                    self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise UserError(f"{self.path}: not a sandbox state database (SQLite) ({exc})") from None

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # -- clock --------------------------------------------------------------------------------------
    def _offset(self) -> float:
        row = self.db.execute("SELECT value FROM meta WHERE key='clock_offset'").fetchone()
        return float(row["value"]) if row else 0.0

    def now(self) -> float:
        with self.lock:
            return time.time() + self._offset()

    def advance_clock(self, seconds: float) -> float:
        """Move the sandbox's clock forward (tests of auto-approval and expiry); returns the new time."""
        with self.lock:
            off = self._offset() + float(seconds)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('clock_offset', ?)", (str(off),))
            return time.time() + off

    def tick(self, now: float) -> None:
        """Apply what time does: auto-approve submitted work past its delay, abandon late assignments."""
        self.db.execute(
            "UPDATE assignments SET status=?, approval_time=auto_approval_time "
            "WHERE status=? AND auto_approval_time <= ?", (APPROVED, SUBMITTED, now))
        self.db.execute("UPDATE assignments SET status=? WHERE status=? AND deadline <= ?",
                        (ABANDONED, ACCEPTED, now))

    def transaction(self):
        return _Tx(self)

    # -- HIT types ----------------------------------------------------------------------------------
    def hit_type(self, p: dict[str, Any], now: float) -> str:
        """The HIT type id for these settings; identical settings give the existing id (as MTurk)."""
        quals = p.get("QualificationRequirements") or []
        key = {
            "Title": p["Title"], "Description": p["Description"], "Keywords": p.get("Keywords", ""),
            "Reward": _money(p["Reward"]), "AssignmentDurationInSeconds": int(p["AssignmentDurationInSeconds"]),
            "AutoApprovalDelayInSeconds": int(p.get("AutoApprovalDelayInSeconds", 2592000)),
            "QualificationRequirements": quals,
        }
        fp = json.dumps(key, sort_keys=True)
        row = self.db.execute("SELECT id FROM hit_types WHERE fingerprint=?", (fp,)).fetchone()
        if row:
            return row["id"]
        tid = new_id()
        self.db.execute(
            "INSERT INTO hit_types VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (tid, new_id(), fp, key["Title"], key["Description"], key["Keywords"], key["Reward"],
             key["AssignmentDurationInSeconds"], key["AutoApprovalDelayInSeconds"], json.dumps(quals), now))
        return tid

    # -- HITs ---------------------------------------------------------------------------------------
    def check_token(self, op: str, token: str | None, now: float) -> str | None:
        """The id an earlier request with this UniqueRequestToken made (within 24 h), if any."""
        if not token:
            return None
        row = self.db.execute("SELECT ref, created FROM request_tokens WHERE op=? AND token=?",
                              (op, token)).fetchone()
        if row and now - row["created"] < TOKEN_TTL_S:
            return row["ref"]
        return None

    def remember_token(self, op: str, token: str | None, ref: str, now: float) -> None:
        if token:
            self.db.execute("INSERT OR REPLACE INTO request_tokens VALUES (?,?,?,?)", (op, token, ref, now))

    def create_hit(self, type_id: str, p: dict[str, Any], now: float) -> str:
        token = p.get("UniqueRequestToken")
        existing = self.check_token("CreateHIT", token, now)
        if existing:
            raise SandboxError(
                f"There is already a HIT with this UniqueRequestToken: HIT ID {existing}. {_ms(now)}",
                "AWS.MechanicalTurk.HitAlreadyExists")
        hid = new_id()
        lifetime = int(p["LifetimeInSeconds"])
        self.db.execute(
            "INSERT INTO hits (id, hit_type_id, question, max_assignments, lifetime, annotation, created,"
            " expiration) VALUES (?,?,?,?,?,?,?,?)",
            (hid, type_id, p["Question"], int(p.get("MaxAssignments", 1)), lifetime,
             p.get("RequesterAnnotation"), now, now + lifetime))
        self.remember_token("CreateHIT", token, hid, now)
        return hid

    def _hit_row(self, hit_id: str, now: float) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT h.*, t.group_id, t.title, t.description, t.keywords, t.reward, t.assignment_duration,"
            " t.auto_approval_delay, t.qualifications FROM hits h JOIN hit_types t ON t.id = h.hit_type_id"
            " WHERE h.id=?", (hit_id,)).fetchone()
        if row is None:
            raise SandboxError(f"Hit {hit_id} does not exist. {_ms(now)}", "AWS.MechanicalTurk.HITDoesNotExist")
        return dict(row)

    def view(self, row: dict[str, Any], now: float) -> HITView:
        counts = dict(self.db.execute(
            "SELECT status, COUNT(*) FROM assignments WHERE hit_id=? GROUP BY status", (row["id"],)).fetchall())
        done = sum(counts.get(s, 0) for s in DONE)
        pending = counts.get(ACCEPTED, 0)
        completed = counts.get(APPROVED, 0) + counts.get(REJECTED, 0)
        expired = now >= row["expiration"]
        available = 0 if expired else max(0, row["max_assignments"] - done - pending)
        if row["disposed"]:
            status = "Disposed"
        elif row["reviewing"]:
            status = "Reviewing"
        elif done >= row["max_assignments"] or (expired and pending == 0):
            status = "Reviewable"
        elif available > 0:
            status = "Assignable"
        else:
            status = "Unassignable"
        return HITView(row, status, pending, available, completed)

    def get_hit(self, hit_id: str, now: float) -> HITView:
        return self.view(self._hit_row(hit_id, now), now)

    def list_hits(self, now: float, after_seq: int, limit: int, *, include_disposed: bool = False,
                  type_id: str | None = None) -> list[HITView]:
        sql = ("SELECT h.*, t.group_id, t.title, t.description, t.keywords, t.reward, t.assignment_duration,"
               " t.auto_approval_delay, t.qualifications FROM hits h JOIN hit_types t ON t.id = h.hit_type_id"
               " WHERE h.seq > ?")
        args: list[Any] = [after_seq]
        if not include_disposed:
            sql += " AND h.disposed = 0"
        if type_id:
            sql += " AND h.hit_type_id = ?"
            args.append(type_id)
        sql += " ORDER BY h.seq LIMIT ?"
        args.append(limit)
        return [self.view(dict(r), now) for r in self.db.execute(sql, args).fetchall()]

    def update_expiration(self, hit_id: str, expire_at: float, now: float) -> None:
        v = self.get_hit(hit_id, now)
        if v.status == "Disposed":
            raise SandboxError(f"Hit {hit_id} has been deleted. {_ms(now)}", "AWS.MechanicalTurk.HITDoesNotExist")
        # A time in the past expires the HIT now.
        self.db.execute("UPDATE hits SET expiration=? WHERE id=?", (max(expire_at, now), hit_id))

    def set_reviewing(self, hit_id: str, revert: bool, now: float) -> None:
        v = self.get_hit(hit_id, now)
        want = "Reviewing" if revert else "Reviewable"
        if v.status != want:
            raise SandboxError(f"This operation can be called with a status of: {want} {_ms(now)}",
                               "AWS.MechanicalTurk.InvalidHITState")
        self.db.execute("UPDATE hits SET reviewing=? WHERE id=?", (0 if revert else 1, hit_id))

    def delete_hit(self, hit_id: str, now: float) -> None:
        v = self.get_hit(hit_id, now)
        if v.status == "Disposed":
            return  # deleting twice is harmless, as on MTurk
        if v.status not in ("Reviewable", "Reviewing"):
            raise SandboxError(
                f"This HIT is currently in the state '{v.status}'. This operation can be called with a"
                f" status of: Reviewing, Reviewable {_ms(now)}", "AWS.MechanicalTurk.InvalidHITState")
        if self.db.execute("SELECT 1 FROM assignments WHERE hit_id=? AND status=?",
                                     (hit_id, SUBMITTED)).fetchone():
            raise SandboxError(
                f"This HIT has assignments that are neither approved nor rejected. {_ms(now)}",
                "AWS.MechanicalTurk.InvalidHITState")
        self.db.execute("UPDATE hits SET disposed=1 WHERE id=?", (hit_id,))

    # -- assignments --------------------------------------------------------------------------------
    def accept(self, hit_id: str, worker_id: str, now: float) -> str:
        """A worker accepts a HIT: one assignment per worker per HIT, at most MaxAssignments."""
        v = self.get_hit(hit_id, now)
        if self.db.execute("SELECT 1 FROM worker_blocks WHERE worker_id=?", (worker_id,)).fetchone():
            raise SandboxError("You have been blocked by this requester.", "AWS.MechanicalTurk.WorkerBlocked")
        row = self.db.execute("SELECT id, status FROM assignments WHERE hit_id=? AND worker_id=?",
                              (hit_id, worker_id)).fetchone()
        if row is not None:
            if row["status"] == ACCEPTED:
                return row["id"]
            raise SandboxError("You have already worked on this HIT.", "AWS.MechanicalTurk.AlreadyWorked")
        if v.status != "Assignable":
            raise SandboxError(f"This HIT is no longer available (status {v.status}).",
                               "AWS.MechanicalTurk.HITNotAvailable")
        aid = new_id()
        self.db.execute(
            "INSERT INTO assignments (id, hit_id, worker_id, status, accept_time, deadline)"
            " VALUES (?,?,?,?,?,?)", (aid, hit_id, worker_id, ACCEPTED, now, now + v.row["assignment_duration"]))
        return aid

    def _assignment(self, assignment_id: str, now: float) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM assignments WHERE id=?", (assignment_id,)).fetchone()
        if row is None:
            raise SandboxError(f"Assignment {assignment_id} does not exist. {_ms(now)}",
                               "AWS.MechanicalTurk.AssignmentDoesNotExist")
        return dict(row)

    def worker_assignment(self, assignment_id: str, now: float) -> dict[str, Any]:
        return self._assignment(assignment_id, now)

    def submit(self, assignment_id: str, answer_xml: str, now: float, *, simulated: bool = False,
               work_time_s: float | None = None) -> None:
        a = self._assignment(assignment_id, now)
        if a["status"] == ABANDONED:
            raise SandboxError("The time allotted for this assignment has passed.",
                               "AWS.MechanicalTurk.AssignmentExpired")
        if a["status"] != ACCEPTED:
            raise SandboxError("This assignment has already been submitted.",
                               "AWS.MechanicalTurk.AssignmentAlreadySubmitted")
        hit = self._hit_row(a["hit_id"], now)
        accept_time = a["accept_time"]
        if work_time_s is not None:
            # Simulated workers report the work time they pretend to have spent (no real sleeping).
            accept_time = now - max(0.0, min(float(work_time_s), hit["assignment_duration"] - 1))
        self.db.execute(
            "UPDATE assignments SET status=?, submit_time=?, auto_approval_time=?, answer=?, simulated=?,"
            " accept_time=? WHERE id=?",
            (SUBMITTED, now, now + hit["auto_approval_delay"], answer_xml, int(simulated), accept_time,
             assignment_id))

    def list_assignments(self, hit_id: str, statuses: list[str], after_seq: int, limit: int,
                         now: float) -> list[dict[str, Any]]:
        self._hit_row(hit_id, now)
        marks = ",".join("?" * len(statuses))
        rows = self.db.execute(
            f"SELECT * FROM assignments WHERE hit_id=? AND status IN ({marks}) AND seq > ? ORDER BY seq LIMIT ?",
            (hit_id, *statuses, after_seq, limit)).fetchall()
        return [dict(r) for r in rows]

    def get_assignment(self, assignment_id: str, now: float) -> tuple[dict[str, Any], HITView]:
        a = self._assignment(assignment_id, now)
        if a["status"] not in DONE:
            raise SandboxError(f"Assignment {assignment_id} does not exist. {_ms(now)}",
                               "AWS.MechanicalTurk.AssignmentDoesNotExist")
        return a, self.get_hit(a["hit_id"], now)

    def approve(self, assignment_id: str, feedback: str | None, override: bool, now: float) -> None:
        a, _ = self.get_assignment(assignment_id, now)
        if a["status"] == REJECTED and override:
            if now - a["rejection_time"] > OVERRIDE_REJECTION_S:
                raise SandboxError(f"The rejection of assignment {assignment_id} can no longer be overridden."
                                   f" {_ms(now)}", "AWS.MechanicalTurk.InvalidAssignmentState")
        elif a["status"] != SUBMITTED:
            raise SandboxError(
                f"This operation can be called with a status of: Submitted (assignment {assignment_id} is"
                f" {a['status']}) {_ms(now)}", "AWS.MechanicalTurk.InvalidAssignmentState")
        self.db.execute("UPDATE assignments SET status=?, approval_time=?, rejection_time=NULL, feedback=?"
                        " WHERE id=?", (APPROVED, now, feedback, assignment_id))

    def reject(self, assignment_id: str, feedback: str, now: float) -> None:
        a, _ = self.get_assignment(assignment_id, now)
        if a["status"] != SUBMITTED:
            raise SandboxError(
                f"This operation can be called with a status of: Submitted (assignment {assignment_id} is"
                f" {a['status']}) {_ms(now)}", "AWS.MechanicalTurk.InvalidAssignmentState")
        self.db.execute("UPDATE assignments SET status=?, rejection_time=?, feedback=? WHERE id=?",
                        (REJECTED, now, feedback, assignment_id))

    # -- money and workers --------------------------------------------------------------------------
    def send_bonus(self, p: dict[str, Any], now: float) -> None:
        token = p.get("UniqueRequestToken")
        if self.check_token("SendBonus", token, now):
            raise SandboxError(f"The idempotency token \"{token}\" has already been processed. {_ms(now)}",
                               "AWS.MechanicalTurk.DuplicateRequest")
        a = self._assignment(p["AssignmentId"], now)
        if a["worker_id"] != p["WorkerId"]:
            raise SandboxError(f"Assignment {a['id']} was not done by worker {p['WorkerId']}. {_ms(now)}",
                               "AWS.MechanicalTurk.InvalidParameterValue")
        if a["status"] not in DONE:
            raise SandboxError(f"Assignment {a['id']} has not been submitted. {_ms(now)}",
                               "AWS.MechanicalTurk.InvalidAssignmentState")
        cur = self.db.execute("INSERT INTO bonuses (worker_id, assignment_id, amount, reason, token, time)"
                              " VALUES (?,?,?,?,?,?)",
                              (p["WorkerId"], a["id"], _money(p["BonusAmount"]), p["Reason"], token, now))
        self.remember_token("SendBonus", token, str(cur.lastrowid), now)

    def list_bonuses(self, *, hit_id: str | None, assignment_id: str | None, after_seq: int,
                     limit: int) -> list[dict[str, Any]]:
        if assignment_id:
            rows = self.db.execute("SELECT * FROM bonuses WHERE assignment_id=? AND seq > ? ORDER BY seq LIMIT ?",
                                   (assignment_id, after_seq, limit))
        else:
            rows = self.db.execute(
                "SELECT b.* FROM bonuses b JOIN assignments a ON a.id = b.assignment_id WHERE a.hit_id=?"
                " AND b.seq > ? ORDER BY b.seq LIMIT ?", (hit_id, after_seq, limit))
        return [dict(r) for r in rows.fetchall()]

    def block(self, worker_id: str, reason: str, now: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO worker_blocks VALUES (?,?,?)", (worker_id, reason, now))

    def unblock(self, worker_id: str) -> None:
        self.db.execute("DELETE FROM worker_blocks WHERE worker_id=?", (worker_id,))

    def list_blocks(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT rowid AS seq, * FROM worker_blocks WHERE rowid > ? ORDER BY rowid LIMIT ?",
                               (after, limit)).fetchall()
        return [dict(r) for r in rows]

    def create_qualification_type(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        if self.db.execute("SELECT 1 FROM qualification_types WHERE name=?", (p["Name"],)).fetchone():
            raise SandboxError(f"You have already created a QualificationType with this name. {_ms(now)}",
                               "AWS.MechanicalTurk.QualificationTypeAlreadyExists")
        data = {k: v for k, v in p.items()}
        data["QualificationTypeId"] = new_id()
        data["CreationTime"] = now
        data.setdefault("IsRequestable", not data.get("AutoGranted", False) and "Test" in data)
        self.db.execute("INSERT INTO qualification_types (id, name, data) VALUES (?,?,?)",
                        (data["QualificationTypeId"], p["Name"], json.dumps(data)))
        return data

    def get_qualification_type(self, qid: str, now: float) -> dict[str, Any]:
        row = self.db.execute("SELECT data FROM qualification_types WHERE id=?", (qid,)).fetchone()
        if row is None:
            raise SandboxError(f"QualificationType {qid} does not exist. {_ms(now)}",
                               "AWS.MechanicalTurk.QualificationTypeDoesNotExist")
        return json.loads(row["data"])

    # -- the worker site ----------------------------------------------------------------------------
    def open_hits(self, now: float, worker_id: str | None = None) -> list[HITView]:
        out = []
        after = 0
        while True:
            page = self.list_hits(now, after, 500)
            if not page:
                return out
            after = page[-1].row["seq"]
            for v in page:
                if v.status != "Assignable":
                    continue
                if worker_id and self.db.execute("SELECT 1 FROM assignments WHERE hit_id=? AND worker_id=?",
                                                 (v.row["id"], worker_id)).fetchone():
                    continue
                out.append(v)

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests and the fault checks)."""
        return {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("hit_types", "hits", "assignments", "bonuses", "worker_blocks", "qualification_types")}


class _Tx:
    """``with store.transaction() as now:`` - the lock, one SQLite transaction, time applied first."""

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> float:
        self.store.lock.acquire()
        try:
            self.store.db.execute("BEGIN IMMEDIATE")
            now = time.time() + self.store._offset()
            self.store.tick(now)
        except BaseException:
            self.store.lock.release()
            raise
        return now

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.store.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store.lock.release()


def _money(v: str) -> str:
    """Normalise a CurrencyAmount ("5", "0.5", "0.50") to two decimals."""
    return f"{float(v):.2f}"

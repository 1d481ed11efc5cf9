"""The ledger: one SQLite file per experiment and target recording everything sent to the crowd platform.

``runs/<experiment>/ledger.<target>.sqlite`` with target ``sandbox``, ``live`` or ``local`` (the local
emulator); targets are never mixed. It holds the items (with, for attention checks, the expected
answer), the planned HITs (slot -> item, the deterministic ``UniqueRequestToken``, state), every
assignment with its raw answer, the parsed scores, bonuses and worker blocks.

Exactly-once publishing rests on the order of writes: a HIT row with its request token is committed
(state ``pending``) before CreateHIT is called, and the HIT id is committed right after it returns; a
rerun retries every ``pending`` row with the same token, so MTurk either creates it or answers
``HitAlreadyExists`` naming the HIT made before the crash. Bonuses follow the same pattern.

Public API used by the other parts (docs/architecture.md section 5): :func:`ledger_path`,
:meth:`Ledger.open`, :meth:`Ledger.hit_items`, :meth:`Ledger.ratings`. SQLite runs in WAL mode so that
readers (``status``, the local emulator, the report) never block a writer.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mturk_eval.config import ASPECTS, ExperimentConfig
from mturk_eval.errors import UserError

TARGETS: tuple[str, ...] = ("sandbox", "live", "local", "prolific", "prolific-emulator")  # prolific*: --platform prolific
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    persona_id TEXT,
    eval_set TEXT NOT NULL,
    method TEXT NOT NULL,
    model TEXT NOT NULL,
    data TEXT NOT NULL,             -- the whole responses.jsonl row as JSON
    attention_check TEXT            -- NULL or {"aspects": {"fluency": 2}, "kind": "garbled", "source": id}
);
CREATE TABLE IF NOT EXISTS hit_types (
    hit_type_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hits (
    hit_key TEXT PRIMARY KEY,       -- "<batch>/<n>", stable across reruns
    batch TEXT NOT NULL,
    request_token TEXT NOT NULL UNIQUE,
    annotation TEXT NOT NULL,
    hit_id TEXT UNIQUE,
    hit_type_id TEXT,
    hit_group_id TEXT,
    state TEXT NOT NULL,            -- pending | created | expired | deleted | failed
    max_assignments INTEGER NOT NULL,
    reward TEXT NOT NULL,
    question_sha TEXT,
    error TEXT,
    planned_at REAL NOT NULL,
    first_attempt_at REAL,
    created_at REAL,
    expiration REAL,
    hit_status TEXT,                -- MTurk's HITStatus, last seen
    assignments_pending INTEGER,
    assignments_available INTEGER,
    assignments_completed INTEGER,
    refreshed_at REAL
);
CREATE TABLE IF NOT EXISTS hit_slots (
    hit_key TEXT NOT NULL REFERENCES hits(hit_key),
    slot INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    PRIMARY KEY (hit_key, slot)
);
CREATE INDEX IF NOT EXISTS hit_slots_item ON hit_slots(item_id);
CREATE TABLE IF NOT EXISTS assignments (
    assignment_id TEXT PRIMARY KEY,
    hit_id TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    status TEXT NOT NULL,           -- MTurk's AssignmentStatus: Submitted | Approved | Rejected
    accept_time REAL,
    submit_time REAL,
    work_time_s REAL,
    answer_xml TEXT NOT NULL,
    valid INTEGER NOT NULL,         -- 1 when all aspects of all slots parsed as integers 1..5
    error TEXT,
    simulated INTEGER NOT NULL DEFAULT 0,
    attention_passed INTEGER,       -- NULL when the assignment holds no attention check
    stored_at REAL NOT NULL,
    review_action TEXT,             -- approved | rejected (by us), with the feedback sent
    feedback TEXT,
    reviewed_at REAL
);
CREATE INDEX IF NOT EXISTS assignments_hit ON assignments(hit_id);
CREATE TABLE IF NOT EXISTS answers (
    assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
    slot INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    aspect TEXT NOT NULL,
    score INTEGER NOT NULL,
    PRIMARY KEY (assignment_id, slot, aspect)
);
CREATE TABLE IF NOT EXISTS bonuses (
    request_token TEXT PRIMARY KEY,
    assignment_id TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,            -- pending | paid
    created_at REAL NOT NULL,
    paid_at REAL
);
CREATE TABLE IF NOT EXISTS blocks (
    worker_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,            -- pending | blocked
    created_at REAL NOT NULL
);
"""


def ledger_path(cfg: ExperimentConfig, target: str) -> Path:
    """``runs/<experiment>/ledger.<target>.sqlite``; ``target`` is sandbox, live or local."""
    if target not in TARGETS:
        raise UserError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    return cfg.run_dir / f"ledger.{target}.sqlite"


@dataclass
class HitRow:
    hit_key: str
    batch: str
    request_token: str
    annotation: str
    hit_id: str | None
    hit_type_id: str | None
    hit_group_id: str | None
    state: str
    max_assignments: int
    reward: str
    first_attempt_at: float | None
    item_ids: list[str]


@dataclass
class AssignmentRow:
    assignment_id: str
    hit_id: str
    worker_id: str
    status: str
    valid: bool
    error: str | None
    simulated: bool
    attention_passed: bool | None
    review_action: str | None
    submit_time: float | None
    work_time_s: float | None


class Ledger:
    """An open ledger. Use :meth:`open`; close with :meth:`close` or as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, create: bool = True) -> "Ledger":
        """Open (and with ``create``, create) the ledger at ``path``."""
        path = Path(path)
        if not create and not path.exists():
            raise UserError(f"{path}: no ledger here yet (nothing published to this target:"
                            " run `mturk-eval publish` first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = None
        try:
            conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise UserError(f"{path}: ledger schema version {row[0]}, expected {SCHEMA_VERSION}")
        except BaseException as exc:
            if conn is not None:
                conn.close()  # a refused ledger keeps no connection (nor its -wal/-shm files) open
            if isinstance(exc, sqlite3.DatabaseError):
                raise UserError(f"{path}: not a readable ledger ({exc})") from None
            raise
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed unit of writes (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def check_bound(self, experiment: str, target: str) -> None:
        """Refuse a ledger recorded as another experiment's or target's (writes nothing)."""
        for key, value in (("experiment", experiment), ("target", target)):
            have = self.get_meta(key)
            if have is not None and have != value:
                raise UserError(f"{self.path}: ledger belongs to {key} {have!r}, not {value!r}")

    def bind(self, experiment: str, target: str) -> None:
        """Record which experiment and target this ledger belongs to; refuse a mismatch."""
        self.check_bound(experiment, target)
        for key, value in (("experiment", experiment), ("target", target)):
            if self.get_meta(key) is None:
                self.set_meta(key, value)

    # ------------------------------------------------------------------ items and plan
    def known_item_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT item_id FROM items")}

    def planned_item_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT item_id FROM hit_slots")}

    def add_plan(self, items: list[dict[str, Any]], hits: list[dict[str, Any]]) -> None:
        """Store new items and planned HITs (state ``pending``) in one transaction.

        ``items``: responses rows, each optionally with ``attention_check``. ``hits``: dicts with
        hit_key, batch, request_token, annotation, max_assignments, reward, item_ids (slot order).
        """
        now = time.time()
        with self.transaction() as c:
            for it in items:
                data = {k: v for k, v in it.items() if k != "attention_check"}
                ac = it.get("attention_check")
                c.execute(
                    "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (it["item_id"], it.get("persona_id"), it["eval_set"], it["method"], it["model"],
                     json.dumps(data, ensure_ascii=False), None if ac is None else json.dumps(ac)),
                )
            for h in hits:
                c.execute(
                    "INSERT INTO hits (hit_key, batch, request_token, annotation, state, max_assignments,"
                    " reward, planned_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                    (h["hit_key"], h["batch"], h["request_token"], h["annotation"], h["max_assignments"],
                     h["reward"], now),
                )
                for slot, item_id in enumerate(h["item_ids"]):
                    c.execute("INSERT INTO hit_slots VALUES (?, ?, ?)", (h["hit_key"], slot, item_id))

    def item(self, item_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT data, attention_check FROM items WHERE item_id=?", (item_id,)).fetchone()
        if row is None:
            raise KeyError(item_id)
        d = json.loads(row["data"])
        d["attention_check"] = None if row["attention_check"] is None else json.loads(row["attention_check"])
        return d

    def _slots(self, hit_key: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT item_id FROM hit_slots WHERE hit_key=? ORDER BY slot", (hit_key,))]

    def hits(self, state: str | None = None, batch: str | None = None) -> list[HitRow]:
        sql, args = "SELECT * FROM hits WHERE 1=1", []
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        if batch is not None:
            sql += " AND batch=?"
            args.append(batch)
        out = []
        for r in self.conn.execute(sql + " ORDER BY planned_at, hit_key", args).fetchall():
            out.append(HitRow(
                hit_key=r["hit_key"], batch=r["batch"], request_token=r["request_token"],
                annotation=r["annotation"], hit_id=r["hit_id"], hit_type_id=r["hit_type_id"],
                hit_group_id=r["hit_group_id"], state=r["state"], max_assignments=r["max_assignments"],
                reward=r["reward"], first_attempt_at=r["first_attempt_at"], item_ids=self._slots(r["hit_key"]),
            ))
        return out

    def batches(self) -> list[str]:
        """The batch labels the ledger has planned HITs under, sorted."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT batch FROM hits ORDER BY batch")]

    def hit_key_for(self, hit_id: str) -> str | None:
        row = self.conn.execute("SELECT hit_key FROM hits WHERE hit_id=?", (hit_id,)).fetchone()
        return None if row is None else row[0]

    def hit_items(self, hit_id: str) -> list[dict[str, Any]]:
        """The items of a HIT (by MTurk HIT id or by hit_key) in slot order, each with ``slot`` and
        ``attention_check`` (``None`` or ``{"aspects": {aspect: max_score}, ...}``). Unknown -> []."""
        key = self.hit_key_for(hit_id) or hit_id
        out = []
        for slot, item_id in enumerate(self._slots(key)):
            d = self.item(item_id)
            d["slot"] = slot
            out.append(d)
        return out

    # ------------------------------------------------------------------ HIT life cycle
    def mark_attempt(self, hit_key: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE hits SET first_attempt_at=COALESCE(first_attempt_at, ?) WHERE hit_key=?",
                      (time.time(), hit_key))

    def record_hit_type(self, hit_type_id: str, settings: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO hit_types VALUES (?, ?, ?)",
                      (hit_type_id, json.dumps(settings, sort_keys=True), time.time()))

    def hit_type_for(self, settings: dict[str, Any]) -> str | None:
        row = self.conn.execute("SELECT hit_type_id FROM hit_types WHERE settings=?",
                                (json.dumps(settings, sort_keys=True),)).fetchone()
        return None if row is None else row[0]

    def record_created(self, hit_key: str, hit_id: str, hit_type_id: str | None, hit_group_id: str | None,
                       question_sha: str | None = None, expiration: float | None = None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE hits SET hit_id=?, hit_type_id=COALESCE(?, hit_type_id), hit_group_id=COALESCE(?, hit_group_id),"
                " state='created', error=NULL, question_sha=COALESCE(?, question_sha), created_at=?,"
                " expiration=COALESCE(?, expiration) WHERE hit_key=?",
                (hit_id, hit_type_id, hit_group_id, question_sha, time.time(), expiration, hit_key),
            )

    def record_hit_error(self, hit_key: str, error: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE hits SET error=? WHERE hit_key=?", (error, hit_key))

    def set_hit_state(self, hit_id: str, state: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE hits SET state=? WHERE hit_id=?", (state, hit_id))

    def record_hit_status(self, hit_id: str, status: str, pending: int | None, available: int | None,
                          completed: int | None, expiration: float | None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE hits SET hit_status=?, assignments_pending=?, assignments_available=?,"
                " assignments_completed=?, expiration=COALESCE(?, expiration), refreshed_at=? WHERE hit_id=?",
                (status, pending, available, completed, expiration, time.time(), hit_id),
            )

    def hit_status_rows(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM hits ORDER BY planned_at, hit_key").fetchall()

    # ------------------------------------------------------------------ assignments and answers
    def store_assignment(self, *, assignment_id: str, hit_id: str, worker_id: str, status: str,
                         accept_time: float | None, submit_time: float | None, answer_xml: str,
                         scores: dict[int, dict[str, int]] | None, error: str | None, simulated: bool,
                         attention_passed: bool | None) -> bool:
        """Insert or update one assignment with its parsed answers in one transaction.

        Returns True when the assignment was new. The answers are written before the row can ever be
        seen as approvable (same transaction), which is what review relies on.
        """
        key = self.hit_key_for(hit_id)
        slots = self._slots(key) if key else []
        work = None if accept_time is None or submit_time is None else max(0.0, submit_time - accept_time)
        with self.transaction() as c:
            existed = c.execute("SELECT 1 FROM assignments WHERE assignment_id=?", (assignment_id,)).fetchone()
            c.execute(
                "INSERT INTO assignments (assignment_id, hit_id, worker_id, status, accept_time, submit_time,"
                " work_time_s, answer_xml, valid, error, simulated, attention_passed, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(assignment_id) DO UPDATE SET status=excluded.status,"
                " accept_time=excluded.accept_time, submit_time=excluded.submit_time,"
                " work_time_s=excluded.work_time_s, answer_xml=excluded.answer_xml, valid=excluded.valid,"
                " error=excluded.error, simulated=excluded.simulated, attention_passed=excluded.attention_passed",
                (assignment_id, hit_id, worker_id, status, accept_time, submit_time, work, answer_xml,
                 int(scores is not None), error, int(simulated),
                 None if attention_passed is None else int(attention_passed), time.time()),
            )
            c.execute("DELETE FROM answers WHERE assignment_id=?", (assignment_id,))
            for slot, aspects in (scores or {}).items():
                for aspect, score in aspects.items():
                    c.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?)",
                              (assignment_id, slot, slots[slot], aspect, score))
        return existed is None

    def set_assignment_status(self, assignment_id: str, status: str, review_action: str | None = None,
                              feedback: str | None = None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE assignments SET status=?, review_action=COALESCE(?, review_action),"
                " feedback=COALESCE(?, feedback), reviewed_at=? WHERE assignment_id=?",
                (status, review_action, feedback, time.time(), assignment_id),
            )

    def assignments(self, hit_id: str | None = None) -> list[AssignmentRow]:
        sql, args = "SELECT * FROM assignments", []
        if hit_id is not None:
            sql += " WHERE hit_id=?"
            args.append(hit_id)
        rows = self.conn.execute(sql + " ORDER BY submit_time, assignment_id", args).fetchall()
        return [AssignmentRow(
            assignment_id=r["assignment_id"], hit_id=r["hit_id"], worker_id=r["worker_id"], status=r["status"],
            valid=bool(r["valid"]), error=r["error"], simulated=bool(r["simulated"]),
            attention_passed=None if r["attention_passed"] is None else bool(r["attention_passed"]),
            review_action=r["review_action"], submit_time=r["submit_time"], work_time_s=r["work_time_s"],
        ) for r in rows]

    def answer_count(self, assignment_id: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM answers WHERE assignment_id=?", (assignment_id,)).fetchone()[0]

    def assignment_record(self, assignment_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM assignments WHERE assignment_id=?", (assignment_id,)).fetchone()

    # ------------------------------------------------------------------ bonuses and blocks
    def bonus(self, request_token: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM bonuses WHERE request_token=?", (request_token,)).fetchone()

    def add_bonus(self, request_token: str, assignment_id: str, worker_id: str, amount: str, reason: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO bonuses VALUES (?, ?, ?, ?, ?, 'pending', ?, NULL)",
                      (request_token, assignment_id, worker_id, amount, reason, time.time()))

    def mark_bonus_paid(self, request_token: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE bonuses SET state='paid', paid_at=? WHERE request_token=?", (time.time(), request_token))

    def bonuses(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM bonuses ORDER BY created_at").fetchall()

    def block(self, worker_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM blocks WHERE worker_id=?", (worker_id,)).fetchone()

    def record_block(self, worker_id: str, reason: str, state: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO blocks VALUES (?, ?, ?, ?) ON CONFLICT(worker_id) DO UPDATE SET"
                      " state=excluded.state, reason=excluded.reason", (worker_id, reason, state, time.time()))

    # ------------------------------------------------------------------ analysis view
    def ratings(self) -> list[dict[str, Any]]:
        """One row per (assignment x item x aspect), the long format of docs/architecture.md section 6.

        Columns: item_id, eval_set, method, model, persona_id, worker_id, assignment_id, aspect, score,
        attention_check (0/1), attention_passed (0/1, or None when the assignment held no attention
        check), simulated (0/1), work_time_s, status (MTurk's AssignmentStatus). Only valid assignments
        have answers; rows come in submit order, then slot and the paper's aspect order.
        """
        order = {a: i for i, a in enumerate(ASPECTS)}
        rows = self.conn.execute(
            "SELECT an.item_id, i.eval_set, i.method, i.model, i.persona_id, a.worker_id, a.assignment_id,"
            " an.aspect, an.score, i.attention_check IS NOT NULL AS attention_check, a.attention_passed,"
            " a.simulated, a.work_time_s, a.status, an.slot, a.submit_time"
            " FROM answers an JOIN assignments a USING (assignment_id) JOIN items i ON i.item_id = an.item_id"
        ).fetchall()
        rows = sorted(rows, key=lambda r: (r["submit_time"] or 0.0, r["assignment_id"], r["slot"],
                                           order.get(r["aspect"], 99)))
        return [{
            "item_id": r["item_id"], "eval_set": r["eval_set"], "method": r["method"], "model": r["model"],
            "persona_id": r["persona_id"], "worker_id": r["worker_id"], "assignment_id": r["assignment_id"],
            "aspect": r["aspect"], "score": int(r["score"]), "attention_check": int(r["attention_check"]),
            "attention_passed": r["attention_passed"], "simulated": int(r["simulated"]),
            "work_time_s": r["work_time_s"], "status": r["status"],
        } for r in rows]

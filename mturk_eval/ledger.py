"""The ledger: one SQLite file per experiment and target recording everything sent to the crowd platform.

``runs/<experiment>/ledger.<target>.sqlite`` (target ``sandbox``, ``live`` or ``local``; targets are
never mixed). Schema 2 speaks the platform-neutral terms of :mod:`mturk_eval.platforms.crowd_platform`:
the items (with, for attention checks, the expected answer), the planned *tasks* (slot -> item, the
deterministic request token, state), every *submission* with the platform's raw answer and its fields,
the parsed scores, bonuses and rater blocks. It records, when created, its experiment, target,
platform (registry name) and instance (MTurk: the endpoint URL or the bundled sandbox's state file;
the rating site: its URL and study id); a verb aimed at another instance is refused.

A schema-1 ledger (MTurk terms: hits, assignments, workers) is migrated in place the first time it is
opened, after a copy is kept beside it (``ledger.<target>.sqlite.schema1.bak``).

Exactly-once publishing rests on the order of writes: a task row with its request token is committed
(state ``pending``) before the platform is asked to create it, and the task id is committed right after
it returns; a rerun retries every ``pending`` row with the same token, so the platform either creates it
or names the task made before the crash. Bonuses follow the same pattern.

Public API used by the other parts (docs/architecture.md section 5): :func:`ledger_path`,
:meth:`Ledger.open`, :meth:`Ledger.task_items`, :meth:`Ledger.ratings`. SQLite runs in WAL mode so that
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

TARGETS: tuple[str, ...] = ("sandbox", "live", "local", "links", "prolific", "prolific-emulator")  # links: the rating site's invite links; prolific*: --platform prolific
SCHEMA_VERSION = 2

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
CREATE TABLE IF NOT EXISTS task_types (
    type_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    task_key TEXT PRIMARY KEY,      -- "<batch>/<n>", stable across reruns
    batch TEXT NOT NULL,
    request_token TEXT NOT NULL UNIQUE,
    annotation TEXT NOT NULL,
    task_id TEXT UNIQUE,            -- the platform's id (MTurk: HITId)
    type_id TEXT,
    group_id TEXT,
    state TEXT NOT NULL,            -- pending | created | expired | deleted | failed
    places INTEGER NOT NULL,        -- submissions wanted, each from a different rater
    reward TEXT NOT NULL,
    question_sha TEXT,
    error TEXT,
    planned_at REAL NOT NULL,
    first_attempt_at REAL,
    created_at REAL,
    expiration REAL,
    platform_status TEXT,           -- the platform's own word for the task's state, last seen
    submissions_pending INTEGER,    -- in progress
    places_available INTEGER,
    submissions_completed INTEGER,  -- reviewed (approved or rejected)
    refreshed_at REAL
);
CREATE TABLE IF NOT EXISTS task_slots (
    task_key TEXT NOT NULL REFERENCES tasks(task_key),
    slot INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    PRIMARY KEY (task_key, slot)
);
CREATE INDEX IF NOT EXISTS task_slots_item ON task_slots(item_id);
CREATE TABLE IF NOT EXISTS submissions (
    submission_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    rater_id TEXT NOT NULL,
    status TEXT NOT NULL,           -- Submitted | Approved | Rejected
    accept_time REAL,
    submit_time REAL,
    work_time_s REAL,
    raw_answer TEXT NOT NULL,       -- the platform's answer document, verbatim (MTurk: QuestionFormAnswers)
    fields TEXT,                    -- the answer as a JSON object {field: value}; NULL when unreadable
    valid INTEGER NOT NULL,         -- 1 when all aspects of all slots parsed as integers 1..5
    error TEXT,
    simulated INTEGER NOT NULL DEFAULT 0,
    attention_passed INTEGER,       -- NULL when the submission holds no attention check
    stored_at REAL NOT NULL,
    review_action TEXT,             -- approved | rejected (by us), with the feedback sent
    feedback TEXT,
    reviewed_at REAL
);
CREATE INDEX IF NOT EXISTS submissions_task ON submissions(task_id);
CREATE TABLE IF NOT EXISTS answers (
    submission_id TEXT NOT NULL REFERENCES submissions(submission_id),
    slot INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    aspect TEXT NOT NULL,
    score INTEGER NOT NULL,
    PRIMARY KEY (submission_id, slot, aspect)
);
CREATE TABLE IF NOT EXISTS bonuses (
    request_token TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    rater_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,            -- pending | paid
    created_at REAL NOT NULL,
    paid_at REAL
);
CREATE TABLE IF NOT EXISTS blocks (
    rater_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,            -- pending | blocked
    created_at REAL NOT NULL
);
"""

# Schema 1 -> 2: (table, new table name or None, {old column: new column}).
_RENAMES_1_TO_2 = [
    ("hit_types", "task_types", {"hit_type_id": "type_id"}),
    ("hits", "tasks", {"hit_key": "task_key", "hit_id": "task_id", "hit_type_id": "type_id",
                       "hit_group_id": "group_id", "max_assignments": "places", "hit_status": "platform_status",
                       "assignments_pending": "submissions_pending", "assignments_available": "places_available",
                       "assignments_completed": "submissions_completed"}),
    ("hit_slots", "task_slots", {"hit_key": "task_key"}),
    ("assignments", "submissions", {"assignment_id": "submission_id", "hit_id": "task_id", "worker_id": "rater_id",
                                    "answer_xml": "raw_answer"}),
    ("answers", None, {"assignment_id": "submission_id"}),
    ("bonuses", None, {"assignment_id": "submission_id", "worker_id": "rater_id"}),
    ("blocks", None, {"worker_id": "rater_id"}),
]
# What a schema-1 ledger was made against: every one of them was MTurk; "local" named no URL.
_V1_INSTANCES = {"sandbox": "https://mturk-requester-sandbox.us-east-1.amazonaws.com",
                 "live": "https://mturk-requester.us-east-1.amazonaws.com"}


def _migrate_1_to_2(conn: sqlite3.Connection, path: Path) -> None:
    """Keep a copy of the schema-1 file, then rename its tables and columns to schema 2 in one
    transaction (the answers' fields are read out of the stored QuestionFormAnswers)."""
    backup = path.with_name(path.name + ".schema1.bak")
    if not backup.exists():
        dest = sqlite3.connect(str(backup))
        try:
            conn.backup(dest)
        finally:
            dest.close()
    from mturk_eval.platforms.mturk.answers import AnswerError, parse_fields

    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP INDEX IF EXISTS hit_slots_item")
        conn.execute("DROP INDEX IF EXISTS assignments_hit")
        for table, new, columns in _RENAMES_1_TO_2:
            for old_col, new_col in columns.items():
                conn.execute(f"ALTER TABLE {table} RENAME COLUMN {old_col} TO {new_col}")
            if new:
                conn.execute(f"ALTER TABLE {table} RENAME TO {new}")
        conn.execute("ALTER TABLE submissions ADD COLUMN fields TEXT")
        for sid, raw in conn.execute("SELECT submission_id, raw_answer FROM submissions").fetchall():
            try:
                fields = json.dumps(parse_fields(raw), ensure_ascii=False)
            except AnswerError:
                fields = None
            conn.execute("UPDATE submissions SET fields=? WHERE submission_id=?", (fields, sid))
        target = conn.execute("SELECT value FROM meta WHERE key='target'").fetchone()
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('platform', 'mturk')")
        if target is not None and target[0] in _V1_INSTANCES:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('instance', ?)", (_V1_INSTANCES[target[0]],))
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def ledger_path(cfg: ExperimentConfig, target: str) -> Path:
    """``runs/<experiment>/ledger.<target>.sqlite``; ``target`` is sandbox, live, local or links."""
    if target not in TARGETS:
        raise UserError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    return cfg.run_dir / f"ledger.{target}.sqlite"


@dataclass
class TaskRow:
    task_key: str
    batch: str
    request_token: str
    annotation: str
    task_id: str | None
    type_id: str | None
    group_id: str | None
    state: str
    places: int
    reward: str
    first_attempt_at: float | None
    item_ids: list[str]


@dataclass
class SubmissionRow:
    submission_id: str
    task_id: str
    rater_id: str
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
            row = None
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and row[0] == "1":
                _migrate_1_to_2(conn, path)
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

    def check_bound(self, experiment: str, target: str, platform: str | None = None,
                    instance: str | None = None) -> None:
        """Refuse a ledger recorded as another experiment's, target's, platform's or instance's (writes
        nothing). ``platform``/``instance`` None or "": not checked (a caller that cannot name them)."""
        for key, value in (("experiment", experiment), ("target", target), ("platform", platform)):
            have = self.get_meta(key)
            if value and have is not None and have != value:
                raise UserError(f"{self.path}: ledger belongs to {key} {have!r}, not {value!r}")
        have = self.get_meta("instance")
        if instance and have is not None and have != instance:
            raise UserError(f"{self.path}: this ledger's tasks were made on {have}, not on {instance}; aim the"
                            " command at that instance, or use another experiment name for a new study")

    def bind(self, experiment: str, target: str, platform: str | None = None, instance: str | None = None) -> None:
        """Record which experiment, target, platform and instance this ledger belongs to (those not
        recorded yet); refuse a mismatch."""
        self.check_bound(experiment, target, platform, instance)
        for key, value in (("experiment", experiment), ("target", target), ("platform", platform),
                           ("instance", instance)):
            if value and self.get_meta(key) is None:
                self.set_meta(key, value)

    # ------------------------------------------------------------------ items and plan
    def known_item_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT item_id FROM items")}

    def planned_item_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT item_id FROM task_slots")}

    def add_plan(self, items: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> None:
        """Store new items and planned tasks (state ``pending``) in one transaction.

        ``items``: responses rows, each optionally with ``attention_check``. ``tasks``: dicts with
        task_key, batch, request_token, annotation, places, reward, item_ids (slot order).
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
            for h in tasks:
                c.execute(
                    "INSERT INTO tasks (task_key, batch, request_token, annotation, state, places,"
                    " reward, planned_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                    (h["task_key"], h["batch"], h["request_token"], h["annotation"], h["places"],
                     h["reward"], now),
                )
                for slot, item_id in enumerate(h["item_ids"]):
                    c.execute("INSERT INTO task_slots VALUES (?, ?, ?)", (h["task_key"], slot, item_id))

    def item(self, item_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT data, attention_check FROM items WHERE item_id=?", (item_id,)).fetchone()
        if row is None:
            raise KeyError(item_id)
        d = json.loads(row["data"])
        d["attention_check"] = None if row["attention_check"] is None else json.loads(row["attention_check"])
        return d

    def _slots(self, task_key: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT item_id FROM task_slots WHERE task_key=? ORDER BY slot", (task_key,))]

    def tasks(self, state: str | None = None, batch: str | None = None) -> list[TaskRow]:
        sql, args = "SELECT * FROM tasks WHERE 1=1", []
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        if batch is not None:
            sql += " AND batch=?"
            args.append(batch)
        out = []
        for r in self.conn.execute(sql + " ORDER BY planned_at, task_key", args).fetchall():
            out.append(TaskRow(
                task_key=r["task_key"], batch=r["batch"], request_token=r["request_token"],
                annotation=r["annotation"], task_id=r["task_id"], type_id=r["type_id"],
                group_id=r["group_id"], state=r["state"], places=r["places"],
                reward=r["reward"], first_attempt_at=r["first_attempt_at"], item_ids=self._slots(r["task_key"]),
            ))
        return out

    def batches(self) -> list[str]:
        """The batch labels the ledger has planned tasks under, sorted."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT batch FROM tasks ORDER BY batch")]

    def task_key_for(self, task_id: str) -> str | None:
        row = self.conn.execute("SELECT task_key FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        return None if row is None else row[0]

    def task_items(self, task_id: str) -> list[dict[str, Any]]:
        """The items of a task (by the platform's task id or by task_key) in slot order, each with ``slot``
        and ``attention_check`` (``None`` or ``{"aspects": {aspect: max_score}, ...}``). Unknown -> []."""
        key = self.task_key_for(task_id) or task_id
        out = []
        for slot, item_id in enumerate(self._slots(key)):
            d = self.item(item_id)
            d["slot"] = slot
            out.append(d)
        return out

    # ------------------------------------------------------------------ task life cycle
    def mark_attempt(self, task_key: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE tasks SET first_attempt_at=COALESCE(first_attempt_at, ?) WHERE task_key=?",
                      (time.time(), task_key))

    def record_task_type(self, type_id: str, settings: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO task_types VALUES (?, ?, ?)",
                      (type_id, json.dumps(settings, sort_keys=True), time.time()))

    def task_type_for(self, settings: dict[str, Any]) -> str | None:
        row = self.conn.execute("SELECT type_id FROM task_types WHERE settings=?",
                                (json.dumps(settings, sort_keys=True),)).fetchone()
        return None if row is None else row[0]

    def record_created(self, task_key: str, task_id: str, type_id: str | None, group_id: str | None,
                       question_sha: str | None = None, expiration: float | None = None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE tasks SET task_id=?, type_id=COALESCE(?, type_id), group_id=COALESCE(?, group_id),"
                " state='created', error=NULL, question_sha=COALESCE(?, question_sha), created_at=?,"
                " expiration=COALESCE(?, expiration) WHERE task_key=?",
                (task_id, type_id, group_id, question_sha, time.time(), expiration, task_key),
            )

    def record_task_error(self, task_key: str, error: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE tasks SET error=? WHERE task_key=?", (error, task_key))

    def set_task_state(self, task_id: str, state: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE tasks SET state=? WHERE task_id=?", (state, task_id))

    def record_task_status(self, task_id: str, status: str, pending: int | None, available: int | None,
                           completed: int | None, expiration: float | None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE tasks SET platform_status=?, submissions_pending=?, places_available=?,"
                " submissions_completed=?, expiration=COALESCE(?, expiration), refreshed_at=? WHERE task_id=?",
                (status, pending, available, completed, expiration, time.time(), task_id),
            )

    def task_status_rows(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM tasks ORDER BY planned_at, task_key").fetchall()

    # ------------------------------------------------------------------ submissions and answers
    def store_submission(self, *, submission_id: str, task_id: str, rater_id: str, status: str,
                         accept_time: float | None, submit_time: float | None, raw_answer: str,
                         scores: dict[int, dict[str, int]] | None, error: str | None, simulated: bool,
                         attention_passed: bool | None, fields: dict[str, str] | None = None) -> bool:
        """Insert or update one submission with its parsed answers in one transaction.

        Returns True when the submission was new. The answers are written before the row can ever be
        seen as approvable (same transaction), which is what review relies on.
        """
        key = self.task_key_for(task_id)
        slots = self._slots(key) if key else []
        work = None if accept_time is None or submit_time is None else max(0.0, submit_time - accept_time)
        fields_json = None if fields is None else json.dumps(fields, ensure_ascii=False)
        with self.transaction() as c:
            existed = c.execute("SELECT 1 FROM submissions WHERE submission_id=?", (submission_id,)).fetchone()
            c.execute(
                "INSERT INTO submissions (submission_id, task_id, rater_id, status, accept_time, submit_time,"
                " work_time_s, raw_answer, fields, valid, error, simulated, attention_passed, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(submission_id) DO UPDATE SET status=excluded.status,"
                " accept_time=excluded.accept_time, submit_time=excluded.submit_time,"
                " work_time_s=excluded.work_time_s, raw_answer=excluded.raw_answer, fields=excluded.fields,"
                " valid=excluded.valid, error=excluded.error, simulated=excluded.simulated,"
                " attention_passed=excluded.attention_passed",
                (submission_id, task_id, rater_id, status, accept_time, submit_time, work, raw_answer, fields_json,
                 int(scores is not None), error, int(simulated),
                 None if attention_passed is None else int(attention_passed), time.time()),
            )
            c.execute("DELETE FROM answers WHERE submission_id=?", (submission_id,))
            for slot, aspects in (scores or {}).items():
                for aspect, score in aspects.items():
                    c.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?)",
                              (submission_id, slot, slots[slot], aspect, score))
        return existed is None

    def set_submission_status(self, submission_id: str, status: str, review_action: str | None = None,
                              feedback: str | None = None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE submissions SET status=?, review_action=COALESCE(?, review_action),"
                " feedback=COALESCE(?, feedback), reviewed_at=? WHERE submission_id=?",
                (status, review_action, feedback, time.time(), submission_id),
            )

    def submissions(self, task_id: str | None = None) -> list[SubmissionRow]:
        sql, args = "SELECT * FROM submissions", []
        if task_id is not None:
            sql += " WHERE task_id=?"
            args.append(task_id)
        rows = self.conn.execute(sql + " ORDER BY submit_time, submission_id", args).fetchall()
        return [SubmissionRow(
            submission_id=r["submission_id"], task_id=r["task_id"], rater_id=r["rater_id"], status=r["status"],
            valid=bool(r["valid"]), error=r["error"], simulated=bool(r["simulated"]),
            attention_passed=None if r["attention_passed"] is None else bool(r["attention_passed"]),
            review_action=r["review_action"], submit_time=r["submit_time"], work_time_s=r["work_time_s"],
        ) for r in rows]

    def answer_count(self, submission_id: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM answers WHERE submission_id=?",
                                 (submission_id,)).fetchone()[0]

    def submission_record(self, submission_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM submissions WHERE submission_id=?", (submission_id,)).fetchone()

    def submission_fields(self, submission_id: str) -> dict[str, str]:
        """The stored answer as ``{field: value}`` ({} when the platform's answer could not be read)."""
        rec = self.submission_record(submission_id)
        return {} if rec is None or rec["fields"] is None else json.loads(rec["fields"])

    # ------------------------------------------------------------------ bonuses and blocks
    def bonus(self, request_token: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM bonuses WHERE request_token=?", (request_token,)).fetchone()

    def add_bonus(self, request_token: str, submission_id: str, rater_id: str, amount: str, reason: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO bonuses VALUES (?, ?, ?, ?, ?, 'pending', ?, NULL)",
                      (request_token, submission_id, rater_id, amount, reason, time.time()))

    def mark_bonus_paid(self, request_token: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE bonuses SET state='paid', paid_at=? WHERE request_token=?", (time.time(), request_token))

    def bonuses(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM bonuses ORDER BY created_at").fetchall()

    def block(self, rater_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM blocks WHERE rater_id=?", (rater_id,)).fetchone()

    def record_block(self, rater_id: str, reason: str, state: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO blocks VALUES (?, ?, ?, ?) ON CONFLICT(rater_id) DO UPDATE SET"
                      " state=excluded.state, reason=excluded.reason", (rater_id, reason, state, time.time()))

    # ------------------------------------------------------------------ analysis view
    def invalid_submissions(self) -> tuple[int, list[str]]:
        """Submissions whose answers could not be read (``valid = 0``, no ratings): their number and up to
        three of their errors, for the report's warnings."""
        n = self.conn.execute("SELECT COUNT(*) FROM submissions WHERE valid = 0").fetchone()[0]
        errors = [r[0] for r in self.conn.execute(
            "SELECT DISTINCT error FROM submissions WHERE valid = 0 AND error IS NOT NULL LIMIT 3")]
        return int(n), errors

    def ratings(self) -> list[dict[str, Any]]:
        """One row per (submission x item x aspect), the long format of docs/architecture.md section 6.

        Columns (unchanged since schema 1, so the analysis reads every ledger alike): item_id, eval_set,
        method, model, persona_id, worker_id (the rater id), assignment_id (the submission id), aspect,
        score, attention_check (0/1), attention_passed (0/1, or None when the submission held no attention
        check), simulated (0/1), work_time_s, status (Submitted | Approved | Rejected). Only valid
        submissions have answers; rows come in submit order, then slot and the paper's aspect order.
        """
        order = {a: i for i, a in enumerate(ASPECTS)}
        rows = self.conn.execute(
            "SELECT an.item_id, i.eval_set, i.method, i.model, i.persona_id, s.rater_id, s.submission_id,"
            " an.aspect, an.score, i.attention_check IS NOT NULL AS attention_check, s.attention_passed,"
            " s.simulated, s.work_time_s, s.status, an.slot, s.submit_time"
            " FROM answers an JOIN submissions s USING (submission_id) JOIN items i ON i.item_id = an.item_id"
        ).fetchall()
        rows = sorted(rows, key=lambda r: (r["submit_time"] or 0.0, r["submission_id"], r["slot"],
                                           order.get(r["aspect"], 99)))
        return [{
            "item_id": r["item_id"], "eval_set": r["eval_set"], "method": r["method"], "model": r["model"],
            "persona_id": r["persona_id"], "worker_id": r["rater_id"], "assignment_id": r["submission_id"],
            "aspect": r["aspect"], "score": int(r["score"]), "attention_check": int(r["attention_check"]),
            "attention_passed": r["attention_passed"], "simulated": int(r["simulated"]),
            "work_time_s": r["work_time_s"], "status": r["status"],
        } for r in rows]

    # ------------------------------------------------------------------ participants (privacy engineer)
    # Access and deletion requests (mturk_eval/actions/participants.py, docs/participants.md). A deletion
    # leaves tombstones: SHA-256 digests of the rater id and of each deleted submission id, so collect
    # does not store those submissions again (is_deleted); the ids themselves are gone.
    _TOMBSTONES = """
    CREATE TABLE IF NOT EXISTS deleted_raters (
        rater_sha256 TEXT PRIMARY KEY, deleted_at REAL NOT NULL, submissions INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS deleted_submissions (
        submission_sha256 TEXT PRIMARY KEY, deleted_at REAL NOT NULL);
    """

    def rater_ids(self) -> list[str]:
        """Every rater id the ledger holds (submissions, bonuses, blocks)."""
        return [r[0] for r in self.conn.execute(
            "SELECT rater_id FROM submissions UNION SELECT rater_id FROM bonuses UNION SELECT rater_id FROM blocks")]

    def rater_record(self, rater_id: str) -> dict[str, list[dict[str, Any]]]:
        """Everything stored about one rater: ``submissions`` (each row with its ``answers`` rows and
        ``fields`` decoded), ``bonuses`` and ``blocks``, as plain dicts of the stored columns."""
        subs = []
        for a in self.conn.execute("SELECT * FROM submissions WHERE rater_id=? ORDER BY submit_time, submission_id",
                                   (rater_id,)).fetchall():
            d = dict(a)
            d["fields"] = None if a["fields"] is None else json.loads(a["fields"])
            d["answers"] = [dict(r) for r in self.conn.execute(
                "SELECT slot, item_id, aspect, score FROM answers WHERE submission_id=? ORDER BY slot, aspect",
                (a["submission_id"],))]
            subs.append(d)
        return {
            "submissions": subs,
            "bonuses": [dict(b) for b in self.conn.execute(
                "SELECT * FROM bonuses WHERE rater_id=? ORDER BY created_at", (rater_id,))],
            "blocks": [dict(b) for b in self.conn.execute("SELECT * FROM blocks WHERE rater_id=?", (rater_id,))],
        }

    def rater_unsettled(self, rater_id: str) -> tuple[list[str], list[str]]:
        """The rater's submissions not yet reviewed, and the submissions of their pending bonuses."""
        subs = [r[0] for r in self.conn.execute(
            "SELECT submission_id FROM submissions WHERE rater_id=? AND status='Submitted'", (rater_id,))]
        bonuses = [r[0] for r in self.conn.execute(
            "SELECT submission_id FROM bonuses WHERE rater_id=? AND state='pending'", (rater_id,))]
        return subs, bonuses

    def delete_rater(self, rater_id: str) -> dict[str, int]:
        """Remove one rater's submissions, answers, bonuses, blocks and id in one transaction, leave the
        tombstones, then rewrite the file (VACUUM, WAL truncated) so no removed byte remains in it.
        Returns the rows removed by table."""
        import hashlib

        def sha(v: str) -> str:
            return hashlib.sha256(v.encode("utf-8")).hexdigest()

        self.conn.execute("PRAGMA secure_delete=ON")
        self.conn.executescript(self._TOMBSTONES)
        now = time.time()
        with self.transaction() as c:
            ids = [r[0] for r in c.execute("SELECT submission_id FROM submissions WHERE rater_id=?", (rater_id,))]
            out = {"answers": 0}
            for sid in ids:
                out["answers"] += c.execute("DELETE FROM answers WHERE submission_id=?", (sid,)).rowcount
                c.execute("INSERT OR IGNORE INTO deleted_submissions VALUES (?, ?)", (sha(sid), now))
            for table in ("submissions", "bonuses", "blocks"):
                out[table] = c.execute(f"DELETE FROM {table} WHERE rater_id=?", (rater_id,)).rowcount
            c.execute("INSERT INTO deleted_raters VALUES (?, ?, ?) ON CONFLICT(rater_sha256) DO UPDATE SET "
                      "submissions=submissions+excluded.submissions, deleted_at=excluded.deleted_at",
                      (sha(rater_id), now, len(ids)))
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return out

    def is_deleted(self, rater_id: str, submission_id: str) -> bool:
        """Whether a submission, or its rater, was deleted at the participant's request."""
        import hashlib

        try:
            row = self.conn.execute(
                "SELECT 1 FROM deleted_raters WHERE rater_sha256=? UNION ALL "
                "SELECT 1 FROM deleted_submissions WHERE submission_sha256=? LIMIT 1",
                (hashlib.sha256(rater_id.encode("utf-8")).hexdigest(),
                 hashlib.sha256(submission_id.encode("utf-8")).hexdigest())).fetchone()
        except sqlite3.OperationalError:  # no tombstone tables: nothing was ever deleted here
            return False
        return row is not None

    def answer_fields(self) -> Iterator[dict[str, str]]:
        """Every stored submission's answer as ``{field: value}`` (for the report's free-text check);
        submissions whose answer could not be read are left out."""
        for (fields,) in self.conn.execute("SELECT fields FROM submissions WHERE fields IS NOT NULL"):
            yield json.loads(fields)

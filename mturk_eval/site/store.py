"""The rating site's own state: ``runs/<experiment>/site.sqlite`` (SQLite, WAL), the platform side of a study.

The site is the platform for invite links and the place where Prolific participants and MTurk
ExternalQuestion workers do their tasks, so this file holds what a crowd platform's server would: the
tasks and who may still take them, never the analysis (that is the ledger's). Everything that changes
state runs in one SQLite write transaction (``BEGIN IMMEDIATE``), so concurrent arrivals, several
gunicorn workers and a process killed half-way never over-allocate a task or store an answer set twice.
Write transactions queue on a lock of their own before SQLite sees them (a thread lock, then
``fcntl.flock`` on ``site.sqlite.lock`` beside the store, across processes): a waiting writer wakes the
moment the lock is free, where SQLite's busy handler would sleep-poll in steps of up to 100 ms. Commits
use ``synchronous=NORMAL`` in WAL mode: durable when a process is killed at any point, not against a
power loss or an operating-system crash, which can lose the last commits (docs/architecture.md, section 8).

Words used here:

- **batch**: one publish run's tasks (``batch_id`` is the publish label). It carries its items (texts and,
  for attention checks, the expected answer), ``k`` (places per task = ``hit.assignments_per_hit``),
  ``reservation_s`` (``hit.assignment_duration_s``) and a state ``open`` | ``closed``.
- **task**: ``items_per_hit`` items in slot order (planned by the task builder), with ``k`` places.
- **rater**: ``(platform, rater_id)``; ``links`` raters come from invites, ``mturk`` from workerId,
  ``prolific`` from PROLIFIC_PID. A blocked rater gets no task and cannot submit.
- **assignment**: one rater's place on one task, from reservation to review. States: ``reserved``
  (until ``expires_at``), ``submitted``, ``approved``, ``rejected``, ``returned`` (the rater or the
  platform gave it back), ``expired`` (the reservation lapsed). A place is taken while an assignment is
  reserved (and not lapsed), submitted or approved; a rejected (excluded) submission frees its place so
  that every item can still end with ``k`` accepted ratings.
- **invite**: an unguessable token (``secrets.token_urlsafe``) naming one ``links`` rater; revocable.
- **consent / onboarding**: a rater's recorded decision (agree | decline, with time and the sha256 of
  the text shown) and onboarding completion.

API (the links and Prolific platforms, the participants verb and the site itself use only these):

``SiteStore.open(path)``; ``close()``.
Batches: ``add_batch(batch_id, items, tasks, k, reservation_s, language, settings) -> [task_id]``
(idempotent: the same batch again returns its task ids; a different one is refused), ``batch(id)``,
``batches()``, ``close_batch(id)``, ``reopen_batch(id)``, ``update_settings(id, **settings)``;
``add_task(batch_id, task_key, items, k, reservation_s, request_token, annotation) -> (task_id, created)``
(task by task, exactly once per request token), ``tasks_by_annotation(set)``, ``close_task(task_id)``,
``task(task_id)``, ``task_open(task_id)``, ``task_items(task_id)``, ``task_ids(batch_id)``,
``task_ids_open()`` (tasks that can take a rater now).
Invites: ``create_invites(n) -> [Invite]``, ``invite(token)``, ``invites()``, ``revoke_invite(token)``.
Raters: ``rater(platform, rater_id)``, ``block_rater(platform, rater_id, reason)``, ``unblock_rater``.
Allocation: ``allocate(platform, rater_id, batch_ids=None, ref=None, extra=None, now=None) ->
Assignment | None`` (None: no task left for this rater), ``reserve_task(platform, rater_id, task_id,
ref=None, extra=None, now=None) -> Assignment`` (the task is fixed, e.g. by an MTurk HIT),
``current(platform, rater_id)``, ``assignment(aid)``, ``by_ref(platform, ref)``,
``release(aid, state="returned")``, ``release_rater(platform, rater_id, state="returned", ref=None,
submitted=False)`` (for a platform that reports a participant RETURNED or TIMED-OUT; ``submitted=True``
also frees a submitted, unreviewed assignment with that ref, answers kept), ``expire_lapsed(now)``.
Submitting: ``submit(aid, answers: dict[field, value], work_time_s=None, simulated=False, now=None) ->
SubmitResult`` (exactly once: a second submit stores nothing and says ``stored=False``).
Results: ``submissions(batch_id=None, since=None)``, ``review(aid, "approved" | "rejected", feedback)``,
``progress(batch_id=None) -> dict``, ``item_counts(batch_id=None) -> {item_id: n}``.
Participants: ``consent(platform, rater_id)``, ``record_consent(platform, rater_id, decision, text_sha)``,
``onboarding(platform, rater_id)``, ``record_onboarding(platform, rater_id, answers)``,
``rater_data(platform, rater_id) -> dict`` and ``delete_rater(platform, rater_id) -> dict`` (counts).
``secret(name)``: a per-site random secret kept in the store (CSRF signing, the requester token).

Answers are ``dict[field, value]`` with the rating form's field names (``i{slot}_{aspect}`` -> "1".."5",
docs/architecture.md). Times are Unix seconds; every method takes ``now`` so tests can move the clock.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
import weakref
from concurrent.futures import Future, TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from mturk_eval.errors import UserError

SCHEMA_VERSION = 2     # 2: tasks.used, kept by triggers (a schema-1 store is migrated on open)
PLATFORMS = ("links", "mturk", "prolific")
TAKEN = ("reserved", "submitted", "approved")      # states that hold a place (reserved: until it lapses)
DONE = ("submitted", "approved", "rejected")       # states that mean the rater did the task
STATES = ("reserved", "submitted", "approved", "rejected", "returned", "expired")

BATCH_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
TASK_RE = re.compile(r"t[0-9a-f]{20}")
ASSIGNMENT_RE = re.compile(r"[0-9a-f]{24}")
INVITE_RE = re.compile(r"[A-Za-z0-9_-]{22}")
# Rater ids by platform: invite raters r0001...; MTurk worker ids; Prolific participant ids (24 hex).
RATER_RE = {
    "links": re.compile(r"r[0-9]{4,9}"),
    "mturk": re.compile(r"A[A-Z0-9]{1,63}"),
    "prolific": re.compile(r"[0-9a-f]{24}"),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    language TEXT NOT NULL,
    k INTEGER NOT NULL,
    reservation_s REAL NOT NULL,
    state TEXT NOT NULL,             -- open | closed
    settings TEXT NOT NULL,          -- JSON: platform-specific extras (completion codes, ...)
    fingerprint TEXT NOT NULL,       -- sha256 of items + tasks, to refuse a different batch of the same id
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    item_id TEXT NOT NULL,
    data TEXT NOT NULL,              -- the item as JSON (responses.jsonl row, attention_check if any)
    PRIMARY KEY (batch_id, item_id)
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    task_key TEXT NOT NULL,          -- the builder's key, "<batch>/<n>"
    seq INTEGER NOT NULL,
    k INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',  -- open | closed (expired by the requester: no new reservations)
    request_token TEXT UNIQUE,       -- the workflow's idempotency key (add_task)
    annotation TEXT,
    used INTEGER NOT NULL DEFAULT 0  -- places held: its assignments reserved (lapsed ones until expire_lapsed
                                     -- marks them), submitted or approved; kept by the triggers in _PLACES
);
CREATE INDEX IF NOT EXISTS tasks_batch ON tasks(batch_id, seq);
CREATE TABLE IF NOT EXISTS task_slots (
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    slot INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    PRIMARY KEY (task_id, slot)
);
CREATE INDEX IF NOT EXISTS task_slots_item ON task_slots(item_id);
CREATE TABLE IF NOT EXISTS raters (
    platform TEXT NOT NULL,
    rater_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    blocked INTEGER NOT NULL DEFAULT 0,
    block_reason TEXT,
    PRIMARY KEY (platform, rater_id)
);
CREATE TABLE IF NOT EXISTS assignments (
    assignment_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    batch_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    rater_id TEXT NOT NULL,
    ref TEXT,                        -- the platform's own id for it (MTurk assignmentId, Prolific SESSION_ID)
    state TEXT NOT NULL,
    reserved_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    submitted_at REAL,
    work_time_s REAL,
    answers TEXT,                    -- JSON {field: value}
    simulated INTEGER NOT NULL DEFAULT 0,
    extra TEXT NOT NULL DEFAULT '{}',-- JSON: platform extras (hitId, turkSubmitTo, STUDY_ID, ...)
    reviewed_at REAL,
    feedback TEXT,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS assignments_task ON assignments(task_id, state);
CREATE INDEX IF NOT EXISTS assignments_rater ON assignments(platform, rater_id, state);
CREATE INDEX IF NOT EXISTS assignments_lapse ON assignments(state, expires_at);
CREATE UNIQUE INDEX IF NOT EXISTS assignments_ref ON assignments(platform, ref) WHERE ref IS NOT NULL;
CREATE TABLE IF NOT EXISTS invites (
    token TEXT PRIMARY KEY,
    rater_id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS consents (
    platform TEXT NOT NULL,
    rater_id TEXT NOT NULL,
    decision TEXT NOT NULL,          -- agree | decline
    text_sha TEXT NOT NULL,
    decided_at REAL NOT NULL,
    PRIMARY KEY (platform, rater_id)
);
CREATE TABLE IF NOT EXISTS onboarding (
    platform TEXT NOT NULL,
    rater_id TEXT NOT NULL,
    answers TEXT NOT NULL,
    completed_at REAL NOT NULL,
    PRIMARY KEY (platform, rater_id)
);
"""

# What keeps ``tasks.used`` equal to the count of its assignments holding a place (reserved, submitted
# or approved), whichever statement changes them, and the index the allocation walks: a batch's open
# tasks with a free place, fullest first. Allocation then takes the first task the rater may do instead
# of counting every task's assignments (55-75 us a reservation at 40 tasks, 1.3-1.5 ms at 1000, inside
# the write lock every writer queues on; 19 us either way now). A list, not a script: the schema-1
# migration runs it inside its transaction.
_HOLDS = "(" + ", ".join(f"'{state}'" for state in TAKEN) + ")"
_PLACES = (
    "CREATE TRIGGER IF NOT EXISTS assignments_hold_insert AFTER INSERT ON assignments"
    f" WHEN NEW.state IN {_HOLDS} BEGIN UPDATE tasks SET used = used + 1 WHERE task_id = NEW.task_id; END",
    "CREATE TRIGGER IF NOT EXISTS assignments_hold_update AFTER UPDATE OF state ON assignments"
    f" WHEN (OLD.state IN {_HOLDS}) != (NEW.state IN {_HOLDS}) BEGIN UPDATE tasks SET used = used"
    f" + CASE WHEN NEW.state IN {_HOLDS} THEN 1 ELSE -1 END WHERE task_id = NEW.task_id; END",
    "CREATE TRIGGER IF NOT EXISTS assignments_hold_delete AFTER DELETE ON assignments"
    f" WHEN OLD.state IN {_HOLDS} BEGIN UPDATE tasks SET used = used - 1 WHERE task_id = OLD.task_id; END",
    "CREATE INDEX IF NOT EXISTS tasks_free ON tasks(batch_id, used DESC, seq) WHERE state = 'open' AND used < k",
)
_SCHEMA += "".join(f"{sql};\n" for sql in _PLACES)


def _schema1(conn: sqlite3.Connection) -> bool:
    """Whether the file holds a schema-1 store: its tasks have no ``used`` column (also a schema-1 store
    left without its version row, by a process stopped while it created the file)."""
    columns = [r[1] for r in conn.execute("PRAGMA table_info(tasks)").fetchall()]
    return bool(columns) and "used" not in columns


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2 in the caller's write transaction: ``tasks.used`` counted from the assignments, its
    triggers and index."""
    if not _schema1(conn):
        return                                      # another process migrated it meanwhile
    conn.execute("ALTER TABLE tasks ADD COLUMN used INTEGER NOT NULL DEFAULT 0")
    conn.execute(f"UPDATE tasks SET used = (SELECT COUNT(*) FROM assignments a WHERE a.task_id = tasks.task_id"
                 f" AND a.state IN {_HOLDS})")
    for sql in _PLACES:
        conn.execute(sql)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2') ON CONFLICT(key) DO UPDATE SET value='2'")


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    task_id: str
    batch_id: str
    platform: str
    rater_id: str
    ref: str | None
    state: str
    reserved_at: float
    expires_at: float
    submitted_at: float | None
    work_time_s: float | None
    answers: dict[str, str] | None
    simulated: bool
    extra: dict[str, Any]
    reviewed_at: float | None
    feedback: str | None

    def live(self, now: float) -> bool:
        """A reservation that has not lapsed."""
        return self.state == "reserved" and self.expires_at > now


@dataclass(frozen=True)
class SubmitResult:
    stored: bool          # False: nothing was stored (already submitted, or refused: see ``reason``)
    assignment: Assignment
    reason: str | None = None   # None | "already_submitted" | "ended" | "full" | "closed" | "blocked"


@dataclass(frozen=True)
class Invite:
    token: str
    rater_id: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class Batch:
    batch_id: str
    language: str
    k: int
    reservation_s: float
    state: str
    settings: dict[str, Any] = field(default_factory=dict)


def _row_assignment(r: sqlite3.Row) -> Assignment:
    return Assignment(
        assignment_id=r["assignment_id"], task_id=r["task_id"], batch_id=r["batch_id"], platform=r["platform"],
        rater_id=r["rater_id"], ref=r["ref"], state=r["state"], reserved_at=r["reserved_at"],
        expires_at=r["expires_at"], submitted_at=r["submitted_at"], work_time_s=r["work_time_s"],
        answers=json.loads(r["answers"]) if r["answers"] else None, simulated=bool(r["simulated"]),
        extra=json.loads(r["extra"] or "{}"), reviewed_at=r["reviewed_at"], feedback=r["feedback"])


def task_id_for(batch_id: str, task_key: str) -> str:
    """A task's id: stable for (batch, key), so a publish rerun finds the tasks it made."""
    return "t" + hashlib.sha256(f"{batch_id}\x1f{task_key}".encode()).hexdigest()[:20]


def check_rater(platform: str, rater_id: str) -> None:
    if platform not in RATER_RE:
        raise UserError(f"platform: expected one of {', '.join(PLATFORMS)}, got {platform!r}")
    if not isinstance(rater_id, str) or not RATER_RE[platform].fullmatch(rater_id):
        raise UserError(f"rater id: {rater_id!r} is not a valid {platform} rater id")


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: a thread's connection goes when the thread does
    (the development server runs each request in a new thread)."""


# A passive checkpoint (the WAL copied into the database) after every this many of a process's write
# transactions, run by a thread of the process's own, outside the write lock: SQLite's automatic one runs
# inside COMMIT, which would hold every other writer up for its 4-9 ms (its default, 1000 pages, is
# about 100-300 of the site's transactions).
CHECKPOINT_EVERY = 200
# A checkpoint beside busy writers never catches up with them, and SQLite starts the WAL again from its
# beginning only after one that did: past this many frames since it last started (16 MB of 4 kB pages;
# a burst of 200 raters writes about 2,500) the checkpoint copies the last frames under the writers' lock.
WAL_FRAMES_LIMIT = 4000
BUSY_TIMEOUT_S = 30   # a writer waits this long for another (SQLite's busy timeout, and the lock file's)


class _LockFile:
    """The writers' lock across processes: ``flock(LOCK_EX)`` on ``path``, taken the moment it is free
    and given up after a timeout, as SQLite gives up on a busy database (a writer stopped while holding
    the lock, a paused process, must not hang every request for ever). The kernel drops the lock of a
    killed process. Callers in one process take turns on the store's thread lock first, so at most one
    thread of a process waits here.

    Why a thread: a blocking ``flock`` wakes at once when the lock is released but cannot time out, and
    polling with ``LOCK_NB`` leaves the lock idle until the next poll (with 0.5 ms steps a burst of 200
    raters lost 40-50 ms that way, the writers' lock being the one thing they queue on). So a wait is
    handed to a waiter thread (a daemon, started on the first wait; ``close`` ends it), which blocks in
    ``flock``; the caller waits for it with a timeout. A wait that times out (or is interrupted) leaves
    its descriptor to the waiter, which drops and closes it once the lock comes, and the process opens a
    new one: a lock is held by the open file description, so the stale wait can never be taken for a
    later caller's."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._pid = 0                   # the process that opened it (a fork opens its own)
        self._waits: Any = None         # the waiter thread's queue, in this process

    def _descriptor(self) -> int:
        if self._pid != os.getpid():    # inherited over a fork: the parent's lock and waiter are its own
            if self._fd is not None:
                os.close(self._fd)
            self._fd, self._waits = None, None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self, timeout_s: float) -> None:
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if self._waits is None:
            waits: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=_lock_waiter, args=(waits,), name="site-store-lock", daemon=True).start()
            self._waits = waits         # only once its thread runs
        taken: Future = Future()
        self._waits.put((fd, taken))
        try:
            taken.result(timeout_s)
        except BaseException as exc:    # the timeout, or an interrupt while waiting: the wait is abandoned
            self._fd = None
            taken.add_done_callback(lambda _f: _drop(fd))
            if isinstance(exc, FutureTimeout):
                raise sqlite3.OperationalError("database is locked") from None
            raise

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._fd is not None:
                os.close(self._fd)
            if self._waits is not None:
                self._waits.put(None)   # the waiter ends once the waits queued before are done
        self._fd, self._waits = None, None


def _lock_waiter(waits: "queue.SimpleQueue[tuple[int, Future] | None]") -> None:
    while (wait := waits.get()) is not None:
        fd, taken = wait
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            taken.set_exception(exc)
        else:
            taken.set_result(None)


def _drop(fd: int) -> None:
    """An abandoned wait's descriptor, once its wait ended: unlocked and closed."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
    os.close(fd)


class _Checkpointer:
    """The store's WAL checkpoints, run by a thread of their own in each process (a daemon with its own
    connection, started on first use, ended by ``close``): ``soon()`` wakes it. A checkpoint writes and
    syncs the database file (7-9 ms here), which neither the request that asked for it nor the writers
    queued on the lock should wait for; one still running when the next is due absorbs it."""

    def __init__(self, path: str, write_lock: threading.Lock, lock_file: _LockFile):
        self.path = path
        self._write_lock, self._lock_file = write_lock, lock_file
        self._lock = threading.Lock()
        self._due: threading.Event | None = None     # the running thread's; None: no thread started yet
        self._thread: threading.Thread | None = None

    def soon(self) -> None:
        try:
            with self._lock:
                # a thread that died, or the parent's after a fork (not alive in the child), is started again
                if self._due is None or not self._thread.is_alive():
                    due = threading.Event()
                    thread = threading.Thread(target=self._run, args=(due,), name="site-store-checkpoint", daemon=True)
                    thread.start()
                    self._due, self._thread = due, thread
                self._due.set()
        except RuntimeError:
            pass        # no thread can start now (interpreter exit, a thread limit): the next write tries again

    def close(self) -> None:
        with self._lock:
            due, self._due = self._due, None
        if due is not None:
            due.set()   # the thread finds itself retired and ends

    def _run(self, due: threading.Event) -> None:
        conn = None
        try:
            while True:
                due.wait()
                due.clear()
                with self._lock:
                    if self._due is not due:
                        return
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                               check_same_thread=False)
                    self.checkpoint(conn)
                except sqlite3.Error:
                    pass    # another process is checkpointing, say: the next one catches up
        finally:
            if conn is not None:
                conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """A passive checkpoint; when the WAL has not started again for ``WAL_FRAMES_LIMIT`` frames (the
        writers never left a checkpoint time to copy the frames they added meanwhile), the last frames
        too, under the writers' lock, so that the next writer starts it again."""
        # read to the end: a statement left pending keeps its read lock, and the WAL never restarts
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        if frames > WAL_FRAMES_LIMIT:
            with self._write_lock:
                self._lock_file.acquire(BUSY_TIMEOUT_S)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    self._lock_file.release()


class SiteStore:
    """The site's SQLite store. Safe across threads (one connection per thread) and processes (SQLite
    locking; writes in ``BEGIN IMMEDIATE`` transactions)."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._conns: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()        # this process's writers, one at a time
        self._lock_file = _LockFile(f"{path}.lock")  # then all processes' writers, one at a time
        self._commits = 0                          # this process's write transactions, for the checkpoints
        self._checkpoints = _Checkpointer(str(path), self._write_lock, self._lock_file)

    @classmethod
    def open(cls, path: str | Path, create: bool = True) -> "SiteStore":
        path = Path(path)
        if not create and not path.exists():
            raise UserError(f"{path}: no rating-site store here yet (publish to the rating site first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(path)
        try:
            conn = store._conn()
            if _schema1(conn):
                with store._write(conn):
                    _migrate_1_to_2(conn)
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            store.close()
            raise UserError(f"{path}: not a readable rating-site store ({exc})") from None
        except OSError as exc:      # its lock file, beside it
            store.close()
            raise UserError(f"{exc.filename or path}: cannot open ({exc.strerror})") from None
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            with store._write(conn):
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            store.close()
            raise UserError(f"{path}: rating-site store schema {row[0]}, expected {SCHEMA_VERSION}")
        return store

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False,
                                   factory=_Connection)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            conn.execute("PRAGMA wal_autocheckpoint=0")     # the store runs its own, see _Checkpointer
            self._local.conn = conn
            with self._lock:
                self._conns.add(conn)
        return conn

    def close(self) -> None:
        self._checkpoints.close()
        with self._lock:
            for c in list(self._conns):
                c.close()
            self._conns = weakref.WeakSet()
        self._local = threading.local()
        with self._write_lock:
            self._lock_file.close()

    def __enter__(self) -> "SiteStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before any read (BEGIN IMMEDIATE): no two writers interleave.
        Writers queue on the thread lock and the lock file first, so SQLite never finds the database
        busy with another of our writers (its busy handler sleeps instead of waking when the lock is
        free). The kernel drops a killed process's flock, so a crash never leaves the lock held. Every
        ``CHECKPOINT_EVERY`` transactions the process checkpoints the WAL, in a thread of its own."""
        conn = conn or self._conn()
        with self._write_lock:
            self._commits += 1
            checkpoint = self._commits % CHECKPOINT_EVERY == 0
            self._lock_file.acquire(BUSY_TIMEOUT_S)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                self._lock_file.release()
        if checkpoint:
            self._checkpoints.soon()

    # ------------------------------------------------------------------ secrets
    def secret(self, name: str) -> str:
        """A random secret created on first use and kept (so signed forms survive a restart)."""
        key = f"secret:{name}"
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row:
            return row[0]
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, secrets.token_urlsafe(32)))
            return c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as c:
            c.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                      (key, value))

    # ------------------------------------------------------------------ batches and tasks
    def add_batch(self, batch_id: str, items: list[dict[str, Any]], tasks: list[dict[str, Any]], *, k: int,
                  reservation_s: float, language: str = "en", settings: dict[str, Any] | None = None,
                  now: float | None = None) -> list[str]:
        """Load one batch: ``items`` (each with ``item_id``), ``tasks`` (each ``{"task_key", "item_ids"}``
        in slot order). Returns the task ids in order. The same batch again is a no-op; a batch id
        reused for different items, tasks or k is refused (publish under a new batch label)."""
        if not BATCH_RE.fullmatch(batch_id or ""):
            raise UserError(f"batch: expected 1-40 characters of [A-Za-z0-9_.-], got {batch_id!r}")
        if k < 1 or reservation_s <= 0:
            raise UserError(f"batch {batch_id}: k must be >= 1 and the reservation time > 0")
        by_id = {it["item_id"]: it for it in items}
        for t in tasks:
            for iid in t["item_ids"]:
                if iid not in by_id:
                    raise UserError(f"batch {batch_id}: task {t['task_key']} names unknown item {iid!r}")
        fp = hashlib.sha256(json.dumps([k, [[t["task_key"], t["item_ids"]] for t in tasks],
                                        sorted(by_id)], sort_keys=True).encode()).hexdigest()
        now = time.time() if now is None else now
        ids = [task_id_for(batch_id, t["task_key"]) for t in tasks]
        with self._write() as c:
            old = c.execute("SELECT fingerprint FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
            if old is not None:
                if old[0] != fp:
                    raise UserError(f"batch {batch_id!r} is already on the rating site with other tasks;"
                                    " publish under a new --batch label")
                return ids
            seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM batches").fetchone()[0]
            c.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                      (batch_id, seq, language, k, float(reservation_s), json.dumps(settings or {}), fp, now))
            c.executemany("INSERT INTO items VALUES (?, ?, ?)",
                          [(batch_id, iid, json.dumps(it, ensure_ascii=False)) for iid, it in by_id.items()])
            for n, (tid, t) in enumerate(zip(ids, tasks)):
                c.execute("INSERT INTO tasks (task_id, batch_id, task_key, seq, k) VALUES (?, ?, ?, ?, ?)",
                          (tid, batch_id, t["task_key"], n, k))
                c.executemany("INSERT INTO task_slots VALUES (?, ?, ?)",
                              [(tid, s, iid) for s, iid in enumerate(t["item_ids"])])
        return ids

    def add_task(self, batch_id: str, task_key: str, items: list[dict[str, Any]], *, k: int, reservation_s: float,
                 request_token: str, annotation: str = "", language: str = "en",
                 now: float | None = None) -> tuple[str, bool]:
        """Add one task (its batch created on first use), exactly once per ``request_token``: returns
        (task id, created). The same token again returns the task made before; the batch's k and
        reservation time must match. Used by platforms that publish task by task (links, Prolific)."""
        if not BATCH_RE.fullmatch(batch_id or ""):
            raise UserError(f"batch: expected 1-40 characters of [A-Za-z0-9_.-], got {batch_id!r}")
        now = time.time() if now is None else now
        tid = task_id_for(batch_id, task_key)
        with self._write() as c:
            old = c.execute("SELECT task_id FROM tasks WHERE request_token=?", (request_token,)).fetchone()
            if old is not None:
                return old[0], False
            b = c.execute("SELECT k, reservation_s FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
            if b is None:
                seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM batches").fetchone()[0]
                c.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, 'open', '{}', 'incremental', ?)",
                          (batch_id, seq, language, k, float(reservation_s), now))
            elif b["k"] != k or b["reservation_s"] != float(reservation_s):
                raise UserError(f"batch {batch_id!r} on the rating site has {b['k']} places per task and"
                                f" {b['reservation_s']:g} s reservations; publish changed settings under a new"
                                " --batch label")
            if c.execute("SELECT 1 FROM tasks WHERE task_id=?", (tid,)).fetchone():
                raise UserError(f"task {task_key!r} of batch {batch_id!r} is already on the rating site with"
                                " other items")
            for it in items:
                c.execute("INSERT OR IGNORE INTO items VALUES (?, ?, ?)",
                          (batch_id, it["item_id"], json.dumps(it, ensure_ascii=False)))
            seq = c.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM tasks WHERE batch_id=?", (batch_id,)).fetchone()[0]
            c.execute("INSERT INTO tasks (task_id, batch_id, task_key, seq, k, request_token, annotation)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)", (tid, batch_id, task_key, seq, k, request_token, annotation))
            c.executemany("INSERT INTO task_slots VALUES (?, ?, ?)",
                          [(tid, n, it["item_id"]) for n, it in enumerate(items)])
        return tid, True

    def tasks_by_annotation(self, annotations: set[str]) -> dict[str, str]:
        """{annotation: task id} for tasks added with one of ``annotations``."""
        rows = self._conn().execute("SELECT annotation, task_id FROM tasks WHERE annotation IS NOT NULL").fetchall()
        return {r[0]: r[1] for r in rows if r[0] in annotations}

    def close_task(self, task_id: str, now: float | None = None) -> None:
        """No new reservations on this task (open ones are ended; submissions stay)."""
        now = time.time() if now is None else now
        with self._write() as c:
            if c.execute("UPDATE tasks SET state='closed' WHERE task_id=?", (task_id,)).rowcount == 0:
                raise UserError(f"task {task_id!r}: not on the rating site")
            c.execute("UPDATE assignments SET state='expired', ended_at=? WHERE task_id=? AND state='reserved'",
                      (now, task_id))

    def batch(self, batch_id: str) -> Batch | None:
        r = self._conn().execute("SELECT * FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
        return Batch(r["batch_id"], r["language"], r["k"], r["reservation_s"], r["state"],
                     json.loads(r["settings"])) if r else None

    def batches(self) -> list[Batch]:
        rows = self._conn().execute("SELECT batch_id FROM batches ORDER BY seq").fetchall()
        return [self.batch(r[0]) for r in rows]

    def update_settings(self, batch_id: str, **settings: Any) -> None:
        """Merge platform settings into a batch (e.g. the Prolific completion codes)."""
        with self._write() as c:
            r = c.execute("SELECT settings FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
            if r is None:
                raise UserError(f"batch {batch_id!r}: not on the rating site")
            merged = {**json.loads(r[0]), **settings}
            c.execute("UPDATE batches SET settings=? WHERE batch_id=?", (json.dumps(merged), batch_id))

    def close_batch(self, batch_id: str, now: float | None = None) -> int:
        """No new reservations in this batch; open reservations are ended (state ``expired``). Returns how
        many reservations were ended. Submissions already made stay."""
        now = time.time() if now is None else now
        with self._write() as c:
            if c.execute("UPDATE batches SET state='closed' WHERE batch_id=?", (batch_id,)).rowcount == 0:
                raise UserError(f"batch {batch_id!r}: not on the rating site")
            return c.execute("UPDATE assignments SET state='expired', ended_at=? WHERE batch_id=? AND"
                             " state='reserved'", (now, batch_id)).rowcount

    def reopen_batch(self, batch_id: str) -> None:
        with self._write() as c:
            c.execute("UPDATE batches SET state='open' WHERE batch_id=?", (batch_id,))

    def task(self, task_id: str) -> dict[str, Any] | None:
        r = self._conn().execute("SELECT * FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        return dict(r) if r else None

    def task_open(self, task_id: str) -> bool:
        """Whether the task takes reservations and submissions: it and its batch are open."""
        r = self._conn().execute("SELECT t.state = 'open' AND b.state = 'open' FROM tasks t JOIN batches b"
                                 " USING (batch_id) WHERE t.task_id=?", (task_id,)).fetchone()
        return bool(r and r[0])

    def task_ids(self, batch_id: str) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT task_id FROM tasks WHERE batch_id=? ORDER BY seq",
                                                   (batch_id,))]

    def task_ids_open(self) -> list[str]:
        """Tasks that can take a rater now (open, in an open batch, a place free), in the order
        :meth:`allocate` fills them when all are equally full."""
        return [r[0] for r in self._conn().execute(
            "SELECT t.task_id FROM tasks t JOIN batches b USING (batch_id) WHERE t.state = 'open' AND b.state = 'open'"
            " AND t.used < t.k ORDER BY b.seq, t.seq")]

    def task_items(self, task_id: str) -> list[dict[str, Any]]:
        """The task's items in slot order (as given to :meth:`add_batch`)."""
        rows = self._conn().execute(
            "SELECT i.data FROM task_slots s JOIN tasks t ON t.task_id = s.task_id"
            " JOIN items i ON i.batch_id = t.batch_id AND i.item_id = s.item_id"
            " WHERE s.task_id=? ORDER BY s.slot", (task_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ invites and raters
    def create_invites(self, n: int, now: float | None = None) -> list[Invite]:
        """``n`` new invite-link raters (``r0001``, ``r0002``, ... continuing the numbering)."""
        now = time.time() if now is None else now
        out = []
        with self._write() as c:
            start = c.execute("SELECT COUNT(*) FROM invites").fetchone()[0]
            for i in range(start + 1, start + n + 1):
                tok, rid = secrets.token_urlsafe(16), f"r{i:04d}"
                c.execute("INSERT INTO invites VALUES (?, ?, ?, NULL)", (tok, rid, now))
                self._ensure_rater(c, "links", rid, now)
                out.append(Invite(tok, rid, now, None))
        return out

    def invite(self, token: str) -> Invite | None:
        if not isinstance(token, str) or not INVITE_RE.fullmatch(token):
            return None
        r = self._conn().execute("SELECT * FROM invites WHERE token=?", (token,)).fetchone()
        return Invite(r["token"], r["rater_id"], r["created_at"], r["revoked_at"]) if r else None

    def invites(self) -> list[Invite]:
        return [Invite(r["token"], r["rater_id"], r["created_at"], r["revoked_at"])
                for r in self._conn().execute("SELECT * FROM invites ORDER BY rater_id")]

    def invite_for(self, rater_id: str) -> Invite | None:
        r = self._conn().execute("SELECT * FROM invites WHERE rater_id=?", (rater_id,)).fetchone()
        return Invite(r["token"], r["rater_id"], r["created_at"], r["revoked_at"]) if r else None

    def revoke_invite(self, token_or_rater: str, now: float | None = None) -> Invite:
        """Revoke by token or rater id; the rater's open reservation is returned."""
        now = time.time() if now is None else now
        with self._write() as c:
            r = c.execute("SELECT * FROM invites WHERE token=? OR rater_id=?", (token_or_rater,) * 2).fetchone()
            if r is None:
                raise UserError(f"invite: {token_or_rater!r} is neither an invite token nor an invited rater")
            c.execute("UPDATE invites SET revoked_at=COALESCE(revoked_at, ?) WHERE token=?", (now, r["token"]))
            c.execute("UPDATE assignments SET state='returned', ended_at=? WHERE platform='links' AND rater_id=?"
                      " AND state='reserved'", (now, r["rater_id"]))
        return self.invite(r["token"])

    @staticmethod
    def _ensure_rater(c: sqlite3.Connection, platform: str, rater_id: str, now: float) -> None:
        c.execute("INSERT OR IGNORE INTO raters (platform, rater_id, created_at) VALUES (?, ?, ?)",
                  (platform, rater_id, now))

    def rater(self, platform: str, rater_id: str) -> dict[str, Any] | None:
        r = self._conn().execute("SELECT * FROM raters WHERE platform=? AND rater_id=?",
                                 (platform, rater_id)).fetchone()
        return dict(r) if r else None

    def block_rater(self, platform: str, rater_id: str, reason: str, now: float | None = None) -> None:
        """Block a rater: no new task, no submit; an open reservation is returned."""
        now = time.time() if now is None else now
        with self._write() as c:
            self._ensure_rater(c, platform, rater_id, now)
            c.execute("UPDATE raters SET blocked=1, block_reason=? WHERE platform=? AND rater_id=?",
                      (reason, platform, rater_id))
            c.execute("UPDATE assignments SET state='returned', ended_at=? WHERE platform=? AND rater_id=?"
                      " AND state='reserved'", (now, platform, rater_id))

    def unblock_rater(self, platform: str, rater_id: str) -> None:
        with self._write() as c:
            c.execute("UPDATE raters SET blocked=0, block_reason=NULL WHERE platform=? AND rater_id=?",
                      (platform, rater_id))

    # ------------------------------------------------------------------ allocation
    def expire_lapsed(self, now: float | None = None, conn: sqlite3.Connection | None = None) -> int:
        """Mark lapsed reservations ``expired`` (their places are free again). Returns how many."""
        now = time.time() if now is None else now
        if conn is not None:
            return conn.execute("UPDATE assignments SET state='expired', ended_at=expires_at"
                                " WHERE state='reserved' AND expires_at <= ?", (now,)).rowcount
        with self._write() as c:
            return self.expire_lapsed(now, c)

    def _new_assignment(self, c: sqlite3.Connection, task: sqlite3.Row, platform: str, rater_id: str,
                        ref: str | None, extra: dict[str, Any] | None, now: float) -> Assignment:
        """Reserve a place on ``task`` (a row with ``task_id``, ``batch_id`` and its batch's ``reservation_s``)."""
        aid, extra_json = secrets.token_hex(12), json.dumps(extra or {})
        expires = now + task["reservation_s"]
        c.execute("INSERT INTO assignments (assignment_id, task_id, batch_id, platform, rater_id, ref, state,"
                  " reserved_at, expires_at, extra) VALUES (?, ?, ?, ?, ?, ?, 'reserved', ?, ?, ?)",
                  (aid, task["task_id"], task["batch_id"], platform, rater_id, ref, now, expires, extra_json))
        return Assignment(assignment_id=aid, task_id=task["task_id"], batch_id=task["batch_id"], platform=platform,
                          rater_id=rater_id, ref=ref, state="reserved", reserved_at=now, expires_at=expires,
                          submitted_at=None, work_time_s=None, answers=None, simulated=False,
                          extra=json.loads(extra_json), reviewed_at=None, feedback=None)

    def _blocked(self, c: sqlite3.Connection, platform: str, rater_id: str) -> bool:
        r = c.execute("SELECT blocked FROM raters WHERE platform=? AND rater_id=?", (platform, rater_id)).fetchone()
        return bool(r and r[0])

    def allocate(self, platform: str, rater_id: str, batch_ids: list[str] | None = None, *, ref: str | None = None,
                 extra: dict[str, Any] | None = None, now: float | None = None) -> Assignment | None:
        """The rater's task: their live reservation if they hold one (a reload or a second tab gets the
        same task), else a new reservation on a task of an open batch (of ``batch_ids``, or any) with a
        free place, that the rater has not done and none of whose items they have rated or hold. Fuller
        tasks first, so items complete early. ``None``: nothing left for this rater (or blocked)."""
        check_rater(platform, rater_id)
        now = time.time() if now is None else now
        with self._write() as c:
            self.expire_lapsed(now, c)
            self._ensure_rater(c, platform, rater_id, now)
            if self._blocked(c, platform, rater_id):
                return None
            batch_sql, args = "", []
            if batch_ids is not None:
                if not batch_ids:
                    return None
                batch_sql = f" AND a.batch_id IN ({','.join('?' * len(batch_ids))})"
                args = list(batch_ids)
            held = c.execute(
                "SELECT a.* FROM assignments a JOIN batches b USING (batch_id) WHERE a.platform=? AND a.rater_id=?"
                f" AND a.state='reserved' AND b.state='open'{batch_sql}"
                " ORDER BY a.reserved_at LIMIT 1", (platform, rater_id, *args)).fetchone()
            if held is not None:
                return _row_assignment(held)
            for (batch_id,) in c.execute("SELECT batch_id FROM batches WHERE state = 'open' ORDER BY seq").fetchall():
                if batch_ids is not None and batch_id not in batch_ids:
                    continue
                # the batch's open tasks with a free place, fullest first (index tasks_free), but none
                # sharing an item with one the rater holds or did: the rater's items are looked up once
                # (a handful), not per candidate task
                task = c.execute(
                    "SELECT t.*, b.reservation_s FROM tasks t JOIN batches b ON b.batch_id = t.batch_id"
                    " WHERE t.batch_id = ? AND t.state = 'open' AND t.used < t.k"
                    "   AND t.task_id NOT IN (SELECT s.task_id FROM task_slots s WHERE s.item_id IN ("
                    "     SELECT s2.item_id FROM assignments a JOIN task_slots s2 ON s2.task_id = a.task_id"
                    "     WHERE a.platform = ? AND a.rater_id = ?"
                    "       AND a.state IN ('reserved', 'submitted', 'approved', 'rejected')))"
                    " ORDER BY t.used DESC, t.seq LIMIT 1", (batch_id, platform, rater_id)).fetchone()
                if task is not None:
                    return self._new_assignment(c, task, platform, rater_id, ref, extra, now)
            return None

    def reserve_task(self, platform: str, rater_id: str, task_id: str, *, ref: str | None = None,
                     extra: dict[str, Any] | None = None, now: float | None = None) -> Assignment:
        """A place on one given task (MTurk's HIT fixes the task). The same ``ref`` again, or the rater's
        live reservation of this task, returns that assignment. For MTurk, whose own assignment limit is
        authoritative, a new assignment on a full task takes the place of the oldest unsubmitted one. UserError when the task is unknown, its
        batch closed, it is full, the rater did it or one of its items, or the rater is blocked."""
        check_rater(platform, rater_id)
        now = time.time() if now is None else now
        with self._write() as c:
            self.expire_lapsed(now, c)
            if ref is not None:
                old = c.execute("SELECT * FROM assignments WHERE platform=? AND ref=?", (platform, ref)).fetchone()
                if old is not None:
                    if old["task_id"] != task_id or old["rater_id"] != rater_id:
                        raise UserError("this assignment belongs to another task or rater")
                    return _row_assignment(old)
            task = c.execute("SELECT t.*, b.state AS batch_state, b.reservation_s FROM tasks t JOIN batches b"
                             " USING (batch_id) WHERE t.task_id=?", (task_id,)).fetchone()
            if task is None:
                raise UserError(f"task {task_id!r}: no such task")
            if task["batch_state"] != "open" or task["state"] != "open":
                raise UserError("this batch is closed")
            self._ensure_rater(c, platform, rater_id, now)
            if self._blocked(c, platform, rater_id):
                raise UserError("this rater is blocked")
            mine = c.execute("SELECT * FROM assignments WHERE task_id=? AND platform=? AND rater_id=? AND"
                             " state IN ('reserved', 'submitted', 'approved', 'rejected')",
                             (task_id, platform, rater_id)).fetchone()
            if mine is not None:
                if mine["state"] == "reserved" and ref is None:
                    return _row_assignment(mine)
                raise UserError("you have already done this task")
            seen = c.execute("SELECT 1 FROM task_slots s JOIN task_slots s2 ON s2.item_id = s.item_id"
                             " JOIN assignments a ON a.task_id = s2.task_id WHERE s.task_id=? AND a.platform=?"
                             " AND a.rater_id=? AND a.state IN ('reserved', 'submitted', 'approved', 'rejected')"
                             " LIMIT 1", (task_id, platform, rater_id)).fetchone()
            if seen is not None:
                raise UserError("you have already rated an item of this task")
            used = task["used"]
            if used >= task["k"] and platform == "mturk" and ref is not None:
                # MTurk hands out at most k assignments at once: a new one means an older assignment was
                # returned or abandoned there, so its reservation here gives way (oldest first).
                stale = c.execute("SELECT assignment_id FROM assignments WHERE task_id=? AND platform='mturk'"
                                  " AND state='reserved' ORDER BY reserved_at LIMIT 1", (task_id,)).fetchone()
                if stale is not None:
                    c.execute("UPDATE assignments SET state='returned', ended_at=? WHERE assignment_id=?",
                              (now, stale[0]))
                    used -= 1
            if used >= task["k"]:
                raise UserError("this task has no free place left")
            return self._new_assignment(c, task, platform, rater_id, ref, extra, now)

    def assignment(self, assignment_id: str) -> Assignment | None:
        if not isinstance(assignment_id, str) or not ASSIGNMENT_RE.fullmatch(assignment_id):
            return None
        r = self._conn().execute("SELECT * FROM assignments WHERE assignment_id=?", (assignment_id,)).fetchone()
        return _row_assignment(r) if r else None

    def by_ref(self, platform: str, ref: str) -> Assignment | None:
        r = self._conn().execute("SELECT * FROM assignments WHERE platform=? AND ref=?", (platform, ref)).fetchone()
        return _row_assignment(r) if r else None

    def current(self, platform: str, rater_id: str, now: float | None = None) -> Assignment | None:
        """The rater's live reservation, if any."""
        now = time.time() if now is None else now
        r = self._conn().execute("SELECT * FROM assignments WHERE platform=? AND rater_id=? AND state='reserved'"
                                 " AND expires_at > ? ORDER BY reserved_at LIMIT 1",
                                 (platform, rater_id, now)).fetchone()
        return _row_assignment(r) if r else None

    def release(self, assignment_id: str, state: str = "returned", now: float | None = None) -> bool:
        """Give a reservation back (``returned`` or ``expired``); True when one was released."""
        if state not in ("returned", "expired"):
            raise ValueError(state)
        now = time.time() if now is None else now
        with self._write() as c:
            return c.execute("UPDATE assignments SET state=?, ended_at=? WHERE assignment_id=? AND state='reserved'",
                             (state, now, assignment_id)).rowcount == 1

    def release_rater(self, platform: str, rater_id: str, state: str = "returned", *, ref: str | None = None,
                      submitted: bool = False, now: float | None = None) -> int:
        """Release the rater's reservations (only the one with ``ref`` if given): for a platform that
        reports the participant RETURNED the study or TIMED-OUT. With ``submitted`` (needs ``ref``) a
        *submitted* (not yet reviewed) assignment with that ref is freed too: the platform withdrew it
        after the answers came in. Like a rejected one its answers stay in the store, but it no longer
        holds a place nor counts as a rating. Returns how many were released (0 on a rerun)."""
        if state not in ("returned", "expired"):
            raise ValueError(state)
        if submitted and ref is None:
            raise ValueError("release_rater(submitted=True) needs ref")
        now = time.time() if now is None else now
        with self._write() as c:
            sql, args = "", []
            if ref is not None:
                sql, args = " AND ref=?", [ref]
            states = "('reserved', 'submitted')" if submitted else "('reserved')"
            return c.execute(f"UPDATE assignments SET state=?, ended_at=? WHERE platform=? AND rater_id=?"
                             f" AND state IN {states}{sql}", (state, now, platform, rater_id, *args)).rowcount

    # ------------------------------------------------------------------ submitting
    def submit(self, assignment_id: str, answers: dict[str, str], *, work_time_s: float | None = None,
               simulated: bool = False, now: float | None = None) -> SubmitResult:
        """Store the answers of a reservation, exactly once. A reservation that lapsed is still accepted
        while its task has a free place (nobody else took it); otherwise nothing is stored and
        ``reason`` says why."""
        now = time.time() if now is None else now
        with self._write() as c:
            r = c.execute("SELECT a.*, CASE WHEN t.state = 'open' THEN b.state ELSE t.state END AS batch_state"
                          " FROM assignments a JOIN batches b USING (batch_id) JOIN tasks t ON t.task_id = a.task_id"
                          " WHERE assignment_id=?", (assignment_id,)).fetchone()
            if r is None:
                raise UserError(f"assignment {assignment_id!r}: not on the rating site")
            a = _row_assignment(r)
            if a.state in DONE:
                return SubmitResult(False, a, "already_submitted")
            if self._blocked(c, a.platform, a.rater_id):
                return SubmitResult(False, a, "blocked")
            if r["batch_state"] != "open":
                return SubmitResult(False, a, "closed")
            if a.state == "returned":
                return SubmitResult(False, a, "ended")
            if a.state == "expired" or a.expires_at <= now:
                used = c.execute("SELECT COUNT(*) FROM assignments a JOIN tasks t USING (task_id) WHERE a.task_id=?"
                                 " AND a.assignment_id != ? AND (a.state IN ('submitted', 'approved')"
                                 " OR (a.state = 'reserved' AND a.expires_at > ?))",
                                 (a.task_id, assignment_id, now)).fetchone()[0]
                k = c.execute("SELECT k FROM tasks WHERE task_id=?", (a.task_id,)).fetchone()[0]
                if used >= k:
                    if a.state == "reserved":
                        c.execute("UPDATE assignments SET state='expired', ended_at=expires_at WHERE assignment_id=?",
                                  (assignment_id,))
                    return SubmitResult(False, a, "full")
            wt = work_time_s if work_time_s is not None else max(0.0, now - a.reserved_at)
            answers_json = json.dumps(answers, ensure_ascii=False)
            c.execute("UPDATE assignments SET state='submitted', submitted_at=?, work_time_s=?, answers=?,"
                      " simulated=?, ended_at=NULL WHERE assignment_id=?",
                      (now, wt, answers_json, int(simulated), assignment_id))
            return SubmitResult(True, replace(a, state="submitted", submitted_at=now, work_time_s=wt,
                                              answers=json.loads(answers_json), simulated=bool(simulated)))

    # ------------------------------------------------------------------ results
    def submissions(self, batch_id: str | None = None, platform: str | None = None,
                    since: float | None = None) -> list[Assignment]:
        """Submitted, approved and rejected assignments, oldest first."""
        sql, args = "SELECT * FROM assignments WHERE state IN ('submitted', 'approved', 'rejected')", []
        for col, val in (("batch_id", batch_id), ("platform", platform)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        if since is not None:
            sql += " AND submitted_at > ?"
            args.append(since)
        return [_row_assignment(r) for r in self._conn().execute(sql + " ORDER BY submitted_at, assignment_id", args)]

    def assignments(self, task_id: str | None = None, batch_id: str | None = None) -> list[Assignment]:
        sql, args = "SELECT * FROM assignments WHERE 1=1", []
        for col, val in (("task_id", task_id), ("batch_id", batch_id)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        return [_row_assignment(r) for r in self._conn().execute(sql + " ORDER BY reserved_at", args)]

    def review(self, assignment_id: str, decision: str, feedback: str | None = None,
               now: float | None = None) -> Assignment:
        """``approved`` (accept) or ``rejected`` (exclude: the place opens again). Repeating the same
        decision is a no-op; changing a decision is allowed (a correction)."""
        if decision not in ("approved", "rejected"):
            raise UserError(f"review: expected approved or rejected, got {decision!r}")
        now = time.time() if now is None else now
        with self._write() as c:
            r = c.execute("SELECT * FROM assignments WHERE assignment_id=?", (assignment_id,)).fetchone()
            if r is None or r["state"] not in DONE:
                raise UserError(f"assignment {assignment_id!r}: no submission to review")
            if r["state"] != decision:
                c.execute("UPDATE assignments SET state=?, reviewed_at=?, feedback=? WHERE assignment_id=?",
                          (decision, now, feedback, assignment_id))
            return _row_assignment(c.execute("SELECT * FROM assignments WHERE assignment_id=?",
                                             (assignment_id,)).fetchone())

    def item_counts(self, batch_id: str | None = None) -> dict[str, int]:
        """Submitted + approved ratings per item (rejected ones excluded)."""
        sql = ("SELECT s.item_id, COUNT(a.assignment_id) FROM task_slots s JOIN tasks t ON t.task_id = s.task_id"
               " LEFT JOIN assignments a ON a.task_id = s.task_id AND a.state IN ('submitted', 'approved')")
        args: list[Any] = []
        if batch_id is not None:
            sql += " WHERE t.batch_id=?"
            args.append(batch_id)
        return {r[0]: r[1] for r in self._conn().execute(sql + " GROUP BY s.item_id", args)}

    def progress(self, batch_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        """Counts for the progress page and ``status``: tasks, places, assignments by state, items done."""
        now = time.time() if now is None else now
        where, args = ("WHERE batch_id=?", [batch_id]) if batch_id else ("", [])
        tasks = self._conn().execute(f"SELECT COUNT(*), COALESCE(SUM(k), 0) FROM tasks {where}", args).fetchone()
        states = {s: 0 for s in STATES}
        for r in self._conn().execute(f"SELECT state, expires_at > ? AS live, COUNT(*) FROM assignments {where}"
                                      " GROUP BY state, live", [now, *args]):
            states["expired" if r[0] == "reserved" and not r[1] else r[0]] += r[2]
        counts = self.item_counts(batch_id)
        ks = {r[0]: r[1] for r in self._conn().execute(
            "SELECT s.item_id, t.k FROM task_slots s JOIN tasks t USING (task_id)"
            + (" WHERE t.batch_id=?" if batch_id else ""), args)}
        return {"tasks": tasks[0], "places": tasks[1], "states": states, "items": len(counts),
                "items_complete": sum(1 for i, n in counts.items() if n >= ks.get(i, 0)),
                "ratings": sum(counts.values())}

    # ------------------------------------------------------------------ consent and onboarding
    def consent(self, platform: str, rater_id: str) -> dict[str, Any] | None:
        r = self._conn().execute("SELECT * FROM consents WHERE platform=? AND rater_id=?",
                                 (platform, rater_id)).fetchone()
        return dict(r) if r else None

    def record_consent(self, platform: str, rater_id: str, decision: str, text_sha: str,
                       now: float | None = None) -> dict[str, Any]:
        """Record agree or decline once; the first decision stands (a decliner is not asked again)."""
        if decision not in ("agree", "decline"):
            raise UserError(f"consent: expected agree or decline, got {decision!r}")
        check_rater(platform, rater_id)
        now = time.time() if now is None else now
        with self._write() as c:
            self._ensure_rater(c, platform, rater_id, now)
            c.execute("INSERT OR IGNORE INTO consents VALUES (?, ?, ?, ?, ?)",
                      (platform, rater_id, decision, text_sha, now))
            if decision == "decline":
                c.execute("UPDATE assignments SET state='returned', ended_at=? WHERE platform=? AND rater_id=?"
                          " AND state='reserved'", (now, platform, rater_id))
        return self.consent(platform, rater_id)

    def onboarding(self, platform: str, rater_id: str) -> dict[str, Any] | None:
        r = self._conn().execute("SELECT * FROM onboarding WHERE platform=? AND rater_id=?",
                                 (platform, rater_id)).fetchone()
        return {**dict(r), "answers": json.loads(r["answers"])} if r else None

    def record_onboarding(self, platform: str, rater_id: str, answers: dict[str, str],
                          now: float | None = None) -> None:
        check_rater(platform, rater_id)
        now = time.time() if now is None else now
        with self._write() as c:
            self._ensure_rater(c, platform, rater_id, now)
            c.execute("INSERT OR IGNORE INTO onboarding VALUES (?, ?, ?, ?)",
                      (platform, rater_id, json.dumps(answers), now))

    # ------------------------------------------------------------------ one participant's data
    def rater_data(self, platform: str, rater_id: str) -> dict[str, Any]:
        """Everything held about one rater (data-subject access)."""
        c = self._conn()
        return {
            "platform": platform, "rater_id": rater_id, "rater": self.rater(platform, rater_id),
            "invite": (lambda i: i and {"rater_id": i.rater_id, "created_at": i.created_at,
                                        "revoked_at": i.revoked_at})(
                self.invite_for(rater_id) if platform == "links" else None),
            "consent": self.consent(platform, rater_id), "onboarding": self.onboarding(platform, rater_id),
            "assignments": [dict(r, answers=json.loads(r["answers"]) if r["answers"] else None,
                                 extra=json.loads(r["extra"] or "{}"))
                            for r in c.execute("SELECT * FROM assignments WHERE platform=? AND rater_id=?"
                                               " ORDER BY reserved_at", (platform, rater_id))],
        }

    def delete_rater(self, platform: str, rater_id: str) -> dict[str, int]:
        """Remove one rater's assignments (answers included), consent, onboarding, invite and identity.
        Their places become free again. Returns what was removed, by table."""
        with self._write() as c:
            out = {}
            for table, extra in (("assignments", ""), ("consents", ""), ("onboarding", ""), ("raters", "")):
                out[table] = c.execute(f"DELETE FROM {table} WHERE platform=? AND rater_id=?{extra}",
                                       (platform, rater_id)).rowcount
            out["invites"] = c.execute("DELETE FROM invites WHERE rater_id=?", (rater_id,)).rowcount \
                if platform == "links" else 0
            return out


def site_store_path(run_dir: str | Path) -> Path:
    """``runs/<experiment>/site.sqlite``: the one place this path is spelled."""
    return Path(run_dir) / "site.sqlite"

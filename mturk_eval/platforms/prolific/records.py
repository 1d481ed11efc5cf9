"""What the ledger keeps about Prolific: studies (intent first), bonuses (set-up, then payment), blocks.

Tables live in the experiment's ledger file (same SQLite connection, created on first use), so one
file still records everything sent to a platform. The order of writes is the exactly-once rule:

* a study's row (state ``intent``, with its ``internal_name``) is committed before the create call;
  a rerun that finds ``intent`` looks the study up by ``internal_name`` before creating anything;
* a bonus row is ``intent`` -> ``set_up`` (bulk id and total recorded) -> ``paying`` (committed just
  before the pay call) -> ``paid``. A row left ``paying`` by a crash is settled by asking the API; when
  the answer is unclear the review stops and names the bulk bonus instead of paying again;
* a block row is ``pending`` before the participant is added to the blocklist group, ``blocked`` after.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS prolific_studies (
    batch TEXT PRIMARY KEY,
    internal_name TEXT UNIQUE NOT NULL,
    api_url TEXT NOT NULL,
    study_id TEXT UNIQUE,
    state TEXT NOT NULL,            -- intent | created | published | paused | stopped
    places INTEGER NOT NULL,
    reward INTEGER NOT NULL,        -- minor units
    shown_cost REAL NOT NULL DEFAULT 0,   -- minor units: the cost of the study's places, as shown
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS prolific_bonuses (
    submission_id TEXT NOT NULL,
    label TEXT NOT NULL,
    study_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    amount INTEGER NOT NULL,        -- minor units
    state TEXT NOT NULL,            -- intent | set_up | paying | paid
    bulk_id TEXT,
    bulk_total REAL,                -- minor units, Prolific's total_amount for the whole bulk
    created_at REAL NOT NULL,
    paid_at REAL,
    PRIMARY KEY (submission_id, label)
);
CREATE TABLE IF NOT EXISTS prolific_blocks (
    participant_id TEXT PRIMARY KEY,
    group_id TEXT,
    state TEXT NOT NULL,            -- pending | blocked
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS prolific_reviews (
    submission_id TEXT PRIMARY KEY,
    study_id TEXT NOT NULL,
    action TEXT NOT NULL,           -- approved | rejected
    category TEXT,
    message TEXT,
    done_at REAL NOT NULL
);
"""


@dataclass
class StudyRecord:
    batch: str
    internal_name: str
    api_url: str
    study_id: str | None
    state: str
    places: int
    reward: int
    shown_cost: float


class Records:
    """Prolific's tables in an open ledger connection (autocommit: each write is its own commit)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        conn.executescript(SCHEMA)

    # -- studies
    def study(self, batch: str) -> StudyRecord | None:
        r = self.conn.execute("SELECT * FROM prolific_studies WHERE batch=?", (batch,)).fetchone()
        return None if r is None else StudyRecord(r["batch"], r["internal_name"], r["api_url"], r["study_id"], r["state"],
                                                  r["places"], r["reward"], r["shown_cost"])

    def studies(self) -> list[StudyRecord]:
        return [self.study(r["batch"]) for r in self.conn.execute("SELECT batch FROM prolific_studies ORDER BY created_at")]

    def study_intent(self, batch: str, internal_name: str, api_url: str, places: int, reward: int) -> None:
        now = time.time()
        self.conn.execute("INSERT OR IGNORE INTO prolific_studies (batch, internal_name, api_url, state, places, reward,"
                          " created_at, updated_at) VALUES (?, ?, ?, 'intent', ?, ?, ?, ?)",
                          (batch, internal_name, api_url, places, reward, now, now))

    def set_study(self, batch: str, **fields) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        self.conn.execute(f"UPDATE prolific_studies SET {sets}, updated_at=? WHERE batch=?",
                          (*fields.values(), time.time(), batch))

    # -- bonuses
    def bonuses(self, state: str | None = None) -> list[dict]:
        q = "SELECT * FROM prolific_bonuses" + (" WHERE state=?" if state else "") + " ORDER BY created_at, submission_id"
        return [dict(r) for r in self.conn.execute(q, (state,) if state else ())]

    def bonus(self, submission_id: str, label: str) -> dict | None:
        r = self.conn.execute("SELECT * FROM prolific_bonuses WHERE submission_id=? AND label=?",
                              (submission_id, label)).fetchone()
        return dict(r) if r else None

    def bonus_intent(self, submission_id: str, label: str, study_id: str, participant_id: str, amount: int) -> None:
        self.conn.execute("INSERT OR IGNORE INTO prolific_bonuses (submission_id, label, study_id, participant_id, amount,"
                          " state, created_at) VALUES (?, ?, ?, ?, ?, 'intent', ?)",
                          (submission_id, label, study_id, participant_id, amount, time.time()))

    def bonus_set_up(self, keys: list[tuple[str, str]], bulk_id: str, total: float) -> None:
        with self.conn:
            for sid, label in keys:
                self.conn.execute("UPDATE prolific_bonuses SET state='set_up', bulk_id=?, bulk_total=? WHERE"
                                  " submission_id=? AND label=? AND state='intent'", (bulk_id, total, sid, label))

    def bulk_state(self, bulk_id: str, state: str) -> None:
        paid_at = time.time() if state == "paid" else None
        self.conn.execute("UPDATE prolific_bonuses SET state=?, paid_at=? WHERE bulk_id=?", (state, paid_at, bulk_id))

    def bulk_rows(self, bulk_id: str) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM prolific_bonuses WHERE bulk_id=?", (bulk_id,))]

    # -- blocks
    def block(self, participant_id: str) -> dict | None:
        r = self.conn.execute("SELECT * FROM prolific_blocks WHERE participant_id=?", (participant_id,)).fetchone()
        return dict(r) if r else None

    def set_block(self, participant_id: str, state: str, group_id: str | None = None) -> None:
        self.conn.execute("INSERT INTO prolific_blocks (participant_id, group_id, state, created_at) VALUES (?, ?, ?, ?)"
                          " ON CONFLICT(participant_id) DO UPDATE SET state=excluded.state,"
                          " group_id=COALESCE(excluded.group_id, group_id)",
                          (participant_id, group_id, state, time.time()))

    # -- reviews
    def review(self, submission_id: str) -> dict | None:
        r = self.conn.execute("SELECT * FROM prolific_reviews WHERE submission_id=?", (submission_id,)).fetchone()
        return dict(r) if r else None

    def record_review(self, submission_id: str, study_id: str, action: str, category: str | None = None,
                      message: str | None = None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO prolific_reviews VALUES (?, ?, ?, ?, ?, ?)",
                          (submission_id, study_id, action, category, message, time.time()))

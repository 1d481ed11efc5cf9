"""The rating site's store: allocation never over-allocates, nobody gets an item twice, reservations
lapse and are released, a submit is stored exactly once."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from helpers.site import load_batch
from mturk_eval.errors import UserError
from mturk_eval.site.store import SiteStore


@pytest.fixture
def store(tmp_path):
    with SiteStore.open(tmp_path / "site.sqlite") as s:
        yield s


ANS = {f"i{k}_{a}": "3" for k in range(2) for a in ("fluency", "engagingness", "relevance", "persona")}


def test_a_batch_loads_once_and_a_different_one_under_the_same_id_is_refused(store):
    ids = load_batch(store, n_items=6, items_per_task=2, k=3)
    assert len(ids) == 3 and ids == store.task_ids("b1")
    assert load_batch(store, n_items=6, items_per_task=2, k=3) == ids      # a rerun is a no-op
    with pytest.raises(UserError, match="already on the rating site"):
        load_batch(store, n_items=6, items_per_task=2, k=4)
    assert [it["item_id"] for it in store.task_items(ids[0])]


def test_each_item_ends_with_exactly_k_ratings_from_distinct_raters(store):
    load_batch(store, n_items=6, items_per_task=2, k=3)
    done: dict[str, list[str]] = {}
    for r in range(1, 7):
        rid = f"r{r:04d}"
        while (a := store.allocate("links", rid, now=1000.0)) is not None:
            assert store.submit(a.assignment_id, ANS, now=1001.0).stored
            done.setdefault(rid, []).append(a.task_id)
    assert store.item_counts() == {i: 3 for i in store.item_counts()}
    for rid, tasks in done.items():
        assert len(tasks) == len(set(tasks))
    per_task = Counter(s.task_id for s in store.submissions())
    assert set(per_task.values()) == {3}


def test_a_reload_gets_the_same_reservation_and_a_lapsed_one_is_released(store):
    load_batch(store, n_items=2, items_per_task=2, k=1, reservation_s=60)
    a = store.allocate("links", "r0001", now=1000.0)
    assert store.allocate("links", "r0001", now=1010.0).assignment_id == a.assignment_id
    assert store.allocate("links", "r0002", now=1010.0) is None            # the one place is held
    b = store.allocate("links", "r0002", now=1061.0)                        # lapsed: released
    assert b is not None and b.task_id == a.task_id
    assert store.assignment(a.assignment_id).state == "expired"
    res = store.submit(a.assignment_id, ANS, now=1062.0)                   # too late: the place is taken
    assert not res.stored and res.reason == "full"
    assert store.submit(b.assignment_id, ANS, now=1063.0).stored


def test_a_new_reservation_is_the_row_it_stored(store):
    """What allocate returns for a new place is field for field what the store reads back for it."""
    load_batch(store, n_items=2, items_per_task=2, k=1, reservation_s=60)
    a = store.allocate("links", "r0001", ref="ref-1", extra={"invite": "x", "n": 2}, now=1000.0)
    assert (a.state, a.reserved_at, a.expires_at, a.ref, a.extra) == ("reserved", 1000.0, 1060.0, "ref-1",
                                                                       {"invite": "x", "n": 2})
    assert store.assignment(a.assignment_id) == a


def test_a_late_submit_is_kept_while_its_place_is_still_free(store):
    load_batch(store, n_items=2, items_per_task=2, k=1, reservation_s=60)
    a = store.allocate("links", "r0001", now=1000.0)
    assert store.submit(a.assignment_id, ANS, now=2000.0).stored


def test_submit_is_exactly_once(store):
    load_batch(store, n_items=2, items_per_task=2, k=2)
    a = store.allocate("links", "r0001", now=1000.0)
    assert store.submit(a.assignment_id, ANS, now=1001.0).stored
    again = store.submit(a.assignment_id, {**ANS, "i0_fluency": "1"}, now=1002.0)
    assert not again.stored and again.reason == "already_submitted"
    assert store.assignment(a.assignment_id).answers == ANS


def test_returned_and_platform_released_places_open_again(store):
    load_batch(store, n_items=2, items_per_task=2, k=1)
    a = store.allocate("prolific", "0" * 24, ref="SESSION1", now=1000.0)
    assert store.allocate("links", "r0001", now=1000.0) is None
    assert store.release_rater("prolific", "0" * 24, "returned", ref="SESSION1", now=1001.0) == 1
    assert store.submit(a.assignment_id, ANS, now=1002.0).reason == "ended"
    assert store.allocate("links", "r0001", now=1003.0) is not None


def test_rejected_submissions_free_their_place_and_blocked_raters_get_nothing(store):
    load_batch(store, n_items=2, items_per_task=2, k=1)
    a = store.allocate("links", "r0001", now=1000.0)
    store.submit(a.assignment_id, ANS, now=1001.0)
    assert store.allocate("links", "r0002", now=1002.0) is None
    store.review(a.assignment_id, "rejected", "failed the attention check")
    assert store.allocate("links", "r0001", now=1003.0) is None            # never the same item again
    store.block_rater("links", "r0002", "spam")
    assert store.allocate("links", "r0002", now=1003.0) is None
    assert store.allocate("links", "r0003", now=1003.0) is not None


def test_no_item_twice_across_batches(store):
    load_batch(store, n_items=2, items_per_task=2, k=2, batch="b1")
    items = store.task_items(store.task_ids("b1")[0])
    store.add_batch("b2", items, [{"task_key": "b2/00000", "item_ids": [items[1]["item_id"], items[0]["item_id"]]}],
                    k=2, reservation_s=600)
    a = store.allocate("links", "r0001", now=1000.0)
    store.submit(a.assignment_id, ANS, now=1001.0)
    assert store.allocate("links", "r0001", now=1002.0) is None


def test_reserve_task_for_an_mturk_assignment_is_idempotent_by_ref(store):
    (tid,) = load_batch(store, n_items=2, items_per_task=2, k=1)
    a = store.reserve_task("mturk", "AWORKER1", tid, ref="ASSIGN1", now=1000.0)
    assert store.reserve_task("mturk", "AWORKER1", tid, ref="ASSIGN1", now=1001.0).assignment_id == a.assignment_id
    # MTurk gave the HIT to someone else (the first worker returned it there): the new assignment wins
    b = store.reserve_task("mturk", "AWORKER2", tid, ref="ASSIGN2", now=1001.0)
    assert store.assignment(a.assignment_id).state == "returned" and b.state == "reserved"
    store.submit(b.assignment_id, ANS, now=1002.0)
    with pytest.raises(UserError, match="no free place"):
        store.reserve_task("mturk", "AWORKER3", tid, ref="ASSIGN3", now=1003.0)
    with pytest.raises(UserError, match="no free place"):
        store.reserve_task("links", "r0001", tid, now=1003.0)


def test_concurrent_arrivals_never_over_allocate(tmp_path):
    path = tmp_path / "site.sqlite"
    with SiteStore.open(path) as s:
        load_batch(s, n_items=10, items_per_task=2, k=3)       # 5 tasks x 3 places = 15
    got: list = []
    lock = threading.Lock()

    def arrive(n: int) -> None:
        st = SiteStore.open(path)          # its own connection, as another gunicorn worker would have
        try:
            a = st.allocate("links", f"r{n:04d}")
            if a is not None:
                with lock:
                    got.append(a)
        finally:
            st.close()

    threads = [threading.Thread(target=arrive, args=(n,)) for n in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 15
    assert set(Counter(a.task_id for a in got).values()) == {3}


def test_consent_first_decision_stands_and_delete_removes_a_rater(store):
    load_batch(store, n_items=2, items_per_task=2, k=2)
    store.record_consent("links", "r0001", "decline", "sha", now=1.0)
    assert store.record_consent("links", "r0001", "agree", "sha", now=2.0)["decision"] == "decline"
    a = store.allocate("links", "r0002", now=3.0)
    store.submit(a.assignment_id, ANS, now=4.0)
    store.record_onboarding("links", "r0002", {"i0_fluency": "5"}, now=2.0)
    data = store.rater_data("links", "r0002")
    assert data["assignments"][0]["answers"] == ANS and data["onboarding"]
    removed = store.delete_rater("links", "r0002")
    assert removed["assignments"] == 1 and removed["onboarding"] == 1
    assert store.submissions() == [] and store.rater("links", "r0002") is None


def test_invites_are_unguessable_and_revocable(store):
    invs = store.create_invites(3)
    assert [i.rater_id for i in invs] == ["r0001", "r0002", "r0003"]
    assert len({i.token for i in invs}) == 3 and all(len(i.token) == 22 for i in invs)
    assert store.invite("x" * 22) is None and store.invite("../etc") is None
    assert store.revoke_invite("r0002").revoked_at is not None
    assert [i.rater_id for i in store.create_invites(1)] == ["r0004"]


def test_add_task_is_exactly_once_per_request_token_and_close_task_stops_new_places(store):
    items = [{"item_id": "a", "persona": ["p"], "utterance": "u", "response": "r"},
             {"item_id": "b", "persona": ["p"], "utterance": "u", "response": "r"}]
    tid, created = store.add_task("b1", "b1/00000", items, k=2, reservation_s=60, request_token="tok1",
                                  annotation="ann1")
    assert created and store.add_task("b1", "b1/00000", items, k=2, reservation_s=60,
                                      request_token="tok1") == (tid, False)
    assert store.tasks_by_annotation({"ann1", "other"}) == {"ann1": tid}
    with pytest.raises(UserError, match="places per task"):
        store.add_task("b1", "b1/00001", items, k=3, reservation_s=60, request_token="tok2")
    a = store.allocate("links", "r0001", now=1000.0)
    store.close_task(tid, now=1001.0)
    assert store.assignment(a.assignment_id).state == "expired"
    assert store.allocate("links", "r0002", now=1002.0) is None
    assert store.submit(a.assignment_id, {}, now=1003.0).reason == "closed"


def test_a_writer_waits_for_the_lock_file_within_the_busy_timeout(tmp_path):
    """The write lock (flock on site.sqlite.lock) is taken as soon as it is free (a blocking wait, not a
    poll) and given up after the timeout with SQLite's own "database is locked", never waited on for ever;
    a wait that timed out never holds the lock for a later writer."""
    import fcntl
    import os
    import sqlite3
    import threading
    import time

    from mturk_eval.site.store import _LockFile

    path = tmp_path / "x.lock"
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    lock = _LockFile(str(path))
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            lock.acquire(0.1)
        assert 0.1 <= time.monotonic() - t0 < 2
        released = []

        def release() -> None:
            released.append(time.monotonic())
            fcntl.flock(holder, fcntl.LOCK_UN)

        timer = threading.Timer(0.05, release)
        timer.start()
        lock.acquire(5)                          # released meanwhile: taken
        taken = time.monotonic()
        timer.join()
        assert taken - released[0] < 0.5
        # the timed-out wait got the lock too, on its own descriptor, and dropped it: this one still holds
        time.sleep(0.05)
        with pytest.raises(BlockingIOError):
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.release()
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(holder, fcntl.LOCK_UN)
    finally:
        lock.close()
        os.close(holder)


def _places_held(store: SiteStore) -> tuple[dict[str, int], dict[str, int]]:
    """(tasks.used, the count of each task's assignments holding a place) for every task."""
    conn = store._conn()
    kept = dict(conn.execute("SELECT task_id, used FROM tasks").fetchall())
    counted = dict(conn.execute("SELECT t.task_id, (SELECT COUNT(*) FROM assignments a WHERE a.task_id = t.task_id"
                                " AND a.state IN ('reserved', 'submitted', 'approved')) FROM tasks t").fetchall())
    return kept, counted


def test_the_places_a_task_holds_follow_every_change_of_state(store):
    """tasks.used (kept by triggers, what allocation reads) equals the count of the task's reserved,
    submitted and approved assignments after each of 400 random operations of every kind that changes
    an assignment."""
    import random

    rng = random.Random(7)
    load_batch(store, n_items=12, items_per_task=2, k=3, reservation_s=100)
    load_batch(store, n_items=6, items_per_task=2, k=2, reservation_s=100, batch="b2")
    now, raters = 1000.0, [f"r{i:04d}" for i in range(12)]
    ops = Counter()
    for _ in range(400):
        now += rng.uniform(0, 20)
        rater = rng.choice(raters)
        op = rng.choice(["allocate", "allocate", "submit", "review", "release", "expire", "block", "release_rater",
                         "delete", "reserve", "close_task"])
        mine = [a for a in store.assignments() if a.rater_id == rater]
        if op == "allocate":
            store.allocate("links", rater, rng.choice([None, ["b2"]]), now=now)
        elif op == "submit" and mine:
            store.submit(rng.choice(mine).assignment_id, ANS, now=now)
        elif op == "review" and (done := [a for a in mine if a.state in ("submitted", "approved", "rejected")]):
            store.review(rng.choice(done).assignment_id, rng.choice(["approved", "rejected"]), now=now)
        elif op == "release" and mine:
            store.release(rng.choice(mine).assignment_id, rng.choice(["returned", "expired"]), now=now)
        elif op == "expire":
            store.expire_lapsed(now=now)
        elif op == "block":
            (store.block_rater if rng.random() < 0.5 else lambda p, r, *_a, **_k: store.unblock_rater(p, r))(
                "links", rater, "test", now=now)
        elif op == "release_rater" and mine:
            store.release_rater("links", rater, ref=None, now=now)
        elif op == "delete" and rng.random() < 0.2:
            store.delete_rater("links", rater)
        elif op == "reserve":
            task_id = rng.choice(store.task_ids("b1"))
            try:
                store.reserve_task("mturk", f"W{rng.randrange(6)}", task_id, ref=f"A{rng.randrange(30)}", now=now)
            except UserError:
                pass
        elif op == "close_task" and rng.random() < 0.1:
            store.close_task(rng.choice(store.task_ids("b1")), now=now)
        else:
            continue
        ops[op] += 1
        kept, counted = _places_held(store)
        assert kept == counted, (op, ops)
    assert min(ops.values()) >= 2 and len(ops) == 10, ops


def _schema1_store(tmp_path) -> dict:
    """A copy of the store written by the schema-1 code (tests/fixtures/site_store_v1, see its
    make_fixture.py) as ``tmp_path / "site.sqlite"``; what it holds (its expected.json)."""
    import json
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "site_store_v1"
    shutil.copy(fixture / "site.sqlite", tmp_path / "site.sqlite")
    return json.loads((fixture / "expected.json").read_text())


def test_a_schema1_store_is_migrated_on_open(tmp_path):
    """A store written by the schema-1 code gets tasks.used counted from its assignments, the triggers
    and the index, in one transaction, once; its assignments stay as they were and allocation goes on
    from there, never above k."""
    expected = _schema1_store(tmp_path)
    for _ in range(2):                                  # the second open finds schema 2: nothing to do
        with SiteStore.open(tmp_path / "site.sqlite") as st:
            assert st.get_meta("schema_version") == "2"
            kept, counted = _places_held(st)
            assert kept == counted == expected["places_held"]
            assert {a.assignment_id: a.state for a in st.assignments()} == expected["states"]
    with SiteStore.open(tmp_path / "site.sqlite") as st:
        free = {t: st.task(t)["k"] - n for t, n in kept.items()}
        got = Counter()
        for i in range(40):
            # the fixture's reservations have not lapsed at 1500
            a = st.allocate("links", f"r{100 + i:04d}", now=1500.0)
            if a is not None:
                got[a.task_id] += 1
        assert got == {t: n for t, n in free.items() if n}


def test_the_wal_is_checkpointed_every_so_many_writes(tmp_path, monkeypatch):
    """SQLite's own checkpoint is off (it would run inside COMMIT, under the write lock); every
    CHECKPOINT_EVERY write transactions wake the store's checkpoint thread, which runs a passive one with
    its own connection; close() ends the thread."""
    from mturk_eval.site import store as store_mod

    monkeypatch.setattr(store_mod, "CHECKPOINT_EVERY", 10)
    wakes, runs = [], []
    soon, checkpoint = store_mod._Checkpointer.soon, store_mod._Checkpointer.checkpoint
    monkeypatch.setattr(store_mod._Checkpointer, "soon", lambda self: (wakes.append(1), soon(self)))
    monkeypatch.setattr(store_mod._Checkpointer, "checkpoint",
                        lambda self, conn: (checkpoint(self, conn), runs.append(threading.current_thread().name)))
    with SiteStore.open(tmp_path / "site.sqlite") as st:
        assert st._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for i in range(89):                     # with the version row written by open: 90 transactions
            st.set_meta("n", str(i))
        assert len(wakes) == 9
        deadline = time.monotonic() + 20
        while not runs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runs and set(runs) == {"site-store-checkpoint"}
        thread = st._checkpoints._thread
    thread.join(5)
    assert not thread.is_alive()                # the store's close ended it


def test_a_checkpoint_that_cannot_catch_up_copies_the_last_frames_under_the_write_lock(tmp_path, monkeypatch):
    """A checkpoint beside busy writers never copies the frames they add meanwhile, and the WAL starts
    again only after one that did: past WAL_FRAMES_LIMIT frames the rest is copied under the writers'
    lock (here a reader's open snapshot stands for the busy writers, and ends when the lock is taken)."""
    import sqlite3

    from mturk_eval.site import store as store_mod

    monkeypatch.setattr(store_mod, "CHECKPOINT_EVERY", 10**9)
    monkeypatch.setattr(store_mod, "WAL_FRAMES_LIMIT", 30)
    with SiteStore.open(tmp_path / "site.sqlite") as st:
        reader = sqlite3.connect(tmp_path / "site.sqlite", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM meta").fetchall()      # its snapshot: the frames so far
        for i in range(40):
            st.set_meta("n", str(i))
        acquire, taken = st._lock_file.acquire, []

        def acquire_and_end_the_reader(timeout_s: float) -> None:
            acquire(timeout_s)
            taken.append(reader.in_transaction)
            if reader.in_transaction:
                reader.execute("COMMIT")

        monkeypatch.setattr(st._lock_file, "acquire", acquire_and_end_the_reader)
        conn = sqlite3.connect(tmp_path / "site.sqlite", isolation_level=None)
        st._checkpoints.checkpoint(conn)
        assert taken == [True]                  # the second checkpoint took the writers' lock
        st.set_meta("n", "after")
        assert conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][1] <= 3    # started again
        conn.close()
        reader.close()


def test_an_interrupted_wait_for_the_lock_file_never_leaves_it_held(tmp_path):
    """A signal that interrupts a writer waiting for the lock abandons the wait: when the lock comes to
    the waiter thread it is dropped, not kept for a writer that is no longer there."""
    import fcntl
    import os
    import signal

    from mturk_eval.site.store import _LockFile

    class Interrupted(Exception):
        pass

    def interrupt(*_):
        raise Interrupted

    path = tmp_path / "x.lock"
    holder, probe = (os.open(path, os.O_RDWR | os.O_CREAT) for _ in range(2))
    lock = _LockFile(str(path))
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            lock.acquire(5)
        fcntl.flock(holder, fcntl.LOCK_UN)
        deadline = time.monotonic() + 5
        while True:         # the waiter takes it and drops it at once: the probe gets it soon
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the abandoned wait kept the lock"
                time.sleep(0.01)
        fcntl.flock(probe, fcntl.LOCK_UN)
        lock.acquire(1)                         # and the lock file still works for later writers
        lock.release()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        lock.close()
        os.close(holder)
        os.close(probe)


def test_a_schema1_store_without_its_version_row_is_migrated_too(tmp_path):
    """The schema-1 code could be stopped between creating the tables and writing the version row; such
    a store is told by its tasks table (no ``used``) and migrated like any other."""
    import sqlite3

    expected = _schema1_store(tmp_path)
    conn = sqlite3.connect(tmp_path / "site.sqlite")
    conn.execute("DELETE FROM meta WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with SiteStore.open(tmp_path / "site.sqlite") as st:
        assert st.get_meta("schema_version") == "2"
        kept, counted = _places_held(st)
        assert kept == counted == expected["places_held"]

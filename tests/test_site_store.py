"""The rating site's store: allocation never over-allocates, nobody gets an item twice, reservations
lapse and are released, a submit is stored exactly once."""
from __future__ import annotations

import threading
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
    """The write lock (flock on site.sqlite.lock) is taken as soon as it is free and given up after the
    timeout with SQLite's own "database is locked", never waited on for ever."""
    import fcntl
    import os
    import sqlite3
    import threading
    import time

    from mturk_eval.site.store import _lock_within

    path = tmp_path / "x.lock"
    holder, waiter = (os.open(path, os.O_RDWR | os.O_CREAT) for _ in range(2))
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            _lock_within(waiter, 0.1)
        assert 0.1 <= time.monotonic() - t0 < 2
        threading.Timer(0.05, fcntl.flock, (holder, fcntl.LOCK_UN)).start()
        _lock_within(waiter, 5)                  # released meanwhile: taken
        fcntl.flock(waiter, fcntl.LOCK_UN)
    finally:
        os.close(holder)
        os.close(waiter)

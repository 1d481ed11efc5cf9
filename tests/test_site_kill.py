"""SIGKILL the rating site (the production server, master and workers) at random points while raters submit, restart it,
and check that no confirmed answer is lost, none is stored twice, no task goes above k, and the
reservations of killed requests lapse on time and their places are taken by others."""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
import requests

from helpers.site import form_of, load_batch, task_path
from mturk_eval.site.app import SiteSettings
from mturk_eval.site.serving import free_port, start_production, stop_process, write_settings
from mturk_eval.site.store import SiteStore

KILLS = 10
RESERVATION_S = 3.0
RATERS = 10


def _rater(base: list[str], tokens: list[str], confirmed: dict, lock: threading.Lock, stop: threading.Event,
           seed: int) -> None:
    """Rate with one invite until no task is left; when the site goes down under a request, walk away now
    and then (the reservation held is then abandoned) and come back as the next invited rater. One such
    choice per outage, however many retries it takes the site to come back."""
    rng = random.Random(seed)
    with lock:
        token = tokens.pop()
    s = requests.Session()
    down = False
    while not stop.is_set():
        try:
            page = s.get(f"{base[0]}/i/{token}", allow_redirects=False, timeout=5)
            if page.status_code != 200:
                continue
            if "mturk_form" not in page.text:   # no tasks left for this rater
                return
            task_url = base[0] + task_path(page.text)
            _, hidden, groups = form_of(page.text)
            answers = {g: str(rng.randint(1, 5)) for g in groups}
            time.sleep(rng.uniform(0.05, 0.15))  # reading: on a quiet machine the work must outlast the kills
            sub = s.post(task_url, data={**hidden, **answers}, allow_redirects=False, timeout=5)
            down = False
            if sub.status_code == 303:
                aid = task_url.rsplit("/", 1)[1]
                with lock:
                    assert aid not in confirmed
                    confirmed[aid] = answers
        except (requests.RequestException, KeyError, ValueError):
            with lock:
                confirmed.setdefault("_cut", 0)
                confirmed["_cut"] += 1
                if not down and rng.random() < 0.4 and tokens:
                    token = tokens.pop()       # walk away; someone else comes
            down = True
            time.sleep(0.05)                   # the site is down: try again


def test_sigkill_during_submits_loses_nothing_and_doubles_nothing(tmp_path):
    store_path = tmp_path / "site.sqlite"
    with SiteStore.open(store_path) as st:
        load_batch(st, n_items=120, items_per_task=2, k=3, reservation_s=RESERVATION_S)  # 60 tasks, 180 places
        tokens = [i.token for i in st.create_invites(RATERS * 20)]   # walk-aways use up invites
    settings_path = write_settings(SiteSettings(store_path=str(store_path)), tmp_path)
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc, url = start_production(settings_path, port=port, workers=2, threads=4, log=log)
    base = [url]
    confirmed: dict[str, dict] = {}
    lock, stop = threading.Lock(), threading.Event()
    threads = [threading.Thread(target=_rater, args=(base, tokens, confirmed, lock, stop, n), daemon=True)
               for n in range(RATERS)]
    rng = random.Random(7)
    try:
        for t in threads:
            t.start()
        for n in range(KILLS):
            time.sleep(rng.uniform(0.15, 0.6))
            if n == KILLS // 2:   # one rater surely holds a task when the site dies, and never comes back
                with lock:
                    gone = tokens.pop()
                requests.get(f"{url}/i/{gone}", allow_redirects=False, timeout=10)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc, _ = start_production(settings_path, port=port, workers=2, threads=4, log=log)
        # let the raters finish: lapsed reservations of killed requests must free their places
        deadline = time.monotonic() + 120
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(t.is_alive() for t in threads), "raters did not finish"
        # the places of abandoned reservations open when those lapse: late raters fill them
        with SiteStore.open(store_path) as st:
            held = [a.expires_at for a in st.assignments() if a.state == "reserved"]
            late = [i.token for i in st.create_invites(RATERS)]
        time.sleep(max([0.0, *(e - time.time() + 0.05 for e in held)]))
        stop.clear()
        for n in range(RATERS):
            _rater(base, late, confirmed, lock, stop, 100 + n)
    finally:
        stop.set()
        stop_process(proc)
        log.close()

    cut = confirmed.pop("_cut", 0)
    assert cut > 0                             # the kills did cut requests short
    with SiteStore.open(store_path) as st:
        subs = {s.assignment_id: s for s in st.submissions()}
        # nothing confirmed to a rater is lost, and what is stored is what they sent
        for aid, answers in confirmed.items():
            assert aid in subs and subs[aid].answers == answers
        # no task above k, no rater twice on an item, every item complete
        per_task = Counter(s.task_id for s in subs.values())
        assert max(per_task.values()) <= 3
        pairs = Counter((s.rater_id, it["item_id"]) for s in subs.values() for it in st.task_items(s.task_id))
        assert max(pairs.values()) == 1
        assert set(st.item_counts().values()) == {3}
        # reservations left by killed requests lapsed exactly RESERVATION_S after they were made
        lapsed = [a for a in st.assignments() if a.state in ("expired", "reserved")]
        print(f"{cut} requests cut, {len(confirmed)} submits confirmed, {len(subs)} stored, {len(lapsed)} lapsed")
        assert lapsed, "no reservation was abandoned"
        for a in lapsed:
            assert a.expires_at == pytest.approx(a.reserved_at + RESERVATION_S)
            if a.state == "expired":
                assert st.rater_data("links", a.rater_id)  # released at its expiry, not before
                row = st._conn().execute("SELECT ended_at FROM assignments WHERE assignment_id=?",
                                         (a.assignment_id,)).fetchone()
                assert row[0] == pytest.approx(a.expires_at)
        st.expire_lapsed(time.time() + RESERVATION_S)
        assert st.progress()["states"]["reserved"] == 0

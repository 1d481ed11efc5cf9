"""Rating-site load benchmark: 200 simulated raters arrive together on loopback, each opens its invite
link, gets a task page and submits it; latency of the task page (entry + redirect, allocation included)
and of the submit (p50/p95/p99), tasks per second. Target: p95 < 150 ms. The same run checks that no
rating is lost, doubled or over-allocated: every item ends with exactly k ratings from distinct raters.

Baseline measured in the same run: ``/healthz`` (no store, no template) under the same arrival, i.e.
what the server and the load generator cost before the site does any work.

Two arrival patterns, each on a fresh store: ``burst`` (all raters released by one barrier: the queue
bound) and ``spread`` (arrivals uniform over ``--window`` seconds, each rater reading for 1-3 s between
page and submit, as people do).

Run: .venv/bin/python benchmarks/bench_site.py [--raters 200] [--server gunicorn|dev] [--workers 2]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402

from helpers.site import form_of, load_batch  # noqa: E402
from mturk_eval.site.app import SiteSettings  # noqa: E402
from mturk_eval.site.serving import start_production, start_site, stop_process, write_settings  # noqa: E402
from mturk_eval.site.store import SiteStore  # noqa: E402

K = 5
ITEMS_PER_TASK = 2


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def arrive_together(n: int, work, delays: list[float] | None = None) -> tuple[list, float]:
    """Run ``work(i)`` in ``n`` threads released at once by a barrier (each after ``delays[i]`` seconds
    if given); (results, wall seconds)."""
    barrier = threading.Barrier(n + 1)
    out: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        if delays:
            time.sleep(delays[i])
        try:
            out[i] = work(i)
        except Exception as exc:  # a failed rater is reported, not hidden
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return out, time.perf_counter() - t0


def scenario(args: argparse.Namespace, spread: bool) -> bool:
    n = args.raters
    rng = random.Random(1)
    delays = sorted(rng.uniform(0, args.window) for _ in range(n)) if spread else None
    think = [rng.uniform(1.0, 3.0) if spread else 0.0 for _ in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-site-"))
    store_path = tmp / "site.sqlite"
    n_tasks = -(-n // K)
    with SiteStore.open(store_path) as st:
        load_batch(st, n_items=n_tasks * ITEMS_PER_TASK, items_per_task=ITEMS_PER_TASK, k=K)
        tokens = [i.token for i in st.create_invites(n)]
    settings = SiteSettings(store_path=str(store_path))
    if args.server == "gunicorn":
        proc, url = start_production(write_settings(settings, tmp), workers=args.workers, threads=args.threads)
        stop = lambda: stop_process(proc)  # noqa: E731
        label = f"gunicorn, {args.workers} workers x {args.threads} threads"
    else:
        site = start_site(settings)
        url, stop, label = site.url, site.stop, "werkzeug threaded development server"
    try:
        def health(i: int) -> float:
            t0 = time.perf_counter()
            requests.get(url + "/healthz", timeout=30).raise_for_status()
            return time.perf_counter() - t0

        base, _ = arrive_together(n, health, delays)

        def rater(i: int) -> dict:
            s = requests.Session()
            t0 = time.perf_counter()
            r = s.get(f"{url}/i/{tokens[i]}", timeout=60)        # entry, allocation, redirect, task page
            t1 = time.perf_counter()
            r.raise_for_status()
            _, hidden, groups = form_of(r.text)
            answers = {g: str(1 + (i + len(g)) % 5) for g in groups}
            time.sleep(think[i])
            t1b = time.perf_counter()
            sub = s.post(r.url, data={**hidden, **answers}, allow_redirects=False, timeout=60)
            t2 = time.perf_counter()
            assert sub.status_code == 303, sub.status_code
            return {"aid": r.url.rsplit("/", 1)[1], "answers": answers, "page": t1 - t0, "submit": t2 - t1b}

        results, wall = arrive_together(n, rater, delays)
    finally:
        stop()
    failed = [r for r in results if isinstance(r, Exception)]
    ok = [r for r in results if not isinstance(r, Exception)]
    with SiteStore.open(store_path) as st:
        subs = {s.assignment_id: s for s in st.submissions()}
        lost = sum(1 for r in ok if r["aid"] not in subs or subs[r["aid"]].answers != r["answers"])
        per_task = Counter(s.task_id for s in subs.values())
        pairs = Counter((s.rater_id, it["item_id"]) for s in subs.values() for it in st.task_items(s.task_id))
        counts = st.item_counts()
    page = [r["page"] * 1000 for r in ok]
    submit = [r["submit"] * 1000 for r in ok]
    healthz = [b * 1000 for b in base if not isinstance(b, Exception)]
    how = f"arriving over {args.window:g} s, 1-3 s reading" if spread else "arriving together (one barrier)"
    print(f"\n{n} raters {how}; {label}; loopback")
    print(f"{'request':<28}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, xs in (("baseline /healthz", healthz), ("task page (invite -> task)", page), ("submit", submit)):
        print(f"{name:<28}{pct(xs, 50):>9.1f}{pct(xs, 95):>9.1f}{pct(xs, 99):>9.1f}{max(xs):>9.1f}")
    print(f"tasks/s: {len(ok) / wall:.1f} ({len(ok)} tasks in {wall:.2f} s); failed raters: {len(failed)}")
    print(f"p95 task page {pct(page, 95) / pct(healthz, 95):.2f}x baseline, submit {pct(submit, 95) / pct(healthz, 95):.2f}x")
    target = max(pct(page, 95), pct(submit, 95)) < 150
    print(f"target p95 < 150 ms: {'met' if target else 'NOT met'}")
    checks = {"lost or altered": lost, "stored": len(subs), "tasks above k": sum(1 for v in per_task.values() if v > K),
              "rater twice on an item": sum(1 for v in pairs.values() if v > 1),
              "items not at exactly k": sum(1 for v in counts.values() if v != K)}
    print("checks: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    return not (failed or lost or checks["tasks above k"] or checks["rater twice on an item"]
                or checks["items not at exactly k"] or len(subs) != n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=200)
    ap.add_argument("--server", choices=["gunicorn", "dev"], default="gunicorn")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--window", type=float, default=10.0, help="seconds over which spread arrivals come")
    ap.add_argument("--only", choices=["burst", "spread"], default=None)
    args = ap.parse_args()
    ok = True
    for spread in (False, True):
        if args.only in (None, "spread" if spread else "burst"):
            ok = scenario(args, spread) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

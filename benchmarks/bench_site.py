"""Rating-site load benchmark: 200 simulated raters arrive together on loopback, each opens its invite
link, gets a task page and submits it; latency of the task page (the entry link, which allocates and serves the task page)
and of the submit (p50/p95/p99), tasks per second. Target: p95 < 150 ms. The same run checks that no
rating is lost, doubled or over-allocated: every item ends with exactly k ratings from distinct raters.

Baseline measured in the same run: ``/healthz`` (no store, no template) under the same arrival, i.e.
what the server and the load generator cost before the site does any work.

Two arrival patterns, each on a fresh store: ``burst`` (all raters released in the same instant) and
``spread`` (arrivals uniform over ``--window`` seconds, each rater reading for 1-3 s between page and
submit, as people do).

The load generator is one event loop (uvloop's) in one thread, each rater its own HTTP/1.1
connection (kept alive, as a browser's is). It shares the machine's cores with the server, so it must cost little:
measured against gunicorn's ``/healthz`` (600 requests on 200 connections), Python threads with
``requests`` took 1.0-1.2 ms of CPU per request and fought the server's workers for the same cores,
aiohttp 0.17-0.18 ms, the small client here 0.09-0.10 ms (:class:`HTTPConnection` over asyncio streams:
the site's responses always carry Content-Length and set no cookies, so it needs no more; aiohttp was
not cheap enough to be worth a dependency). A regular expression reads the form where lxml took 0.4 ms
a page (the first page is checked against lxml's reading after the run). On uvloop's event loop
instead of asyncio's own, the raters' phase of a burst cost the generator 0.05-0.07 s of CPU instead of
0.08-0.14 s (a test-only dependency: real raters are not on the site's machine). Latency is measured
per request from the moment it is sent (connecting included) to the whole response read. CPU seconds (user + sys)
of the generator and of the server's processes are printed for each phase.

Run: .venv/bin/python benchmarks/bench_site.py [--raters 200] [--tasks 1000] [--server granian|gunicorn|dev] [--workers 2]
[--threads 1] [--shared-socket] [--only burst|spread] [--floor]
"""
from __future__ import annotations

import argparse
import asyncio
import html
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.site import form_of, load_batch  # noqa: E402
from mturk_eval.site.app import SiteSettings  # noqa: E402
from mturk_eval.site.servers import SERVER, SERVERS, THREADS, WORKERS, server_threads  # noqa: E402
from mturk_eval.site.serving import start_production, start_site, stop_process, write_settings  # noqa: E402
from mturk_eval.site.store import SiteStore  # noqa: E402

K = 5
ITEMS_PER_TASK = 2
TIMEOUT = 60.0   # seconds a phase may run beyond its arrivals before the run stops as failed
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
RADIO_RE = re.compile(r'<input type="radio" [^>]*name="([^"]+)"')
TASK_URL_RE = re.compile(r'<form id="mturk_form" method="post" action="(/t/[0-9a-f]+)"')


class HTTPConnection:
    """One rater's HTTP/1.1 connection to the site over asyncio streams, kept alive between requests (a
    connection the server closed while idle is opened again, once)."""

    def __init__(self, base_url: str):
        u = urlsplit(base_url)
        self.host, self.port, self.netloc = u.hostname, u.port, u.netloc
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, form: dict[str, str] | None = None
                      ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body)."""
        body = urlencode(form).encode() if form is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.netloc}\r\n"
        if form is not None:
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        message = head.encode() + b"\r\n" + body
        while True:
            reused = self.writer is not None
            if not reused:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(message)
            try:
                head_in = await self.reader.readuntil(b"\r\n\r\n")
                break
            except asyncio.IncompleteReadError as exc:
                self.close()
                if not reused or exc.partial:
                    raise ConnectionError(f"{method} {path}: the server closed the connection") from None
        status_line, *lines = head_in.decode("latin-1").split("\r\n")
        status = int(status_line.split(None, 2)[1])
        headers = {}
        for h in filter(None, lines):
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise ConnectionError(f"{method} {path}: a response without Content-Length")
        data = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data


def form_fields(page: str) -> tuple[dict[str, str], list[str]]:
    """(hidden fields, radio group names) of the rating form, as tests/helpers/site.py's ``form_of``
    reads them with lxml, at a twentieth of the CPU."""
    hidden = {name: html.unescape(value) for name, value in HIDDEN_RE.findall(page)}
    return hidden, sorted(set(RADIO_RE.findall(page)))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def group_cpu(pgid: int | None) -> float:
    """CPU seconds (user + sys) of every live process in process group ``pgid`` (the server's master and
    its workers); 0 without one (the development server runs in this process)."""
    if pgid is None:
        return 0.0
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:          # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])
    return total / tick


def settle(pgid: int | None, timeout: float = 60.0) -> None:
    """Wait until the server's processes are idle: the first worker answers while the others may still be
    starting (each renders up to 512 task pages at start), which a burst should not be measured against."""
    if pgid is None:
        return
    deadline = time.monotonic() + timeout
    last = group_cpu(pgid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = group_cpu(pgid)
        if now - last < 0.02:
            return
        last = now


async def arrive_together(url: str, n: int, work, delays: list[float] | None = None) -> tuple[list, float, float]:
    """Run ``work(i, connection)`` for ``n`` raters, each with its own connection, all released in the same
    instant (each after ``delays[i]`` seconds if given); (results, wall seconds, this process's CPU
    seconds). A failed rater is reported as its exception, not hidden."""
    go = asyncio.Event()
    conns = [HTTPConnection(url) for _ in range(n)]

    async def one(i: int):
        await go.wait()
        if delays:
            await asyncio.sleep(delays[i])
        try:
            return await work(i, conns[i])
        except Exception as exc:
            return exc

    try:
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0)                      # every rater is waiting on the release
        t0, c0 = time.perf_counter(), time.process_time()
        go.set()
        out = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT + max(delays or [0]) + 3)
        return out, time.perf_counter() - t0, time.process_time() - c0
    finally:
        for c in conns:
            c.close()


async def phases(url: str, tokens: list[str], delays: list[float] | None, think: list[float],
                 server_pgid: int | None, floor: bool = False) -> dict:
    """The baseline (``/healthz``) and then the raters, each phase released at once. ``floor``: each rater
    sends ``/healthz`` twice instead of its two requests (what the server costs before the site
    does any work)."""
    async def health(i: int, c: HTTPConnection) -> float:
        t0 = time.perf_counter()
        status, _, _ = await c.request("GET", "/healthz")
        t1 = time.perf_counter()
        assert status == 200, status
        return t1 - t0

    first_page: list[str] = []

    async def rater(i: int, c: HTTPConnection) -> dict:
        t0 = time.perf_counter()
        status, headers, body = await c.request("GET", f"/i/{tokens[i]}")  # entry, allocation, the task
        assert status == 200, status
        t1 = time.perf_counter()
        page = body.decode()
        task_path = TASK_URL_RE.search(page).group(1)
        if not first_page:
            first_page.append(page)
        hidden, groups = form_fields(page)
        answers = {g: str(1 + (i + len(g)) % 5) for g in groups}
        if think[i]:
            await asyncio.sleep(think[i])
        t1b = time.perf_counter()
        status, _, _ = await c.request("POST", task_path, {**hidden, **answers})
        t2 = time.perf_counter()
        assert status == 303, status
        return {"aid": task_path.rsplit("/", 1)[1], "answers": answers, "page": t1 - t0, "submit": t2 - t1b}

    async def floor_rater(i: int, c: HTTPConnection) -> float:
        return sum([await health(i, c) for _ in range(2)])

    out: dict = {"first_page": first_page}
    for name, work in (("baseline", health), ("raters", floor_rater if floor else rater)):
        s0 = group_cpu(server_pgid)
        results, wall, gen_cpu = await arrive_together(url, len(tokens), work, delays)
        out[name] = {"results": results, "wall": wall, "generator_cpu": gen_cpu,
                     "server_cpu": group_cpu(server_pgid) - s0}
    return out


def print_cpu(ph: dict, n: int, note: str) -> None:
    """CPU seconds of generator and server for each phase, and the server's per rater."""
    for name in ("baseline", "raters"):
        p = ph[name]
        print(f"CPU s, {name}: load generator {p['generator_cpu']:.2f}, server {p['server_cpu']:.2f}"
              f" ({len(p['results'])} in {p['wall']:.2f} s wall)")
    print(f"server CPU per rater: {ph['raters']['server_cpu'] / n * 1000:.2f} ms ({note})")


def floor_report(ph: dict, n: int, label: str) -> bool:
    """The ``--floor`` run's figures: CPU per phase and per rater; no store to check."""
    print(f"\n{n} raters, each /healthz twice on its connection (--floor); {label}")
    print_cpu(ph, n, "2 requests, no site work")
    failed = [r for name in ("baseline", "raters") for r in ph[name]["results"] if isinstance(r, Exception)]
    for exc in failed[:3]:
        print(f"  failed: {exc!r}")
    return not failed


def scenario(args: argparse.Namespace, spread: bool) -> bool:
    n = args.raters
    rng = random.Random(1)
    delays = sorted(rng.uniform(0, args.window) for _ in range(n)) if spread else None
    think = [rng.uniform(1.0, 3.0) if spread else 0.0 for _ in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-site-"))
    store_path = tmp / "site.sqlite"
    n_tasks = max(args.tasks or 0, -(-n // K))
    with SiteStore.open(store_path) as st:
        load_batch(st, n_items=n_tasks * ITEMS_PER_TASK, items_per_task=ITEMS_PER_TASK, k=K)
        tokens = [i.token for i in st.create_invites(n)]
    settings = SiteSettings(store_path=str(store_path))
    if args.server in SERVERS:
        proc, url = start_production(write_settings(settings, tmp), server=args.server, workers=args.workers,
                                     threads=args.threads, reuse_port=not args.shared_socket)
        stop, pgid = (lambda: stop_process(proc)), proc.pid  # noqa: E731
        label = f"{args.server}, {args.workers} workers x {server_threads(args.server, args.threads)[1]} threads"
        if args.server == "gunicorn":
            label += ", one shared listening socket" if args.shared_socket else ", a listening socket per worker"
    else:
        site = start_site(settings)
        url, stop, pgid, label = site.url, site.stop, None, "werkzeug threaded development server (in this process)"
    try:
        settle(pgid)
        ph = uvloop.run(phases(url, tokens, delays, think, pgid, args.floor))
    finally:
        stop()
    if args.floor:
        return floor_report(ph, n, label)
    results, wall = ph["raters"]["results"], ph["raters"]["wall"]
    if ph["first_page"]:     # the generator's quick reading of the form is lxml's
        _, hidden, groups = form_of(ph["first_page"][0])
        assert form_fields(ph["first_page"][0]) == (hidden, groups), "the form was misread"
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
    healthz = [b * 1000 for b in ph["baseline"]["results"] if not isinstance(b, Exception)]
    how = f"arriving over {args.window:g} s, 1-3 s reading" if spread else "released in the same instant"
    print(f"\n{n} raters {how}, {n_tasks} tasks of {ITEMS_PER_TASK} items (k = {K}); {label}; loopback;"
          " load generator: uvloop, one thread")
    print(f"{'request':<28}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, xs in (("baseline /healthz", healthz), ("task page (invite -> task)", page), ("submit", submit)):
        if xs:
            print(f"{name:<28}{pct(xs, 50):>9.1f}{pct(xs, 95):>9.1f}{pct(xs, 99):>9.1f}{max(xs):>9.1f}")
    print_cpu(ph, n, "2 requests: entry, submit")
    print(f"tasks/s: {len(ok) / wall:.1f} ({len(ok)} tasks in {wall:.2f} s); failed raters: {len(failed)}")
    for exc in failed[:3]:
        print(f"  failed: {exc!r}")
    target = bool(ok) and max(pct(page, 95), pct(submit, 95)) < 150
    if ok and healthz:
        print(f"p95 task page {pct(page, 95) / pct(healthz, 95):.2f}x baseline, submit"
              f" {pct(submit, 95) / pct(healthz, 95):.2f}x")
    print(f"target p95 < 150 ms (task page and submit): {'met' if target else 'NOT met'}")
    # fullest tasks first: n / k tasks end full and the rest untouched (none, when the study is just the burst)
    full_items = n // K * ITEMS_PER_TASK
    checks = {"lost or altered": lost, "stored": len(subs), "tasks above k": sum(1 for v in per_task.values() if v > K),
              "rater twice on an item": sum(1 for v in pairs.values() if v > 1),
              "items not at exactly k": (sum(1 for v in counts.values() if v not in (0, K))
                                         + abs(sum(1 for v in counts.values() if v == K) - full_items))}
    good = not (failed or lost or checks["tasks above k"] or checks["rater twice on an item"]
                or checks["items not at exactly k"] or len(subs) != n)
    print("checks: " + ", ".join(f"{k} {v}" for k, v in checks.items()) + f" -> {'pass' if good else 'FAIL'}")
    return good


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=200)
    ap.add_argument("--server", choices=[*SERVERS, "dev"], default=SERVER,
                    help="a production server (default: as mturk-eval serve --production), or werkzeug's")
    ap.add_argument("--workers", type=int, default=WORKERS, help="server workers (default: as mturk-eval serve)")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default: the server's, as mturk-eval"
                    f" serve: {THREADS})")
    ap.add_argument("--shared-socket", action="store_true",
                    help="gunicorn: one listening socket for all workers (without --reuse-port; mturk-eval serve gives"
                         " each gunicorn worker its own, see servers.production_command)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds over which spread arrivals come")
    ap.add_argument("--tasks", type=int, default=None,
                    help="open tasks in the study (default: just enough for the raters, raters / k); with more,"
                         " n / k of them end full and the rest untouched")
    ap.add_argument("--only", choices=["burst", "spread"], default=None)
    ap.add_argument("--floor", action="store_true",
                    help="each rater sends /healthz twice instead of its requests: the server's and Flask's"
                         " CPU per rater before the site does any work")
    args = ap.parse_args()
    ok = True
    for spread in (False, True):
        if args.only in (None, "spread" if spread else "burst"):
            ok = scenario(args, spread) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Local sandbox benchmark: publishing 1,000 items through ``mturk_eval.actions.publish`` against the
sandbox (concurrency 1 is the baseline, measured in the same run), the server's raw API throughput,
and simulated workers' throughput.

Run: .venv/bin/python benchmarks/bench_sandbox.py [--items 1000] [--latency 0.02]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.mturk import make_cfg, write_responses  # noqa: E402
from helpers.sandbox import client, hit_params  # noqa: E402
from mturk_eval.actions import publish  # noqa: E402
from mturk_eval.ledger import Ledger, ledger_path  # noqa: E402
from mturk_eval.emulators.faults import FaultConfig  # noqa: E402
from mturk_eval.emulators.server import start_server  # noqa: E402
from mturk_eval.emulators.simulate import RatingModel, ledger_items, simulate  # noqa: E402


def bench_publish(n: int, concurrency: int, latency: float) -> tuple[float, object]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    cfg = make_cfg(tmp, publish_concurrency=concurrency, publish_rate=10000.0, assignments_per_hit=3)
    responses = write_responses(tmp / "r.jsonl", n)
    srv = start_server(tmp / "sandbox.sqlite",
                       faults=FaultConfig(latency_s=latency, operations=["CreateHITWithHITType"]))
    t0 = time.perf_counter()
    res = publish.publish(cfg, responses, target="local", endpoint_url=srv.url, echo=lambda s: None, progress=False)
    dt = time.perf_counter() - t0
    assert res.created == n and srv.store.counts()["hits"] == n
    return dt, (srv, cfg)


def bench_api(n: int, threads: int) -> float:
    srv = start_server(":memory:")
    try:
        clients = [client(srv.url) for _ in range(threads)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: clients[i % threads].create_hit(**hit_params()), range(n)))
        return time.perf_counter() - t0
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to each CreateHIT (default 0.02)")
    args = ap.parse_args()
    n = args.items

    base_api = bench_api(300, 1)
    print(f"sandbox API, boto3 CreateHIT x300, 1 thread (baseline): {300 / base_api:.0f} calls/s")
    t = bench_api(300, 4)
    print(f"sandbox API, boto3 CreateHIT x300, 4 threads: {300 / t:.0f} calls/s ({base_api / t:.2f}x)")

    base, (srv, _) = bench_publish(n, 1, args.latency)
    srv.stop()
    print(f"publish {n} items, {args.latency * 1000:.0f} ms per CreateHIT, concurrency 1 (baseline):"
          f" {base:.1f} s = {n / base:.0f} HITs/s")
    for conc in (4, 8):
        t, (srv, cfg) = bench_publish(n, conc, args.latency)
        print(f"publish {n} items, {args.latency * 1000:.0f} ms per CreateHIT, concurrency {conc}:"
              f" {t:.1f} s = {n / t:.0f} HITs/s ({base / t:.2f}x the baseline)")
        if conc == 8:
            srv.set_faults(FaultConfig())
            with Ledger.open(ledger_path(cfg, "local"), create=False) as ledger:
                t0 = time.perf_counter()
                res = simulate(srv.url, workers=3, model=RatingModel(), seed=1, items_of=ledger_items(ledger),
                               progress=False)
                dt = time.perf_counter() - t0
            print(f"simulate 3 workers over {n} HITs: {res.submitted} assignments in {dt:.1f} s ="
                  f" {res.submitted / dt:.0f} assignments/s")
        srv.stop()


if __name__ == "__main__":
    main()

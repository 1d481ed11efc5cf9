"""Publishing benchmark: question rendering, and CreateHIT throughput against the local MTurk-compatible
server with 50 ms latency per CreateHIT (like the real API's round trip), at concurrency 1 (the baseline,
measured in the same run) vs ``publish_concurrency`` 4, and under the default rate limit (5 calls/s).

Run: .venv/bin/python benchmarks/bench_publish.py [--hits 40]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.mturk import make_cfg, response_row, write_responses  # noqa: E402
from mturk_eval.tasks import builder as hits  # noqa: E402
from mturk_eval.actions import publish  # noqa: E402
from mturk_eval.emulators.faults import FaultConfig  # noqa: E402
from mturk_eval.emulators.server import start_server  # noqa: E402

LATENCY_S = 0.05


def bench_render(n: int) -> float:
    cfg = make_cfg(Path(tempfile.mkdtemp()))
    items = [response_row(i) for i in range(n)]
    t0 = time.perf_counter()
    for it in items:
        hits.build_question([it], cfg, "https://workersandbox.mturk.com/mturk/externalSubmit")
    return (time.perf_counter() - t0) / n


def bench_publish(n_hits: int, concurrency: int, rate: float) -> float:
    tmp = Path(tempfile.mkdtemp())
    cfg = make_cfg(tmp, publish_concurrency=concurrency, publish_rate=rate)
    responses = write_responses(tmp / "r.jsonl", n_hits)
    srv = start_server(":memory:", faults=FaultConfig(latency_s=LATENCY_S, operations=["CreateHITWithHITType"]))
    try:
        t0 = time.perf_counter()
        res = publish.publish(cfg, responses, target="local", endpoint_url=srv.url, echo=lambda s: None,
                              progress=False)
        dt = time.perf_counter() - t0
        assert res.created == n_hits
        return dt
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, default=40)
    args = ap.parse_args()
    per = bench_render(200)
    print(f"render one HTMLQuestion (1 item): {per * 1000:.2f} ms")
    base = bench_publish(args.hits, 1, 1000.0)
    print(f"publish {args.hits} HITs, concurrency 1 (baseline): {base:.2f} s = {args.hits / base:.1f} HITs/s")
    for conc, rate in ((4, 1000.0), (4, 5.0)):
        t = bench_publish(args.hits, conc, rate)
        print(f"publish {args.hits} HITs, concurrency {conc}, rate limit {rate:g}/s: {t:.2f} s ="
              f" {args.hits / t:.1f} HITs/s ({base / t:.2f}x the baseline)")


if __name__ == "__main__":
    main()

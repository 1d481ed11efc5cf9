"""Benchmark of the study planner: a 10 x 10 items x raters grid with 1,000 simulated studies per design
(vectorised: every study of a design as arrays, every test of the family in one call), against a plain
per-study loop of the same analysis (``simulate_power_loop``: one study at a time, the report's single-test
functions), measured in the same run on a sample of designs and scaled per study.

Model: the paper's defaults (Table 2 SDs), 3 systems per eval set, Holm over 12 comparisons; paired
(Wilcoxon signed-rank, the default) or ``--design unpaired`` (Mann-Whitney rank-sum, whose exact null up to
50 pooled items is the expensive part).
Usage: .venv/bin/python benchmarks/bench_planning.py [--studies 1000] [--loop-studies 20] [--design unpaired]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mturk_eval.planning.model import default_model  # noqa: E402
from mturk_eval.planning.power import Design, Setting, simulate_power, simulate_power_loop  # noqa: E402

ITEMS = [10, 20, 30, 40, 50, 60, 80, 100, 125, 150]
RATERS = list(range(1, 11))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1000)
    ap.add_argument("--loop-studies", type=int, default=20)
    ap.add_argument("--design", choices=["paired", "unpaired"], default="paired")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2-core machine shared with other jobs)")
    setting = Setting(default_model(), systems=3, aspect="fluency", design=args.design)
    print(f"design: {args.design}")
    t0, c0 = time.perf_counter(), time.process_time()
    grid = {}
    per_items = {}
    for n in ITEMS:
        t_n = time.perf_counter()
        for k in RATERS:
            grid[(n, k)] = simulate_power(Design(n, k), setting, 0.3, args.studies, seed=0)
        per_items[n] = time.perf_counter() - t_n
    print("wall time per row of the grid (10 designs): " + ", ".join(f"{n} items {t:.1f} s" for n, t in per_items.items()))
    t_grid, c_grid = time.perf_counter() - t0, time.process_time() - c0
    print(f"grid {len(ITEMS)} x {len(RATERS)} designs x {args.studies} studies: {t_grid:.1f} s wall, "
          f"{c_grid:.1f} s CPU (target < 60 s: {'met' if t_grid < 60 else 'MISSED'} on the wall clock)")
    # The loop baseline on a sample of designs (small, middle, large), per study.
    sample = [(10, 1), (50, 5), (150, 10)]
    vec_per, loop_per = 0.0, 0.0
    for n, k in sample:
        t = time.perf_counter()
        simulate_power(Design(n, k), setting, 0.3, args.studies, seed=0)
        vec_per += (time.perf_counter() - t) / args.studies
        t = time.perf_counter()
        simulate_power_loop(Design(n, k), setting, 0.3, args.loop_studies, seed=0)
        loop_per += (time.perf_counter() - t) / args.loop_studies
        print(f"  {n} items x {k} raters: vectorised {vec_per * 1e3:.2f} ms/study so far, loop {loop_per * 1e3:.1f} ms/study so far")
    print(f"per study on {sample}: vectorised {vec_per / len(sample) * 1e3:.2f} ms, loop {loop_per / len(sample) * 1e3:.1f} ms "
          f"-> {loop_per / vec_per:.0f}x; the whole grid by the loop would take about "
          f"{t_grid * loop_per / vec_per / 60:.0f} min")
    print("power at 0.3 (rows: items; columns: raters 1..10)")
    for n in ITEMS:
        print(f"{n:>4} " + " ".join(f"{grid[(n, k)]:.2f}" for k in RATERS))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Benchmark of `mturk-eval report` on synthetic long-format ratings: 1e4, 1e5 and 1e6 rating rows.

For each size it writes a ratings CSV (not timed), then times
  load     read_ratings(): CSV parsing, checks, string coding
  analyze  every table, bootstrap CI (1000 resamples), tests with Holm, agreement, worker figures
  report   the whole `build_report` end to end (load + analyze + plots + all files)
and, as baselines measured in the same run on the same data: a bare ``csv.reader`` pass over the file
(the floor for any CSV-reading report), and the GPL ``krippendorff`` package's alpha from the same
per-item value counts (the oracle our own alpha is tested against).

Default layout: each item is rated by 5 workers on one aspect, so 1e6 rows hold 2e5 items (the target).
``--all-aspects`` rates every item on all four aspects (1e6 rows = 5e4 items).
Usage: .venv/bin/python benchmarks/bench_report.py [--sizes 10000 100000 1000000] [--all-aspects]
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.analysis import make_arrays  # noqa: E402

from mturk_eval.analysis import stats  # noqa: E402
from mturk_eval.analysis.core import analyze  # noqa: E402
from mturk_eval.analysis.ratings import read_ratings  # noqa: E402
from mturk_eval.analysis.report import build_report  # noqa: E402
from mturk_eval.config import ExperimentConfig  # noqa: E402


def write_csv(path: Path, cols: dict[str, list]) -> None:
    names = list(cols)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(names)
        w.writerows(zip(*(cols[n] for n in names)))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--all-aspects", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2-core machine shared with other jobs)")
    cfg = ExperimentConfig(name="bench", models=["tiny"])
    cfg.report.bootstrap_samples = 1000
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in args.sizes:
            cols = make_arrays(n, all_aspects=args.all_aspects)
            path = Path(d) / f"r{n}.csv"
            write_csv(path, cols)
            del cols
            _, t_csv = timed(lambda: sum(1 for _ in csv.reader(open(path, newline="", encoding="utf-8"))))
            r, t_load = timed(lambda: read_ratings(path))
            an, t_an = timed(lambda: analyze(r, cfg))
            # Baseline for alpha: the krippendorff package on the same per-unit value counts.
            unit = r.item * 4 + r.aspect
            counts = stats.unit_value_counts(unit, r.score, len(r.item_ids) * 4)
            counts = counts[counts.sum(axis=1) > 0]
            import krippendorff

            _, t_k = timed(lambda: [krippendorff.alpha(value_counts=counts, level_of_measurement=lv)
                                    for lv in ("ordinal", "interval")])
            _, t_ours = timed(lambda: stats.agreement(counts, np.zeros(len(counts), dtype=np.int64), 1))
            n_items = len(r.item_ids)
            del r, an, counts, unit
            res, t_all = timed(lambda: build_report(cfg, ratings_path=path, out_dir=Path(d) / "out", progress=False))
            rows.append((n, n_items, t_csv, t_load, t_an, t_all, t_ours, t_k))
            print(f"{n:>9} rows {n_items:>7} items: csv.reader {t_csv:6.2f} s | load {t_load:6.2f} s | "
                  f"analyze {t_an:6.2f} s | whole report {t_all:6.2f} s (load {res.timings['load_s']:.2f}, "
                  f"analyze {res.timings['analyze_s']:.2f}, plots {res.timings['plots_s']:.2f}, "
                  f"write {res.timings['write_s']:.2f}) | alpha ours {t_ours * 1e3:.1f} ms vs krippendorff "
                  f"{t_k * 1e3:.1f} ms", flush=True)
    print("\nsize | items | load/csv.reader | report/csv.reader | report us/row | analyze us/row | alpha speed-up")
    for n, items, t_csv, t_load, t_an, t_all, t_ours, t_k in rows:
        print(f"{n:>9} | {items:>7} | {t_load / t_csv:5.2f}x | {t_all / t_csv:5.2f}x | {t_all / n * 1e6:6.2f} | "
              f"{t_an / n * 1e6:6.2f} | {t_k / t_ours:6.1f}x")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"growth {a[0]} -> {b[0]} rows ({b[0] / a[0]:.0f}x): whole report {b[5] / a[5]:.1f}x, "
              f"analyze {b[4] / a[4]:.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    worst = max(r[5] for r in rows if r[0] == max(args.sizes))
    print(f"target: {max(args.sizes)} rows in < 10 s -> {worst:.2f} s ({'met' if worst < 10 else 'MISSED'})")


if __name__ == "__main__":
    main()

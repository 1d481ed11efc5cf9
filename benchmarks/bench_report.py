"""Benchmark of `mturk-eval report` on synthetic long-format ratings, against pandas.read_csv of the
same file and against the pure-Python loader this project used before pyarrow (read from git).

For each size it writes a ratings CSV (not timed), then, each in a fresh process so that its peak
memory is its own:
  read_csv         pandas.read_csv(path) (C engine) and pandas.read_csv(path, engine="pyarrow")
  old loader       the previous read_ratings (csv module / str.split, dict coding), from git
  load             read_ratings(): pyarrow CSV, checks on each distinct value, integer codes
  whole report     build_report end to end with the report's defaults: load, Tables 2/3, crossed
                   (items and raters random) intervals of every mean and difference, exact-tie rank tests
                   with pairing and Holm, the crossed mixed model per eval set and aspect (on 3,000-rating
                   subsamples), alpha (ordinal + interval), LOO Spearman, worker figures, both PNG plots,
                   every file including ratings.parquet, mixed_model.csv and workers.csv
  bootstrap report the same with ``[report] intervals = "item_bootstrap"`` (issue #13's literal variant:
                   1,000-resample item bootstrap intervals of every mean and difference)
  stages           the analysis stage by stage (load, privacy, Parquet encoding, exclusions, tables and
                   intervals, tests, agreement, workers, mixed model), CPU seconds of each
and prints the wall time, the CPU time, the peak resident memory of that process, the ratios and the
growth, and whether the issue's targets are met.

Default layout: every item rated by 5 workers on all four aspects (20 rows per item), so 4,000,000
rows = 200,000 items x 5 raters x 4 aspects (the issue's figure) and 1,000,000 rows = 50,000 items.
Usage: .venv/bin/python benchmarks/bench_report.py [--sizes 1000000 4000000] [--no-old]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

# The last commit whose loader was pure Python (before pandas/pyarrow), for the baseline.
OLD_LOADER_COMMIT = "analysis-stages"


def write_csv(path: Path, n: int) -> int:
    """The benchmark's ratings CSV (no quotes, as write_ratings_csv writes such data); returns items."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from helpers.analysis import make_arrays

    cols = make_arrays(n, all_aspects=True)
    table = pa.table(cols)
    path.write_text(",".join(cols) + "\n", encoding="utf-8")  # pyarrow would quote the header
    with open(path, "ab") as fh:
        pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(quoting_style="none", include_header=False))
    return len(set(cols["item_id"][:: 20]))


def old_read_ratings():
    """``read_ratings`` as it was at OLD_LOADER_COMMIT (git show), loaded as a module."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_LOADER_COMMIT}:mturk_eval/analysis/ratings.py"],
                         check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType("old_ratings")
    sys.modules["old_ratings"] = mod  # dataclasses look their module up
    exec(compile(src, "old_ratings.py", "exec"), mod.__dict__)
    return mod.read_ratings


def child(what: str, path: str, out_dir: str) -> None:
    """Run one measurement in this (fresh) process and print JSON: seconds, peak RSS, extras."""
    extra: dict = {}
    if what == "read_csv_c":
        import pandas as pd
        t, c = time.perf_counter(), cpu_seconds()
        pd.read_csv(path)
    elif what == "read_csv_pyarrow":
        import pandas as pd
        t, c = time.perf_counter(), cpu_seconds()
        pd.read_csv(path, engine="pyarrow")
    elif what == "old_loader":
        fn = old_read_ratings()
        t, c = time.perf_counter(), cpu_seconds()
        fn(path)
    elif what == "load":
        from mturk_eval.analysis.ratings import read_ratings
        t, c = time.perf_counter(), cpu_seconds()
        read_ratings(path)
    elif what in ("report", "report_bootstrap"):
        from mturk_eval.analysis.ratings import kept_memory
        from mturk_eval.analysis.report import build_report
        from mturk_eval.config import ExperimentConfig
        # Imported before the clock (a notebook has them loaded; the CLI's start-up is not the report).
        import matplotlib.pyplot  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        import scipy.stats  # noqa: F401
        cfg = ExperimentConfig(name="bench", models=["tiny"])
        cfg.report.bootstrap_samples = 1000
        if what == "report_bootstrap":
            cfg.report.intervals = "item_bootstrap"
        t, c = time.perf_counter(), cpu_seconds()
        with kept_memory():               # as `mturk-eval report` runs it (cli/report.py)
            res = build_report(cfg, ratings_path=path, out_dir=out_dir, progress=False)
        extra = {k: round(v, 3) for k, v in res.timings.items()}
        extra["tests"] = len(res.analysis.tests)
    elif what == "stages":
        extra = stage_seconds(path)
        t, c = time.perf_counter(), cpu_seconds()
    else:
        raise SystemExit(f"unknown measurement {what}")
    seconds = time.perf_counter() - t
    cpu = cpu_seconds() - c
    print(json.dumps({"s": seconds, "cpu": cpu, "peak_mb": peak_rss_mb(), **extra}))


def stage_seconds(path: str) -> dict:
    """CPU seconds of each stage of the default report, run one after the other in this process (the
    report itself encodes the Parquet file in a thread while the statistics run), with numpy's arrays on
    ordinary pages as in the report (``ratings.small_pages``)."""
    import pyarrow.csv  # noqa: F401  (imported before the clock, as for the report)
    import pyarrow.parquet  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401
    import scipy.stats  # noqa: F401

    from mturk_eval.analysis import core
    from mturk_eval.analysis.ratings import ratings_parquet, read_ratings, small_pages
    from mturk_eval.config import ExperimentConfig
    from mturk_eval.privacy import report_privacy

    cfg = ExperimentConfig(name="bench", models=["tiny"])
    out: dict = {}

    def timed(name, fn, *args):
        c = time.process_time()
        value = fn(*args)
        out[name] = round(time.process_time() - c, 3)
        return value

    with small_pages():
        r = timed("read_ratings", read_ratings, path)
        timed("privacy", report_privacy, r, cfg, None)
        timed("parquet", ratings_parquet, r)
        p = timed("exclusions", core.prepare, r, cfg)
        tables = timed("tables_intervals", core.tables_stage, p)
        timed("tests", core.tests_stage, p, tables, None)
        timed("agreement", core.agreement_stage, p)
        timed("workers", lambda: (core.workers_stage(p), core.worker_rows(p)))
        timed("mixed_model", core.mixed_model_stage, p)
    return out


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would carry the parent's over fork+exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(what: str, path: Path, out_dir: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", what, str(path), str(out_dir)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000, 4_000_000])
    ap.add_argument("--no-old", action="store_true", help="skip the old loader (slow on big files)")
    ap.add_argument("--child", nargs=3, metavar=("WHAT", "PATH", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--write", nargs=2, metavar=("N", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.write:
        print(write_csv(Path(args.write[1]), int(args.write[0])))
        return
    print(f"cpus: {os.cpu_count()}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in args.sizes:
            path = Path(d) / f"r{n}.csv"
            items = int(subprocess.run([sys.executable, __file__, "--write", str(n), str(path)], check=True,
                                       capture_output=True, text=True).stdout)  # keeps this process small
            mb = path.stat().st_size / 1e6
            m = {w: measure(w, path, Path(d) / "out") for w in
                 ("read_csv_c", "read_csv_pyarrow", *(() if args.no_old else ("old_loader",)), "load", "report",
                  "report_bootstrap", "stages")}
            rows.append((n, items, mb, m))
            r, b = m["report"], m["report_bootstrap"]
            print(f"{n:>9} rows {items:>7} items {mb:6.0f} MB | pd.read_csv {m['read_csv_c']['s']:5.2f} s, "
                  f"pyarrow engine {m['read_csv_pyarrow']['s']:5.2f} s | "
                  + (f"old loader {m['old_loader']['s']:6.2f} s | " if "old_loader" in m else "")
                  + f"load {m['load']['s']:5.2f} s | whole report {r['s']:5.2f} s, CPU {r['cpu']:5.2f} s (load {r['load_s']:.2f}, "
                  f"analyze {r['analyze_s']:.2f}, plots {r['plots_s']:.2f}, write {r['write_s']:.2f}) "
                  f"peak {r['peak_mb']:.0f} MB (pd.read_csv {m['read_csv_c']['peak_mb']:.0f} MB) | bootstrap intervals: "
                  f"{b['s']:5.2f} s, CPU {b['cpu']:5.2f} s (analyze {b['analyze_s']:.2f}), peak {b['peak_mb']:.0f} MB",
                  flush=True)
            st = {k: v for k, v in m["stages"].items() if k not in ("s", "cpu", "peak_mb")}
            print(f"{'':>9} stages, CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()), flush=True)
            path.unlink()
    print("\nrows | report s | report CPU s | report / pd.read_csv | report / read_csv(pyarrow) | load / old loader | "
          "report us/row | report peak MB | bootstrap report s | bootstrap CPU s")
    for n, items, mb, m in rows:
        r, b = m["report"], m["report_bootstrap"]
        old = f"{m['load']['s'] / m['old_loader']['s']:.2f}x" if "old_loader" in m else "-"
        print(f"{n:>9} | {r['s']:6.2f} | {r['cpu']:6.2f} | {r['s'] / m['read_csv_c']['s']:5.2f}x | "
              f"{r['s'] / m['read_csv_pyarrow']['s']:5.2f}x | {old} | {r['s'] / n * 1e6:5.2f} | {r['peak_mb']:6.0f} | "
              f"{b['s']:6.2f} | {b['cpu']:6.2f}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"growth {a[0]} -> {b[0]} rows ({b[0] / a[0]:.0f}x): whole report {b[3]['report']['s'] / a[3]['report']['s']:.2f}x, "
              f"peak memory {b[3]['report']['peak_mb'] / a[3]['report']['peak_mb']:.2f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # On a shared machine the wall time carries other jobs' load; the process's CPU time does not, and on
    # a quiet machine the wall time is at most about that (the files are in the page cache).
    for n, limit in ((1_000_000, 2.0), (4_000_000, 5.0)):
        for what, label in (("report", "defaults"), ("report_bootstrap", "bootstrap intervals")):
            hit = [m[what] for k, _, _, m in rows if k == n]
            if hit:
                w, c = hit[0]["s"], hit[0]["cpu"]
                print(f"target: {n} rows in < {limit} s ({label}) -> wall {w:.2f} s "
                      f"({'met' if w < limit else 'MISSED'}); CPU of all threads {c:.2f} s "
                      f"({'below' if c < limit else 'above'} the wall-time target)")


if __name__ == "__main__":
    main()

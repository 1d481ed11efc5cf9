"""``mturk-eval report``: read ratings (ledger, long-format file or MTurk batch CSV), analyse them and
write ``runs/<experiment>/report/`` in one atomic step.

Output directory::

    report.md                 the results section (tables, plots, tests, agreement, workers, warnings)
    report.json               everything as data
    tables/table2.{md,tex,csv,json}, tables/table3.{md,tex,csv,json}   (7/8 for Japanese experiments;
                              table3_<aspect>.* each when several aspects are binned as Table 3)
    tables/table1.{md,json}   automatic metrics (6 for Japanese), when a responses file is available
    tests.csv, agreement.csv, workers.csv, underrated_items.csv
    ratings.parquet           the checked ratings in the long format (mturk_eval.analysis.load_ratings reads it)
    plots/persona_consideration.png, plots/means_ci.png   (bins_<aspect>.png each for several Table 3 aspects)
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mturk_eval.analysis import frames, render
from mturk_eval.analysis.core import Analysis, analyze, with_table3_aspects
from mturk_eval.analysis.ratings import Ratings, ResponseIndex, ratings_parquet, read_responses, small_pages
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.io import atomic_directory, atomic_write_text
from mturk_eval.privacy import free_text_notes, privacy_markdown, report_privacy


@dataclass
class ReportResult:
    out_dir: Path
    analysis: Analysis
    terminal: str                       # the Markdown tables printed to the terminal
    timings: dict[str, float] = field(default_factory=dict)


def check_report_config(cfg: ExperimentConfig) -> None:
    """Range checks for the [report] section (the loader checks types)."""
    rc = cfg.report
    file = cfg.source_path or "<config>"
    if rc.bootstrap_samples < 0:
        raise UserError(f"{file}: report.bootstrap_samples: expected an integer >= 0, got {rc.bootstrap_samples}")
    if not 0.0 < rc.alpha < 1.0:
        raise UserError(f"{file}: report.alpha: expected a number between 0 and 1, got {rc.alpha}")
    if not 0.0 <= rc.min_attention_pass_rate <= 1.0:
        raise UserError(f"{file}: report.min_attention_pass_rate: expected a number from 0 to 1, "
                        f"got {rc.min_attention_pass_rate}")
    if rc.planned_ratings < 0:
        raise UserError(f"{file}: report.planned_ratings: expected an integer >= 0, got {rc.planned_ratings}")
    if rc.mixed_model_max_ratings < 0:
        raise UserError(f"{file}: report.mixed_model_max_ratings: expected an integer >= 0, "
                        f"got {rc.mixed_model_max_ratings}")


def find_ledger(cfg: ExperimentConfig, target: str | None) -> Path:
    """The experiment's ledger for ``target``, or the only one that exists."""
    from mturk_eval.ledger import TARGETS, ledger_path

    if target is not None:
        p = ledger_path(cfg, target)
        if not p.exists():
            raise UserError(f"{p}: file not found (nothing published to target {target!r}); "
                            "run `mturk-eval publish` and `mturk-eval collect`, or pass --ratings / --batch-csv")
        return p
    found = [ledger_path(cfg, t) for t in TARGETS if ledger_path(cfg, t).exists()]
    if not found:
        raise UserError(f"{cfg.run_dir}: expected a ledger (ledger.<target>.sqlite), got none (nothing published "
                        "yet); run `mturk-eval publish` and `mturk-eval collect` first, or pass --ratings FILE or "
                        "--batch-csv FILE")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UserError(f"{cfg.run_dir}: found several ledgers ({names}); choose one with --target")
    return found[0]


def report_ratings(
    cfg: ExperimentConfig,
    *,
    ratings_path: str | Path | None = None,
    batch_csv: str | Path | None = None,
    mapping: str | Path | None = None,
    target: str | None = None,
    responses: ResponseIndex | None = None,
) -> tuple[Ratings, str]:
    """Ratings from exactly one source (``--ratings``, ``--batch-csv`` or the ledger); returns them and a
    description of the source. The same readers as ``load_ratings`` (which also guesses a file's kind;
    the CLI's flags say it)."""
    from mturk_eval.analysis.frames import read_ledger

    given = [x for x in (ratings_path, batch_csv) if x is not None]
    if len(given) > 1:
        raise UserError("--ratings and --batch-csv: expected one ratings source, got both")
    if mapping is not None and batch_csv is None:
        raise UserError("--mapping: expected --batch-csv FILE to apply the mapping to, got none")
    from mturk_eval.analysis.aspects import config_aspects

    aspects = config_aspects(cfg) if cfg.report.aspects else None
    if ratings_path is not None:
        from mturk_eval.analysis.ratings import read_ratings

        return read_ratings(ratings_path, aspects), f"ratings file `{ratings_path}`"
    if batch_csv is not None:
        from mturk_eval.analysis.batch_csv import read_batch_csv
        from mturk_eval.analysis.mapping import load_mapping, ratings_from_batch

        m = load_mapping(mapping) if mapping is not None else None
        desc = f"MTurk batch results `{batch_csv}`" + (f" (mapping `{mapping}`)" if mapping is not None else "")
        return ratings_from_batch(read_batch_csv(batch_csv), responses, m), desc
    return read_ledger(find_ledger(cfg, target), aspects)


def automatic_metrics(responses_path: Path, language: str) -> tuple[str, list[dict[str, Any]]]:
    """Table 1/6 (distinct-1/2 per model and method) from the generators' ``distinct`` module; character
    tokens for Japanese, whitespace tokens otherwise (as ``mturk-eval distinct`` does)."""
    from dataclasses import asdict

    from mturk_eval.analysis.distinct import distinct_rows, to_markdown

    tok = "char" if language == "ja" else "space"
    rows = distinct_rows(responses_path, tokenizer=tok)
    return to_markdown(rows, tokenizer=tok), [asdict(r) for r in rows]


def build_report(
    cfg: ExperimentConfig,
    *,
    ratings_path: str | Path | None = None,
    batch_csv: str | Path | None = None,
    mapping: str | Path | None = None,
    target: str | None = None,
    responses_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    seed: int | None = None,
    plots: bool = True,
    progress: bool = True,
    default_responses: bool = True,
) -> ReportResult:
    """Load, analyse and write the report directory atomically (nothing half-written on error).

    With ``default_responses`` the experiment's ``runs/<exp>/responses.jsonl`` is used when no
    ``responses_path`` is given and it exists.
    """
    check_report_config(cfg)
    # Ordinary pages for numpy's arrays while the report runs (see ratings.small_pages: huge pages cost
    # more than a second of the kernel's compaction at 4e6 rows on a machine whose memory is fragmented).
    # One thread beside this one: the template's free-text check while the ratings are read, then the encoding of
    # ratings.parquet while the statistics run.
    with small_pages(), ThreadPoolExecutor(max_workers=1) as pool:
        return _build_report(cfg, pool, ratings_path=ratings_path, batch_csv=batch_csv, mapping=mapping,
                             target=target, responses_path=responses_path, out_dir=out_dir, seed=seed, plots=plots,
                             progress=progress, default_responses=default_responses)


def _build_report(cfg: ExperimentConfig, pool: ThreadPoolExecutor, *, ratings_path, batch_csv, mapping, target,
                  responses_path, out_dir, seed, plots, progress, default_responses) -> ReportResult:
    timings: dict[str, float] = {}
    # disable=None: progress only on a terminal, so logs and captured output stay clean.
    stages = tqdm(total=4, desc="report", unit="step", disable=None if progress else True, leave=False)
    t0 = time.perf_counter()
    if responses_path is None and default_responses and (cfg.run_dir / "responses.jsonl").exists():
        responses_path = cfg.run_dir / "responses.jsonl"
    responses = read_responses(responses_path) if responses_path is not None else None
    stages.set_postfix_str("loading ratings")
    # The rating template's free-text check (a Jinja render and an HTML parse: Python, 0.07 s) runs while
    # pyarrow's threads parse a ratings file, which leaves the interpreter free; with the ledger as the
    # source it also reads the ledger's answers, after the ratings (as before).
    from_ledger = ratings_path is None and batch_csv is None
    free_text = None if from_ledger else pool.submit(free_text_notes, cfg, None)
    ratings, source = report_ratings(cfg, ratings_path=ratings_path, batch_csv=batch_csv, mapping=mapping,
                                     target=target, responses=responses)
    ratings = with_table3_aspects(ratings, cfg)  # a bad name stops here, before anything is written
    # Privacy (mturk_eval/privacy.py, docs/participants.md): rater and submission ids are pseudonyms from
    # here on, before anything is computed, encoded or written (tables, ratings files, report.json/.md).
    privacy = report_privacy(ratings, cfg, find_ledger(cfg, target) if from_ledger else None,
                             free_text=None if free_text is None else free_text.result())
    stages.update()
    # ratings.parquet is encoded in a thread while the statistics run (pyarrow releases the GIL); only
    # bytes in memory, so a failure later leaves nothing behind.
    parquet = pool.submit(ratings_parquet, ratings)
    t1 = time.perf_counter()
    timings["load_s"] = t1 - t0
    stages.set_postfix_str("statistics")
    spend = None
    if from_ledger:  # the ledger: bonuses and fees are known
        from mturk_eval.analysis.cost import ledger_spend
        from mturk_eval.ledger import Ledger

        with Ledger.open(find_ledger(cfg, target), create=False) as led:
            spend = privacy.rekey_spend(ledger_spend(led, cfg))
    an = analyze(ratings, cfg, responses, seed=seed, spend=spend)
    if privacy.info.get("warning"):
        an.warnings.append(privacy.info["warning"])
    stages.update()
    t2 = time.perf_counter()
    timings["analyze_s"] = t2 - t1

    auto = automatic_metrics(Path(responses_path), cfg.language) if responses_path is not None else None
    out = Path(out_dir) if out_dir is not None else cfg.run_dir / "report"
    sources = [source] + ([f"responses `{responses_path}`"] if responses_path is not None else [])
    tn = an.table_numbers
    h2, r2 = render.table2_rows(an)
    table3s = [(a, stem, *render.table3_rows(an, a.name)) for a, stem in render.table3_files(an)]
    terminal = (f"Table {tn['human']}: human evaluation, mean (SD)\n" + render.markdown_table(h2, r2)
                + "".join(f"\nTable {tn['persona']}: {a.title.lower()}, per-response mean in bins\n"
                          + render.markdown_table(h3, r3) for a, _, h3, r3 in table3s)
                + "\n" + "".join(s["sentence"] + "\n" for s in an.test_summary))
    if an.simulated_rows:
        terminal = render.BANNER.format(n=an.simulated_rows).lstrip("> ") + "\n\n" + terminal
    with atomic_directory(out) as tmp:
        stages.set_postfix_str("plots")
        if plots:
            from mturk_eval.analysis.plots import write_plots  # matplotlib is slow to import

            plot_paths = write_plots(an, tmp)
        else:
            plot_paths = {}
        stages.update()
        t3 = time.perf_counter()
        timings["plots_s"] = t3 - t2
        stages.set_postfix_str("writing")
        tables = tmp / "tables"
        tables.mkdir()
        atomic_write_text(tables / f"table{tn['human']}.md", render.markdown_table(h2, r2))
        h2l, r2l = render.table2_rows(an, latex=True)
        atomic_write_text(tables / f"table{tn['human']}.tex", render.latex_table(
            h2l, r2l, f"Human evaluation: mean (SD) on {render.scale_words(an)} ({an.experiment}).",
            f"tab:human-{an.experiment}", raw_cols=set(range(3, 3 + len(an.table2_aspects)))))
        atomic_write_text(tables / f"table{tn['human']}.csv", frames.frame_csv(frames.table2(an), "%.6g"))
        atomic_write_text(tables / f"table{tn['human']}.json", render.dumps(render.to_json(an)["table2"]))
        for a, stem, h3, r3 in table3s:
            label = f"tab:persona-{an.experiment}" + ("" if len(table3s) == 1 else f"-{a.name}")
            atomic_write_text(tables / f"{stem}.md", render.markdown_table(h3, r3))
            atomic_write_text(tables / f"{stem}.tex", render.latex_table(
                h3, r3, f"{a.title}: per-response mean score in bins ({an.experiment}).", label))
            atomic_write_text(tables / f"{stem}.csv", frames.frame_csv(frames.table3(an, aspect=a.name)))
            atomic_write_text(tables / f"{stem}.json", render.dumps(an.table3s[a.name]))
        auto_md = None
        if auto is not None:
            auto_md, auto_data = auto
            atomic_write_text(tables / f"table{tn['auto']}.md", auto_md)
            atomic_write_text(tables / f"table{tn['auto']}.json", render.dumps(auto_data))
        atomic_write_text(tmp / "tests.csv", frames.frame_csv(frames.comparisons(an)))
        atomic_write_text(tmp / "mixed_model.csv", frames.frame_csv(frames.mixed_models(an)))
        atomic_write_text(tmp / "agreement.csv", frames.frame_csv(frames.agreement(an)))
        atomic_write_text(tmp / "workers.csv", frames.frame_csv(frames.workers(an)))
        (tmp / "ratings.parquet").write_bytes(parquet.result())
        atomic_write_text(tmp / "underrated_items.csv", render.underrated_csv(an))
        atomic_write_text(tmp / "report.json", render.dumps(
            render.to_json(an, auto[1] if auto else None) | {"privacy": privacy.info}))
        atomic_write_text(tmp / "report.md", render.report_markdown(an, plot_paths, auto_md, sources)
                          + privacy_markdown(privacy.info))
        stages.update()
        timings["write_s"] = time.perf_counter() - t3
    stages.close()
    return ReportResult(out_dir=out, analysis=an, terminal=terminal, timings=timings)

"""Turn an :class:`~mturk_eval.analysis.core.Analysis` into text: Markdown, LaTeX (booktabs), CSV, JSON
tables, and the single ``report.md`` that reads like a results section.

Tables mirror the paper: Table 2/7 rows are Eval Dataset x Training Method x Model with "mean (SD)"
cells to two decimals; Table 3/8 counts each response's mean persona consideration in four bins (or
another aspect's, in the bins of its scale).
A cell's superscript letters name the systems of the same eval set it is significantly better than.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from mturk_eval.analysis.core import Analysis
from mturk_eval.errors import UserError

BANNER = ("> **SIMULATED RATINGS.** {n} of the rating rows come from simulated workers, not people. "
          "These figures test the pipeline; they are not results.")


def _f2(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _f3(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _p(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _cell(a: dict[str, Any], latex: bool = False) -> str:
    text = f"{_f2(a['mean'])} ({_f2(a['sd'])})"
    if a["better_than"]:
        marks = "".join(a["better_than"])
        text += f"$^{{{marks}}}$" if latex else f" ^{marks}"
    return text


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *[line(r) for r in rows]]) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in s)


def latex_table(header: list[str], rows: list[list[str]], caption: str, label: str, raw_cols: set[int] = frozenset()) -> str:
    cols = "l" * 3 + "c" * (len(header) - 3)
    out = ["\\begin{table}[t]", "\\centering", f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
           " & ".join(_latex_escape(h) for h in header) + " \\\\", "\\midrule"]
    prev = None
    for r in rows:
        if prev is not None and r[0] != prev and r[0]:
            out.append("\\midrule")
        prev = r[0] or prev
        out.append(" & ".join(c if i in raw_cols else _latex_escape(c) for i, c in enumerate(r)) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{_latex_escape(caption)}}}", f"\\label{{{label}}}",
            "\\end{table}"]
    return "\n".join(out) + "\n"


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# Table 2 / 7


def scale_words(an: Analysis) -> str:
    """"a 1-5 scale" when every Table 2 aspect shares one scale, else each aspect's."""
    scales = {(a.low, a.high) for a in an.aspect_info if a.table2}
    if len(scales) == 1:
        lo, hi = scales.pop()
        return f"a {lo}-{hi} scale"
    return "each aspect's scale (" + ", ".join(f"{a.name} {a.low}-{a.high}" for a in an.aspect_info if a.table2) + ")"


def table2_rows(an: Analysis, latex: bool = False) -> tuple[list[str], list[list[str]]]:
    header = ["Eval Dataset", "Training Method", "Model", *[an.aspect_title(a) for a in an.table2_aspects]]
    rows = []
    prev_es = None
    for row in an.table2:
        es = row["eval_set_name"] if row["eval_set"] != prev_es else ""
        prev_es = row["eval_set"]
        rows.append([es, f"({row['letter']}) {row['method_name']}", row["model"],
                     *[_cell(row["aspects"][a], latex) for a in an.table2_aspects]])
    if an.human_reference:
        rows.append(["Human", "(Persona-Chat)", "-", *[an.human_reference.get(a, "-") for a in an.table2_aspects]])
    return header, rows




# --------------------------------------------------------------------------------------------------
# Table 3 / 8


def table3_rows(an: Analysis, aspect: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Table 3's header and rows for the Table 3 aspect ``aspect`` (default the first one)."""
    records, bins = table3_of(an, aspect)
    header = ["Eval Dataset", "Training Method", "Model", *bins, "Sample count"]
    rows = []
    prev_es = None
    for row in records:
        es = row["eval_set_name"] if row["eval_set"] != prev_es else ""
        prev_es = row["eval_set"]
        rows.append([es, f"({row['letter']}) {row['method_name']}", row["model"],
                     *[str(row["bins"][b]) for b in bins], str(row["n"])])
    return header, rows


def table3_of(an: Analysis, aspect: str | None = None) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The per-system rows and the bins of one Table 3: the aspect named (one marked for Table 3), or
    the first marked one (``an.table3``) when ``aspect`` is None."""
    if aspect is None:
        return an.table3, an.bins
    marked = an.table3_aspects
    a = next((x for x in marked if x.name == aspect), None)
    if a is None:
        raise UserError(f"table3: aspect: expected one of the aspects binned as Table 3 "
                        f"({', '.join(x.name for x in marked) or 'none'}), got {aspect!r}")
    return an.table3s[a.name], a.bins


def table3_files(an: Analysis) -> list[tuple[Any, str]]:
    """Each Table 3 aspect with the stem of its files: ``table3`` (``table8``) when one aspect is binned,
    ``table3_<aspect>`` each when several are."""
    n = an.table_numbers["persona"]
    marked = an.table3_aspects
    return [(a, f"table{n}" if len(marked) == 1 else f"table{n}_{a.name}") for a in marked]




# --------------------------------------------------------------------------------------------------
# Tests, agreement, workers


def _test_name(t: dict[str, Any]) -> str:
    name = "Wilcoxon (paired)" if t["test"] == "wilcoxon" else "Mann-Whitney U"
    return f"{name}, {t['method']}" if t.get("method") else name


def _difference(t: dict[str, Any]) -> str:
    d = t.get("difference", float("nan"))
    if d is None or not math.isfinite(d):
        return "-"
    return f"{d:+.2f} [{_f2(t['difference_ci_low'])}, {_f2(t['difference_ci_high'])}]"


def tests_rows(an: Analysis) -> tuple[list[str], list[list[str]]]:
    header = ["Eval set", "Aspect", "Systems", "Means of item means", "Difference [95% CI]", "Test", "n", "p",
              "p (Holm)", "Sig."]
    rows = []
    for t in an.tests:
        if t.get("undefined"):
            sig = f"undefined ({t['undefined']})"
        else:
            sig = f"yes, ({t['better']}) higher" if t["better"] else "yes" if t["significant"] else "no"
        rows.append([t["eval_set"], t["aspect"], f"({t['a']}) vs ({t['b']})",
                     f"{_f2(t['item_mean_a'])} vs {_f2(t['item_mean_b'])}", _difference(t), _test_name(t),
                     f"{t['n_a']}/{t['n_b']}", _p(t["p"]), _p(t["p_holm"]), sig])
    return header, rows


def designs_markdown(an: Analysis) -> str:
    """Which test each comparison used and why (one line per distinct reason and pair of systems)."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for t in an.tests:
        seen.setdefault((t["eval_set"], f"({t['a']}) vs ({t['b']})", t.get("design", "")), []).append(t["aspect"])
    return "".join(f"- {es} {pair}: {why} ({', '.join(aspects)})\n" for (es, pair, why), aspects in seen.items())


def mixed_model_rows(an: Analysis) -> tuple[list[str], list[list[str]]]:
    header = ["Eval set", "Aspect", "Ratings", "Items", "Raters", "s2 item [95% CI]", "s2 rater [95% CI]",
              "s2 residual [95% CI]", "Differences (estimate [95% CI], p)"]
    rows = []
    for m in an.mixed_models:
        n = f"{m['ratings']}" + (f" of {m['subsampled_from']}" if m.get("subsampled_from") else "")
        if "not_fitted" in m:
            rows.append([m["eval_set"], m["aspect"], n, "-", "-", "-", "-", "-", f"not fitted: {m['not_fitted']}"])
            continue
        comps = [f"{m['variance'][c]:.3f} [{m['variance_ci'][c][0]:.3f}, {m['variance_ci'][c][1]:.3f}]"
                 for c in ("item", "rater", "residual")]
        diffs = "; ".join(f"({d['a']})-({d['b']}) {d['estimate']:+.2f} [{_f2(d['ci_low'])}, {_f2(d['ci_high'])}], "
                          f"p {_p(d['p'])}" for d in m["differences"])
        rows.append([m["eval_set"], m["aspect"], n, str(m["items"]), str(m["raters"]), *comps, diffs])
    return header, rows




def agreement_rows(an: Analysis) -> tuple[list[str], list[list[str]]]:
    header = ["Scope", "Aspect", "alpha (ordinal)", "alpha (interval)", "LOO Spearman rho", "Exact agr.",
              "Within 1", "Items"]
    rows = [[g["scope"], an.aspect_title(g["aspect"]), _f3(g["alpha_ordinal"]), _f3(g["alpha_interval"]),
             _f3(g["loo_spearman"]), _f2(g["exact_agreement"]), _f2(g["within_one"]), str(g["units"])]
            for g in an.agreement]
    return header, rows




def underrated_csv(an: Analysis) -> str:
    keys = ["item_id", "eval_set", "method", "model", "ratings", "planned"]
    return csv_text(keys, [[u[k] for k in keys] for u in an.underrated])


_SYMBOLS = {"USD": "$", "GBP": "\u00a3"}


def _money(x: float, currency: str = "USD") -> str:
    if x is None or not math.isfinite(x):
        return "-"
    sym = _SYMBOLS.get(currency)
    return f"{sym}{x:.2f}" if sym else f"{x:.2f} {currency}"


def _pay_line(w: dict[str, Any]) -> str:
    c = w.get("cost") or {}   # the ledger's spend knows the platform's currency; a ratings file does not
    cur, word = c.get("currency", "USD"), c.get("submissions_word", "assignments")[:-1]

    def m(x: float) -> str:
        return _money(x, cur)

    line = (f"- Effective hourly pay: {m(w['hourly_pay_at_median'])} at the median work time "
            f"({m(w['hourly_pay_overall'])} over all work time), reward {m(w['reward_per_assignment'])} "
            f"per {word}")
    if "hourly_pay_with_bonuses_at_median" not in w:
        return line + "; bonuses not included (not in this input: the ledger records them)"
    if not w["bonus_per_assignment_mean"]:
        return line + "; no bonuses paid"
    return (line + f"; with bonuses ({m(w['bonus_per_assignment_mean'])} per {word} on average): "
            f"{m(w['hourly_pay_with_bonuses_at_median'])} at the median work time "
            f"({m(w['hourly_pay_with_bonuses_overall'])} over all work time)")


def _cost_line(w: dict[str, Any]) -> str:
    c = w.get("cost")
    if c is None:
        return "- Total cost: not in this input (the ledger records bonuses and fees)"
    cur, word = c.get("currency", "USD"), c.get("submissions_word", "assignments")

    def m(x: float) -> str:
        return _money(x, cur)

    line = (f"- Total cost: {m(c['total'])} = rewards {m(c['rewards'])} ({c['approved_assignments']} "
            f"approved {word}) + bonuses {m(c['bonuses'])} ({c['bonuses_paid']} paid) + "
            f"{c.get('fee_label', 'MTurk fees')} {m(c['fees'])}")
    later = []
    if c["submitted_assignments"]:
        later.append(f"{c['submitted_assignments']} submitted {word} not yet reviewed "
                     f"({m(c['submitted_cost'])} with fees; approved automatically unless rejected)")
    if c["bonuses_pending"]:
        later.append(f"{c['bonuses_pending']} pending bonuses ({m(c['bonuses_pending_cost'])} with fees)")
    if later:
        line += "; still to come: " + ", ".join(later)
    return line


def _unchecked_lines(w: dict[str, Any]) -> list[str]:
    u = w.get("unchecked_workers", [])
    if not u:
        return ["- Every worker met at least one attention check."]
    rows = sum(x["rows_used"] for x in u)
    lines = [f"- Workers who met no attention check: {len(u)}, with {sum(x['assignments'] for x in u)} "
             f"assignments; their {rows} rating rows are used unchecked"]
    lines += [f"  - {x['worker_id']}: {x['assignments']} assignment(s)" for x in u[:20]]
    if len(u) > 20:
        lines.append(f"  - ... and {len(u) - 20} more (all in `report.json`)")
    return lines


def workers_markdown(an: Analysis) -> str:
    w = an.workers
    apw = w["assignments_per_worker"]
    rate = "-" if not math.isfinite(w["attention_pass_rate"]) else f"{w['attention_pass_rate']:.1%}"
    lines = [
        f"- Distinct workers: {w['workers']} ({w['workers_used']} with ratings used)",
        f"- Assignments: {w['assignments']} ({w['rejected_assignments']} rejected); per worker mean "
        f"{_f2(apw['mean'])}, median {_f2(apw['median'])}, max {apw['max']}",
        f"- Median work time: {_f2(w['median_work_time_s'])} s per assignment",
        _pay_line(w),
        _cost_line(w),
        f"- Attention checks: {w['attention_passed']} of {w['attention_checks']} passed ({rate})",
        *_unchecked_lines(w),
    ]
    if w["excluded_workers"]:
        lines.append(f"- Workers excluded: {len(w['excluded_workers'])}")
        for e in w["excluded_workers"]:
            lines.append(f"  - {e['worker_id']}: {e['reason']} ({e['assignments']} assignments)")
    else:
        lines.append("- Workers excluded: none")
    if an.underrated:
        lines.append(f"- Items with fewer than the planned {an.planned_ratings} ratings: {len(an.underrated)} "
                     "(all in `underrated_items.csv`)")
        for u in an.underrated[:20]:
            lines.append(f"  - {u['item_id']}: {u['ratings']} rating(s)")
        if len(an.underrated) > 20:
            lines.append(f"  - ... and {len(an.underrated) - 20} more")
    else:
        lines.append(f"- Every item has at least the planned {an.planned_ratings} ratings.")
    return "\n".join(lines) + "\n"


def to_json(an: Analysis, automatic: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return clean({
        "experiment": an.experiment, "language": an.language, "table_numbers": an.table_numbers,
        "simulated_rows": an.simulated_rows, "counts": an.counts, "settings": an.settings,
        "human_reference": an.human_reference,
        "table2": an.table2, "table3": an.table3, "tests": an.tests, "test_summary": an.test_summary,
        "agreement": an.agreement, "workers": an.workers, "underrated": an.underrated, "warnings": an.warnings,
        "mixed_models": an.mixed_models,
        "automatic": automatic,
        # Several Table 3 aspects: each one's rows ("table3" above is the first one's).
        **({"table3_by_aspect": an.table3s} if len(an.table3s) > 1 else {}),
    })


def _interval_note(an: Analysis) -> str:
    if an.settings.get("intervals", "crossed") == "crossed":
        return "Confidence intervals treat items and raters as random (`[report] intervals = \"crossed\"`)."
    return (f"Confidence intervals resample items with replacement, each system and aspect with its own random "
            f"stream from seed {an.settings['seed']} (`[report] intervals = \"item_bootstrap\"`).")


def _interval_caption(an: Analysis) -> str:
    if an.settings.get("intervals", "crossed") == "crossed":
        return ("95% confidence intervals of the means, items and raters both random (model-based: variance "
                "components from pairs of ratings, t with Satterthwaite's df; docs/report.md)")
    return (f"95% bootstrap confidence intervals of the means ({an.settings['bootstrap_samples']} item "
            "resamples, percentile method; raters treated as fixed)")


def report_markdown(an: Analysis, plots: dict[str, str], automatic_md: str | None, sources: list[str]) -> str:
    """The whole results section as one Markdown document."""
    tn = an.table_numbers
    out = [f"# Results: {an.experiment}\n\n"]
    if an.simulated_rows:
        out.append(BANNER.format(n=an.simulated_rows) + "\n\n")
    c = an.counts
    out.append(f"Inputs: {', '.join(sources)}. {c['rows']} rating rows read, {c['used_rows']} used "
               f"({c['rejected_rows']} from rejected assignments, {c['attention_check_rows']} on attention-check "
               f"items, {c['failed_check_rows']} from assignments that failed a check, {c['excluded_worker_rows']} "
               f"from excluded workers, {c['duplicate_rows']} duplicates).\n\n")
    if automatic_md:
        out.append(f"## Automatic evaluation (Table {tn['auto']})\n\n{automatic_md}\n")
    h, rows = table2_rows(an)
    out.append(f"## Human evaluation (Table {tn['human']})\n\n"
               f"Mean (SD) over all answers of all workers on {scale_words(an)}. A superscript lists the systems "
               f"(letters, within the eval set) that the cell is significantly better than (Holm-adjusted "
               f"p < {an.settings['alpha']}).\n\n" + markdown_table(h, rows))
    ci_rows = []
    for r in an.table2:
        ci_rows.append([r["eval_set_name"], f"({r['letter']}) {r['method_name']}", r["model"],
                        *[f"{_f2(r['aspects'][a]['mean'])} [{_f2(r['aspects'][a]['ci_low'])}, "
                          f"{_f2(r['aspects'][a]['ci_high'])}]" for a in an.aspects]])
    out.append(f"\n{_interval_caption(an)}:\n\n" +
               markdown_table(["Eval Dataset", "Training Method", "Model",
                               *[an.aspect_title(a) for a in an.aspects]], ci_rows))
    if "means" in plots:
        out.append(f"\n![Per-aspect means with 95% confidence intervals]({plots['means']})\n")
    for t3 in an.table3_aspects:
        h, rows = table3_rows(an, t3.name)
        what = "persona-consideration" if t3.name == "persona" else t3.title.lower()
        out.append(f"\n## {t3.title} (Table {tn['persona']})\n\nEach response's mean {what} "
                   f"score over its workers, counted in bins (a mean of exactly {t3.high} falls in the last bin).\n\n"
                   + markdown_table(h, rows))
        plot = plots.get("persona") if len(an.table3_aspects) == 1 else plots.get(f"table3:{t3.name}")
        if plot:
            title = "Persona-consideration" if t3.name == "persona" else t3.title
            out.append(f"\n![{title} distribution per system]({plot})\n")
    family = "eval set" if an.settings.get("holm_family", "eval_set") == "eval_set" else "eval set and aspect"
    out.append("\n## Differences between systems\n\n"
               "Two-sided tests on exact per-item mean scores between every pair of systems within an eval set, per "
               "aspect: Wilcoxon signed-rank on the prompts both systems answered (paired by persona and pair id "
               "from the responses file; prompts only one system answered are left out and named in the "
               "warnings), Mann-Whitney U only where the design is unpaired. Exact p-values (conditional on "
               "ties, zero differences dropped) up to 25 non-zero pairs or 50 pooled items, the tie-corrected normal "
               "approximation with continuity correction beyond. p-values are Holm-corrected within each "
               f"{family}; undefined tests (no data, every difference zero) are left out of the family. The "
               "difference is that of the Table 2 means, with the interval method of the table above.\n\n")
    for s in an.test_summary:
        out.append(f"- {s['sentence']}\n")
    if an.tests:
        h, rows = tests_rows(an)
        out.append("\n" + markdown_table(h, rows))
        out.append("\nWhich test, and why:\n\n" + designs_markdown(an))
    if an.mixed_models:
        h, rows = mixed_model_rows(an)
        sub = [m for m in an.mixed_models if m.get("subsampled_from")]
        note = (f" Fitted on a random subsample of whole items where an eval set and aspect has more than "
                f"{an.settings.get('mixed_model_max_ratings')} ratings ({len(sub)} of {len(an.mixed_models)} fits; "
                "the Ratings column says 'n of N')." if sub else " Fitted on all ratings.")
        out.append("\n## Mixed-effects model\n\nPer eval set and aspect, score ~ system + (1 | item) + (1 | rater) "
                   "by REML: the system differences with Wald 95% intervals and p-values (not Holm-corrected), and "
                   "the variance components (on the aspect's own scale) with 95% intervals (Wald on the log scale). Beside, "
                   "not instead of, the paper's tables." + note + "\n\n" + markdown_table(h, rows))
    elif an.settings.get("mixed_model") is False:
        out.append("\n## Mixed-effects model\n\nNot fitted (`[report] mixed_model = false`).\n")
    h, rows = agreement_rows(an)
    out.append("\n## Agreement between workers\n\nKrippendorff's alpha over items (units) with at least two "
               "ratings, next to the leave-one-out Spearman correlation (each rating against the mean of the "
               "item's other ratings) and the share of rating pairs within an item that agree exactly or within one "
               "point (each pair of ratings of the same item and aspect counted once). "
               "Likert agreement in NLG studies is usually low; read alpha together with the correlation.\n\n"
               + markdown_table(h, rows))
    out.append("\n## Workers\n\n" + workers_markdown(an))
    if an.warnings:
        out.append("\n## Data warnings\n\n" + "".join(f"- {w}\n" for w in an.warnings))
    out.append("\n## Method notes\n\n"
               f"- SD is the sample standard deviation (n-1). {_interval_note(an)}\n"
               f"- Excluded: rejected assignments, ratings of attention-check items, assignments that failed "
               f"their check, and workers passing fewer than {an.settings['min_attention_pass_rate']:.0%} of their "
               f"checks (rejected assignments included). Duplicate ratings policy: {an.settings['duplicates']}.\n"
               "- Files: `tables/` (Markdown, LaTeX, CSV, JSON), `tests.csv`, `mixed_model.csv`, `agreement.csv`, "
               "`underrated_items.csv`, `report.json`, `plots/`.\n")
    return "".join(out)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"

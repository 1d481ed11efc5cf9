"""The report's statistics end to end (issue #17): exact ties, pairing on shared prompts, undefined tests
outside Holm, the Holm family, per-system intervals independent of other systems, the mixed model and its
subsample, counted warnings for conflicting per-assignment values."""
from __future__ import annotations

import pytest

from mturk_eval.analysis import stats
from mturk_eval.analysis.core import analyze
from mturk_eval.analysis.ratings import ResponseIndex, ratings_from_records
from mturk_eval.config import ASPECTS, ExperimentConfig, parse_config
from mturk_eval.errors import UserError
from helpers.analysis import make_rows, responses_for


def cfg(**report) -> ExperimentConfig:
    c = ExperimentConfig(name="t", models=["tiny"])
    c.report.bootstrap_samples = 200
    for k, v in report.items():
        setattr(c.report, k, v)
    return c


def index(rows) -> ResponseIndex:
    return ResponseIndex("responses.jsonl", {r["item_id"]: r for r in responses_for(rows)})


def rating(item, worker, method, score, q, aspect="fluency", **kw):
    return {"item_id": item, "eval_set": "persona", "method": method, "model": "tiny", "persona_id": "p1",
            "worker_id": worker, "assignment_id": kw.pop("assignment_id", f"{worker}-{item}"), "aspect": aspect,
            "score": score, **kw}


def two_systems(scores_a: list[list[int]], scores_b: list[list[int]], aspect="fluency"):
    """Prompt k: system a's item rated scores_a[k], system b's scores_b[k] (one worker per score)."""
    rows = []
    for k, (sa, sb) in enumerate(zip(scores_a, scores_b)):
        for method, scores in (("prompt_tuning", sa), ("finetune_none", sb)):
            for w, s in enumerate(scores):
                rows.append(rating(f"persona.p1.q{k}.{method}.tiny", f"W{w}", method, s, k, aspect))
    return rows


def fluency_test(an, a="a", b="b"):
    (t,) = [t for t in an.tests if t["aspect"] == "fluency" and (t["a"], t["b"]) == (a, b)]
    return t


def test_five_prompts_all_one_way_are_not_significant():
    rows = two_systems([[5, 4, 5]] * 5, [[2, 3, 2]] * 5)
    an = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    t = fluency_test(an)
    assert t["test"] == "wilcoxon" and t["method"] == "exact" and t["p"] == pytest.approx(0.0625)
    assert not t["significant"]


def test_float_rounding_no_longer_breaks_ties():
    # Prompt 0: 13/3 - 10/3; prompt 1: 4 - 3; prompt 2: 7/2 - 5/2 (all exactly 1) and three others.
    a = [[5, 4, 4], [4], [4, 3], [5, 5], [2, 3], [4, 4, 5]]
    b = [[3, 4, 3], [3], [3, 2], [3, 4], [3, 3], [2, 3, 3]]
    rows = two_systems(a, b)
    an = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    t = fluency_test(an)
    sums = lambda xs: [sum(x) for x in xs]  # noqa: E731
    lens = lambda xs: [len(x) for x in xs]  # noqa: E731
    import numpy as np
    ref = stats.compare_items(np.array(sums(a)), np.array(lens(a)), np.array(sums(b)), np.array(lens(b)), True)
    assert t["p"] == ref.p and t["method"] == "exact"
    keys = stats.difference_keys(np.array(sums(a)), np.array(lens(a)), np.array(sums(b)), np.array(lens(b)))
    assert keys[0] == keys[1] == keys[2]


def test_unmatched_prompts_are_dropped_with_a_warning_naming_them():
    rows = two_systems([[5, 4], [4, 4], [3, 4], [5, 5], [4, 4], [2, 3]], [[3, 3], [2, 3], [3, 3], [4, 4], [3, 3], [3, 3]])
    rows = [r for r in rows if not (r["method"] == "finetune_none" and ".q5." in r["item_id"])]
    an = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    t = fluency_test(an)
    assert t["test"] == "wilcoxon" and t["n_a"] == t["n_b"] == 5
    assert t["design"] == "paired on the 5 prompts both systems answered (1 answered by one system left out)"
    (w,) = [w for w in an.warnings if "left out of the paired test" in w]
    assert w == ("Persona: (a) vs (b): 1 prompt(s) answered by only one system were left out of the paired test "
                 "(fluency): p1/q5 (only (a))")
    unpaired = analyze(ratings_from_records(rows, "r"), cfg())
    assert fluency_test(unpaired)["test"] == "mannwhitney"
    assert fluency_test(unpaired)["design"] == "unpaired: no responses file to pair prompts"


def test_undefined_tests_leave_the_holm_family():
    # Fluency: every difference zero (undefined). Relevance: a real difference.
    rows = two_systems([[4, 4]] * 6, [[4, 4]] * 6, "fluency")
    rows += two_systems([[5, 5], [5, 4], [4, 5], [5, 5], [4, 4], [5, 5]], [[2, 2], [3, 2], [2, 3], [3, 3], [2, 2], [1, 2]],
                        "relevance")
    an = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    flu = fluency_test(an)
    (rel,) = [t for t in an.tests if t["aspect"] == "relevance"]
    assert flu["undefined"] == "every difference is zero" and flu["p_holm"] != flu["p_holm"]  # NaN
    assert not flu["significant"]
    assert rel["p_holm"] == pytest.approx(rel["p"])      # a family of one: the undefined test does not count
    assert rel["p"] == pytest.approx(2 / 64) and rel["significant"]
    # engagingness and persona have no ratings at all: undefined too
    assert [t["undefined"] for t in an.tests if t["aspect"] in ("engagingness", "persona")] == ["a side has no items"] * 2
    assert any(w.startswith("3 test(s) could not be computed") for w in an.warnings)
    (s,) = an.test_summary
    assert s["undefined"] == 3 and "1 of 1 comparisons significant at 0.05, 3 undefined" in s["sentence"]
    assert an.mixed_models[0]["not_fitted"] == "every score is the same"


def test_holm_family_per_eval_set_or_per_aspect():
    rows = make_rows(n_prompts=20, seed=1, shift={"prompt_tuning": 0.6})
    rows = [r for r in rows if r["eval_set"] == "persona"]
    by_set = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    by_aspect = analyze(ratings_from_records(rows, "r"), cfg(holm_family="eval_set_aspect"), index(rows))
    assert [t["p"] for t in by_set.tests] == [t["p"] for t in by_aspect.tests]
    assert [t["p_holm"] for t in by_set.tests] == pytest.approx(list(stats.holm([t["p"] for t in by_set.tests])))
    for a in ASPECTS:
        ts = [t for t in by_aspect.tests if t["aspect"] == a]
        assert [t["p_holm"] for t in ts] == pytest.approx(list(stats.holm([t["p"] for t in ts])))
    with pytest.raises(UserError, match="holm_family"):
        parse_config('name = "x"\n[report]\nholm_family = "everything"\n')


@pytest.mark.parametrize("method", ["crossed", "item_bootstrap"])
def test_removing_a_system_leaves_other_intervals_byte_identical(method):
    rows = make_rows(n_prompts=10, seed=5)
    fewer = [r for r in rows if r["method"] != "finetune_none"]
    full = analyze(ratings_from_records(rows, "r"), cfg(intervals=method), index(rows))
    part = analyze(ratings_from_records(fewer, "r"), cfg(intervals=method), index(fewer))
    cells = lambda an: {(t["eval_set"], t["method"], a): (t["aspects"][a]["ci_low"], t["aspects"][a]["ci_high"])  # noqa: E731
                        for t in an.table2 for a in ASPECTS}
    got, ref = cells(part), cells(full)
    assert got and all(got[k] == ref[k] for k in got)
    assert all(v[0] < v[1] for v in got.values())
    diffs = lambda an: {(t["eval_set"], t["aspect"], t["system_a"], t["system_b"]): (  # noqa: E731
        t["difference_ci_low"], t["difference_ci_high"]) for t in an.tests}
    d_part, d_full = diffs(part), diffs(full)
    assert d_part and all(d_part[k] == d_full[k] for k in d_part)


def test_crossed_intervals_are_wider_than_item_only_when_raters_differ():
    rows = make_rows(n_prompts=20, seed=2, n_workers=5)
    for r in rows:  # rater effects: W0 harsh, W4 lenient
        r["score"] = max(1, min(5, r["score"] + {"AW0": -1, "AW4": 1}.get(r["worker_id"], 0)))
    crossed = analyze(ratings_from_records(rows, "r"), cfg())
    item = analyze(ratings_from_records(rows, "r"), cfg(intervals="item_bootstrap", bootstrap_samples=500))
    width = lambda an: sum(c["ci_high"] - c["ci_low"] for t in an.table2 for c in t["aspects"].values())  # noqa: E731
    assert width(crossed) > 1.3 * width(item)


def test_mixed_model_beside_the_tables_subsampled_above_the_cap_or_off():
    rows = make_rows(n_prompts=20, seed=3, shift={"prompt_tuning": 0.8})
    rows = [r for r in rows if r["eval_set"] == "persona"]
    an = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    assert [(m["eval_set"], m["aspect"]) for m in an.mixed_models] == [("persona", a) for a in ASPECTS]
    m = an.mixed_models[0]
    assert m["ratings"] == 3 * 20 * 5 and m["subsampled_from"] == 0 and m["items"] == 60
    assert set(m["variance"]) == {"item", "rater", "residual"}
    assert [(d["a"], d["b"]) for d in m["differences"]] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert m["differences"][0]["estimate"] > 0
    small = analyze(ratings_from_records(rows, "r"), cfg(mixed_model_max_ratings=100), index(rows))
    s = small.mixed_models[0]
    assert s["subsampled_from"] == 300 and 90 <= s["ratings"] <= 100 and s["ratings"] % 5 == 0
    from mturk_eval.analysis.render import report_markdown
    assert "Fitted on a random subsample of whole items" in report_markdown(small, {}, None, ["r"])
    off = analyze(ratings_from_records(rows, "r"), cfg(mixed_model=False), index(rows))
    assert off.mixed_models == [] and "Not fitted (`[report] mixed_model = false`)" in report_markdown(off, {}, None, ["r"])
    # The paper's tables do not change with the model.
    assert off.table2 == an.table2 and off.table3 == an.table3


def test_conflicting_work_times_in_one_assignment_are_counted():
    rows = [rating("x1", "W1", "prompt_tuning", 4, 0, a, assignment_id="A1", work_time_s=t)
            for a, t in zip(ASPECTS, (30, 30, 45, 30))]
    rows += [rating("x2", "W2", "prompt_tuning", 3, 0, a, assignment_id="A2", work_time_s=20) for a in ASPECTS]
    an = analyze(ratings_from_records(rows, "r"), cfg())
    (w,) = [w for w in an.warnings if "work_time_s" in w]
    assert w == ("1 assignment(s) have different work_time_s values on different rows (e.g. A1: 30 s, 45 s); the "
                 "worker figures use each assignment's first row.")
    assert an.workers["median_work_time_s"] == 25.0

"""Tables 2/3, tests, exclusions and worker figures, each checked against a plain-Python recomputation
on small hand-made ratings."""
from __future__ import annotations

import statistics
from collections import defaultdict
from fractions import Fraction

import pytest

from mturk_eval.analysis.core import analyze
from mturk_eval.analysis.ratings import ResponseIndex, ratings_from_records
from mturk_eval.config import ASPECTS, ExperimentConfig
from mturk_eval.errors import UserError
from helpers.analysis import make_rows, responses_for


def cfg(**report) -> ExperimentConfig:
    c = ExperimentConfig(name="t", models=["tiny"])
    for k, v in report.items():
        setattr(c.report, k, v)
    c.report.bootstrap_samples = report.get("bootstrap_samples", 200)
    return c


def index(rows) -> ResponseIndex:
    return ResponseIndex("responses.jsonl", {r["item_id"]: r for r in responses_for(rows)})


def rating(item, worker, aspect, score, es="persona", method="prompt_tuning", model="tiny", **kw):
    row = {"item_id": item, "eval_set": es, "method": method, "model": model, "persona_id": "p1",
           "worker_id": worker, "assignment_id": kw.pop("assignment_id", f"{worker}-{item}"), "aspect": aspect,
           "score": score}
    row.update(kw)
    return row


def full(item, worker, scores, **kw):
    """One assignment: four aspects in the paper's order."""
    return [rating(item, worker, a, s, **kw) for a, s in zip(ASPECTS, scores)]


def test_table2_mean_sd_and_counts_match_plain_python():
    rows = make_rows(n_prompts=6, seed=3, shift={"finetune_added": -0.5})
    an = analyze(ratings_from_records(rows, "r"), cfg())
    groups = defaultdict(list)
    items = defaultdict(set)
    for r in rows:
        groups[(r["eval_set"], r["method"], r["model"], r["aspect"])].append(r["score"])
        items[(r["eval_set"], r["method"], r["model"], r["aspect"])].add(r["item_id"])
    assert len(an.table2) == 6
    assert [(t["eval_set"], t["method"]) for t in an.table2] == [
        (e, m) for e in ("persona", "general") for m in ("prompt_tuning", "finetune_none", "finetune_added")]
    for t in an.table2:
        for a in ASPECTS:
            vals = groups[(t["eval_set"], t["method"], t["model"], a)]
            cell = t["aspects"][a]
            assert cell["n"] == len(vals)
            assert cell["items"] == len(items[(t["eval_set"], t["method"], t["model"], a)])
            assert cell["mean"] == pytest.approx(statistics.mean(vals))
            assert cell["sd"] == pytest.approx(statistics.stdev(vals))
            assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]


def test_table3_bins_on_exact_boundaries():
    # Per-item persona scores whose means land exactly on and around the bin edges.
    cases = {
        "m1.0": [1, 1, 1], "m1.8": [1, 2, 2, 2, 2], "m2.0": [2, 2, 2, 2, 2], "m2.0b": [1, 3, 2],
        "m2.33": [2, 2, 3], "m3.0": [3, 4, 2], "m3.8": [4, 4, 4, 4, 3], "m4.0": [4, 4, 4], "m4.0b": [5, 3, 4],
        "m5.0": [5, 5, 5, 5, 5], "m4.67": [5, 5, 4],
    }
    rows = []
    for item, scores in cases.items():
        for w, s in enumerate(scores):
            rows += full(item, f"AW{w}", [3, 3, 3, s])
    an = analyze(ratings_from_records(rows, "r"), cfg(planned_ratings=3))
    expected = [0, 0, 0, 0]
    for scores in cases.values():
        mean = Fraction(sum(scores), len(scores))
        expected[0 if mean < 2 else 1 if mean < 3 else 2 if mean < 4 else 3] += 1
    assert expected == [2, 3, 2, 4]
    (t3,) = an.table3
    assert list(t3["bins"].values()) == expected
    assert t3["n"] == len(cases)


def test_tests_mark_significant_differences_and_say_none_on_general():
    rows = make_rows(n_prompts=30, seed=1, shift={"prompt_tuning": 1.2})
    # General: all three methods draw from the same distribution.
    general = make_rows(n_prompts=30, seed=2, systems=[("general", m, "tiny") for m in
                                                       ("prompt_tuning", "finetune_none", "finetune_added")])
    rows = [r for r in rows if r["eval_set"] == "persona"] + general
    an = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    persona = [t for t in an.tests if t["eval_set"] == "persona"]
    assert len(persona) == 3 * len(ASPECTS) and all(t["test"] == "wilcoxon" for t in persona)
    pt = next(t for t in an.table2 if t["eval_set"] == "persona" and t["method"] == "prompt_tuning")
    assert pt["aspects"]["fluency"]["better_than"] == ["b", "c"]
    assert all(not t["significant"] for t in an.tests if t["eval_set"] == "general")
    summary = {s["eval_set"]: s["sentence"] for s in an.test_summary}
    assert summary["general"].startswith("General: no significant differences between systems on any aspect (12 tests")
    # Holm within the eval set, recomputed by hand.
    ps = [t["p"] for t in persona]
    order = sorted(range(len(ps)), key=ps.__getitem__)
    running, adj = 0.0, {}
    for rank, i in enumerate(order):
        running = max(running, (len(ps) - rank) * ps[i])
        adj[i] = min(1.0, running)
    assert [t["p_holm"] for t in persona] == pytest.approx([adj[i] for i in range(len(ps))])


def test_unpaired_without_responses_file():
    rows = make_rows(n_prompts=5, seed=4)
    an = analyze(ratings_from_records(rows, "r"), cfg())
    assert {t["test"] for t in an.tests} == {"mannwhitney"}


def test_exclusions_are_counted_and_explained():
    rows = []
    # Worker AW1: two assignments with checks, failed both -> excluded entirely.
    rows += full("x1", "AW1", [5, 5, 5, 5], attention_passed=0, assignment_id="a1")
    rows += full("chk", "AW1", [5, 5, 5, 5], attention_check=1, attention_passed=0, method="attention_check",
                 assignment_id="a1")
    rows += full("x2", "AW1", [5, 5, 5, 5], attention_passed=0, assignment_id="a2")
    # Worker AW2: one failed check out of five -> 80% pass rate, kept; the failed assignment is dropped.
    for k in range(5):
        ok = 0 if k == 0 else 1
        rows += full(f"x{k}", "AW2", [1, 1, 1, 1] if not ok else [3, 3, 3, 3], attention_passed=ok,
                     assignment_id=f"b{k}")
    # Worker AW3: one rejected assignment, one fine.
    rows += full("x1", "AW3", [4, 4, 4, 4], status="Rejected", assignment_id="c1")
    rows += full("x2", "AW3", [2, 2, 2, 2], status="Approved", assignment_id="c2")
    an = analyze(ratings_from_records(rows, "r"), cfg(min_attention_pass_rate=0.8))
    c = an.counts
    assert c["rejected_rows"] == 4 and c["rejected_assignments"] == 1
    assert c["attention_check_rows"] == 4
    assert c["failed_check_assignments"] == 3 and c["failed_check_rows"] == 12
    # AW2's four passing assignments + AW3's approved one.
    assert c["used_rows"] == 5 * 4
    (ex,) = an.workers["excluded_workers"]
    assert ex["worker_id"] == "AW1" and ex["reason"].startswith("passed 0 of 2 attention checks")
    assert an.workers["attention_checks"] == 7 and an.workers["attention_passed"] == 4
    assert an.workers["attention_pass_rate"] == pytest.approx(4 / 7)
    assert any("rejected assignment" in w for w in an.warnings)
    # Fluency mean recomputed from the rows that remain: AW2 x1..x4 (3) and AW3 x2 (2).
    assert an.table2[0]["aspects"]["fluency"]["mean"] == pytest.approx((3 * 4 + 2) / 5)


def test_duplicate_ratings_warn_and_keep_first_or_fail():
    rows = full("x1", "AW1", [4, 4, 4, 4]) + full("x1", "AW2", [2, 2, 2, 2])
    rows += full("x1", "AW1", [1, 1, 1, 1], assignment_id="again")
    an = analyze(ratings_from_records(rows, "r"), cfg())
    assert an.counts["duplicate_rows"] == 4
    assert an.table2[0]["aspects"]["fluency"]["mean"] == pytest.approx(3.0)
    assert any(w.startswith("4 duplicate rating(s)") and "line 9 (first on line 1)" in w for w in an.warnings)
    with pytest.raises(UserError, match=r"^r:9: worker_id: expected one rating per worker, item and aspect"):
        analyze(ratings_from_records(rows, "r"), cfg(duplicates="error"))


def test_underrated_items_listed():
    rows = []
    for w in range(5):
        rows += full("full", f"AW{w}", [3, 3, 3, 3])
    for w in range(2):
        rows += full("short", f"AW{w}", [3, 3, 3, 3])
    an = analyze(ratings_from_records(rows, "r"), cfg())
    assert an.planned_ratings == 5
    assert [(u["item_id"], u["ratings"]) for u in an.underrated] == [("short", 2)]


def test_worker_figures_by_hand():
    rows = []
    times = {"AW1": [20, 40, 60], "AW2": [30]}
    for w, ts in times.items():
        for k, t in enumerate(ts):
            rows += full(f"x{k}", w, [3, 4, 3, 4], work_time_s=t)
    an = analyze(ratings_from_records(rows, "r"), cfg())
    w = an.workers
    assert w["workers"] == 2 and w["assignments"] == 4
    assert w["assignments_per_worker"]["mean"] == 2.0 and w["assignments_per_worker"]["max"] == 3
    assert w["median_work_time_s"] == statistics.median([20, 40, 60, 30])
    assert w["hourly_pay_at_median"] == pytest.approx(0.05 * 3600 / 35)
    assert w["hourly_pay_overall"] == pytest.approx(0.05 * 4 * 3600 / 150)


def test_worker_table_medians_per_worker():
    """Each worker's median work time over its assignments: odd and even numbers of them, unsorted,
    unknown times left out, and a worker with none known."""
    rows = []
    times = {"AW1": [60, 20, 40], "AW2": [30, 10, 50, 25], "AW3": [None, 7], "AW4": [None]}
    for w, ts in times.items():
        for k, t in enumerate(ts):
            rows += full(f"x{k}", w, [3, 4, 3, 4], **({} if t is None else {"work_time_s": t}))
    an = analyze(ratings_from_records(rows, "r"), cfg())
    med = {row["worker_id"]: row["median_work_time_s"] for row in an.worker_table}
    assert med["AW1"] == 40 and med["AW2"] == statistics.median([30, 10, 50, 25]) == 27.5 and med["AW3"] == 7
    assert med["AW4"] != med["AW4"]   # NaN


def test_simulated_rows_counted_and_human_reference_checked():
    rows = full("x1", "AW1", [3, 3, 3, 3], simulated=1) + full("x1", "AW2", [4, 4, 4, 4])
    an = analyze(ratings_from_records(rows, "r"), cfg(human_reference={"fluency": "4.31 (1.07)"}))
    assert an.simulated_rows == 4
    with pytest.raises(UserError, match=r"report.human_reference.persona: expected one of fluency"):
        analyze(ratings_from_records(rows, "r"), cfg(human_reference={"persona": "4 (1)"}))


def test_agreement_rows_pooled_and_per_system():
    rows = make_rows(n_prompts=6, seed=9)
    an = analyze(ratings_from_records(rows, "r"), cfg())
    pooled = [g for g in an.agreement if g["scope"] == "all systems"]
    assert [g["aspect"] for g in pooled] == list(ASPECTS)
    assert len(an.agreement) == len(ASPECTS) * (1 + 6)
    assert all(g["units"] == 36 for g in pooled)
    assert all(-1 <= g["alpha_ordinal"] <= 1 for g in an.agreement)


def test_nothing_usable_is_an_error():
    rows = full("x1", "AW1", [3, 3, 3, 3], status="Rejected")
    with pytest.raises(UserError, match="expected at least one usable rating after exclusions"):
        analyze(ratings_from_records(rows, "r"), cfg())


def test_workers_without_any_attention_check_are_listed():
    """A careless worker who met no attention check is used unchecked: the workers section says so."""
    from mturk_eval.analysis.render import workers_markdown

    rows = []
    rows += full("x1", "AW1", [3, 3, 3, 3], attention_passed=1, assignment_id="a1")
    rows += full("chk", "AW1", [1, 1, 1, 1], attention_check=1, attention_passed=1, assignment_id="a1")
    for k in range(3):  # AW2: three assignments, none with a check
        rows += full(f"x{k}", "AW2", [5, 5, 5, 5], assignment_id=f"b{k}")
    rows += full("x2", "AW3", [4, 4, 4, 4], assignment_id="c1")
    rows += full("x3", "AW4", [4, 4, 4, 4], status="Rejected", assignment_id="d1")  # rejected only: not "unchecked"
    an = analyze(ratings_from_records(rows, "r"), cfg())
    u = an.workers["unchecked_workers"]
    assert u == [{"worker_id": "AW2", "assignments": 3, "rows_used": 12},
                 {"worker_id": "AW3", "assignments": 1, "rows_used": 4}]
    md = workers_markdown(an)
    assert "- Workers who met no attention check: 2, with 4 assignments; their 16 rating rows are used unchecked" in md
    assert "  - AW2: 3 assignment(s)" in md
    ok = analyze(ratings_from_records(rows[:8], "r"), cfg())
    assert "Every worker met at least one attention check." in workers_markdown(ok)


def test_failed_checks_without_other_rows_are_worded_correctly():
    """One item per HIT: a failed check assignment holds only the check. The warning must not claim that
    "their 0 rating rows were excluded"; the failing worker's other rows go with the worker."""
    rows = []
    for k in range(2):
        rows += full(f"chk{k}", "AW1", [5, 5, 5, 5], attention_check=1, attention_passed=0, assignment_id=f"f{k}")
    rows += full("x1", "AW1", [5, 5, 5, 5], assignment_id="a1")
    rows += full("chk2", "AW2", [1, 1, 1, 1], attention_check=1, attention_passed=1, assignment_id="g1")
    rows += full("x1", "AW2", [3, 3, 3, 3], assignment_id="a2")
    an = analyze(ratings_from_records(rows, "r"), cfg(min_attention_pass_rate=0.8))
    (w,) = [w for w in an.warnings if "attention check" in w]
    assert w == ("2 assignment(s) failed their attention check; they held no rating rows besides the check itself "
                 "(nothing more to exclude); all of them by excluded workers, whose other rating rows were "
                 "excluded with them (see Workers).")
    assert "0 rating rows" not in w and an.counts["excluded_worker_rows"] == 4
    # an assignment with real items too: its rows are counted
    rows += full("x2", "AW2", [3, 3, 3, 3], attention_passed=0, assignment_id="a3")
    rows += full("chk3", "AW2", [5, 5, 5, 5], attention_check=1, attention_passed=0, assignment_id="a3")
    an = analyze(ratings_from_records(rows, "r"), cfg(min_attention_pass_rate=0.4))
    assert "3 assignment(s) failed their attention check; their 4 rating rows were excluded; 2 of them by " \
           "excluded workers" in " ".join(an.warnings)


def test_hourly_pay_with_bonuses_and_total_cost():
    from decimal import Decimal

    from mturk_eval.analysis.cost import Spend
    from mturk_eval.analysis.render import workers_markdown

    rows = []
    for w, t in (("AW1", 20), ("AW2", 40)):
        rows += full("x1", w, [3, 3, 3, 3], work_time_s=t, assignment_id=f"a-{w}")
    spend = Spend(approved=2, rewards=Decimal("0.10"), reward_fees=Decimal("0.02"), bonuses_paid=1,
                  bonuses=Decimal("0.20"), bonus_fees=Decimal("0.04"), submitted=3, submitted_cost=Decimal("0.18"),
                  bonus_by_assignment={"a-AW1": Decimal("0.20")})
    an = analyze(ratings_from_records(rows, "r"), cfg(), spend=spend)
    w = an.workers
    assert w["hourly_pay_at_median"] == pytest.approx(0.05 * 3600 / 30)  # without bonuses, as before
    assert w["bonus_per_assignment_mean"] == pytest.approx(0.10)
    assert w["hourly_pay_with_bonuses_at_median"] == pytest.approx(0.15 * 3600 / 30)
    assert w["hourly_pay_with_bonuses_overall"] == pytest.approx((0.10 + 0.20) * 3600 / 60)
    assert w["cost"]["total"] == pytest.approx(0.36)
    md = workers_markdown(an)
    assert "with bonuses ($0.10 per assignment on average): $18.00 at the median work time ($18.00 over all work time)" in md
    assert ("- Total cost: $0.36 = rewards $0.10 (2 approved assignments) + bonuses $0.20 (1 paid) + MTurk fees $0.06; "
            "still to come: 3 submitted assignments not yet reviewed ($0.18 with fees") in md
    plain = workers_markdown(analyze(ratings_from_records(rows, "r"), cfg()))
    assert "bonuses not included" in plain and "- Total cost: not in this input" in plain


def test_rejected_failed_checks_still_count_towards_the_pass_rate():
    """`review --reject-failed-attention` rejects the failed-check assignments; they must stay in the
    worker's attention-check denominator (1 of 4 passed is 25%, not 1 of 1), though their ratings go."""
    rows = []
    for k in range(3):  # AW1: three failed checks, each assignment rejected
        rows += full(f"x{k}", "AW1", [1, 1, 1, 1], attention_passed=0, status="Rejected", assignment_id=f"f{k}")
        rows += full(f"chk{k}", "AW1", [5, 5, 5, 5], attention_check=1, attention_passed=0, status="Rejected",
                     method="attention_check", assignment_id=f"f{k}")
    rows += full("x3", "AW1", [2, 2, 2, 2], attention_passed=1, assignment_id="p1")
    rows += full("chk3", "AW1", [1, 1, 1, 1], attention_check=1, attention_passed=1, method="attention_check",
                 assignment_id="p1")
    rows += full("x4", "AW1", [2, 2, 2, 2], assignment_id="p2")  # no check in this one
    # AW2: one passed check, a rejected assignment without a check, all fine.
    rows += full("x0", "AW2", [4, 4, 4, 4], attention_passed=1, assignment_id="q1")
    rows += full("chk0", "AW2", [1, 1, 1, 1], attention_check=1, attention_passed=1, method="attention_check",
                 assignment_id="q1")
    rows += full("x1", "AW2", [4, 4, 4, 4], status="Rejected", assignment_id="q2")
    an = analyze(ratings_from_records(rows, "r"), cfg(min_attention_pass_rate=0.8))
    (ex,) = an.workers["excluded_workers"]
    assert ex["worker_id"] == "AW1" and ex["reason"].startswith("passed 1 of 4 attention checks (25%)")
    assert ex["assignments"] == 2  # its non-rejected assignments
    assert an.counts["excluded_worker_rows"] == 8  # x3 and x4; the rejected rows were rejected already
    assert an.counts["used_rows"] == 4  # AW2's x0 only
    assert an.table2[0]["aspects"]["fluency"]["mean"] == pytest.approx(4.0)
    # The reported pass rate counts the rejected check assignments too: AW1 1/4, AW2 1/1.
    assert an.workers["attention_checks"] == 5 and an.workers["attention_passed"] == 2
    assert an.workers["attention_pass_rate"] == pytest.approx(2 / 5)
    assert an.workers["unchecked_workers"] == []
    # A worker whose every assignment was rejected, after failing its checks, is listed once.
    rows += full("x5", "AW3", [1, 1, 1, 1], attention_passed=0, status="Rejected", assignment_id="z1")
    rows += full("chk5", "AW3", [5, 5, 5, 5], attention_check=1, attention_passed=0, status="Rejected",
                 method="attention_check", assignment_id="z1")
    an = analyze(ratings_from_records(rows, "r"), cfg(min_attention_pass_rate=0.8))
    aw3 = [e for e in an.workers["excluded_workers"] if e["worker_id"] == "AW3"]
    assert len(aw3) == 1 and aw3[0]["reason"].startswith("passed 0 of 1") and aw3[0]["assignments"] == 0


def test_better_than_follows_the_per_item_means_the_test_uses():
    """Uneven ratings per item: (b)'s mean over ratings is higher (two of its items were rated 50 times
    with 5), but per item (a) is higher (3 on every item against 2 on 20 of (b)'s 22), and the test on
    per-item means is significant in (a)'s favour. The letter must follow the test."""
    rows = []
    for k in range(20):
        for w in range(2):
            rows += full(f"a{k}", f"AW{w}", [3, 3, 3, 3], method="prompt_tuning")
        rows += full(f"b{k}", "AW0", [2, 2, 2, 2], method="finetune_none")
    for k in range(2):
        for w in range(50):
            rows += full(f"bb{k}", f"BW{w}", [5, 5, 5, 5], method="finetune_none")
    an = analyze(ratings_from_records(rows, "r"), cfg(planned_ratings=1))
    a_row, b_row = an.table2
    assert (a_row["letter"], b_row["letter"]) == ("a", "b")
    assert b_row["aspects"]["fluency"]["mean"] > a_row["aspects"]["fluency"]["mean"]  # 4.5 vs 3 over ratings
    for a in ASPECTS:
        assert a_row["aspects"][a]["better_than"] == ["b"] and b_row["aspects"][a]["better_than"] == []
    for t in an.tests:
        assert t["significant"] and t["test"] == "mannwhitney"
        assert t["item_mean_a"] == pytest.approx(3.0)
        assert t["item_mean_b"] == pytest.approx((20 * 2 + 2 * 5) / 22)
        assert t["better"] == "a"


def test_better_than_direction_of_paired_tests():
    """Paired (Wilcoxon): the direction is that of the signed ranks of the per-prompt differences."""
    rows = make_rows(n_prompts=30, seed=1, shift={"finetune_added": 1.2})
    rows = [r for r in rows if r["eval_set"] == "persona"]
    an = analyze(ratings_from_records(rows, "r"), cfg(), index(rows))
    fa = next(t for t in an.table2 if t["method"] == "finetune_added")
    assert fa["aspects"]["fluency"]["better_than"] == ["a", "b"]
    sig = [t for t in an.tests if t["significant"]]
    assert sig and all(t["test"] == "wilcoxon" for t in sig)
    assert all(t["better"] == "c" for t in sig if "c" in (t["a"], t["b"]))

"""The study planner (issue #14): its simulated analysis is the report's (same p-values on the same data),
predicted power matches a per-study loop of the report's test, zero effect rejects at alpha, pilots give
back their variance components within the stated intervals, costs follow the platforms' fee rules, and
bad inputs are one line with exit status 2."""
from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from click.testing import CliRunner

from mturk_eval.analysis.core import analyze
from mturk_eval.analysis.ratings import ResponseIndex, ratings_from_records, write_ratings_csv
from mturk_eval.cli import main
from mturk_eval.config import ASPECTS, ExperimentConfig
from mturk_eval.planning import power as pw
from mturk_eval.planning.model import model_from_pilot
from helpers.analysis import responses_for
from helpers.planning import METHODS, study_rows, toy_model


@pytest.fixture(autouse=True)
def _no_prolific_token(monkeypatch):
    """A developer's PROLIFIC_TOKEN must not make these tests ask the real Prolific (tests that want the
    calculator give the token to the emulator themselves)."""
    monkeypatch.delenv("PROLIFIC_TOKEN", raising=False)


@pytest.mark.parametrize("design", ["paired", "unpaired"])
def test_the_planners_analysis_is_the_reports(design):
    """Same ratings -> the planner's vectorised family of tests gives the report's p and Holm p: paired
    (a responses file pairs the prompts: Wilcoxon) and unpaired (none: the report runs Mann-Whitney)."""
    rng = np.random.default_rng(3)
    cfg = ExperimentConfig(name="t", models=["tiny"])
    cfg.report.mixed_model = False
    for items in (12, 30):       # exact and normal paths
        rows = study_rows(rng, items, 3, 3, pool=9, effect_latent=0.4)
        responses = ResponseIndex("x", {r["item_id"]: r for r in responses_for(rows)}) if design == "paired" else None
        an = analyze(ratings_from_records(rows, "r"), cfg, responses)
        assert {t["test"] for t in an.tests} == {"wilcoxon" if design == "paired" else "mannwhitney"}
        sums = {a: np.zeros((1, 3, items), np.int64) for a in ASPECTS}
        cnts = {a: np.zeros((1, 3, items), np.int64) for a in ASPECTS}
        for r in rows:
            s, i = METHODS.index(r["method"]), int(r["item_id"].split(".")[2][1:])
            sums[r["aspect"]][0, s, i] += r["score"]
            cnts[r["aspect"]][0, s, i] += 1
        setting = pw.Setting(toy_model(), systems=3, aspect="relevance", design=design)
        p, _ = pw._study_pvalues(sums, cnts, setting, pw._lcm_upto(3))
        adj = pw.holm_many(p)[0]
        order = [(a, i, j) for a in ["relevance"] + [x for x in ASPECTS if x != "relevance"]
                 for i, j in combinations(range(3), 2)]
        for k, (a, i, j) in enumerate(order):
            (t,) = [t for t in an.tests if t["aspect"] == a and (t["a"], t["b"]) == ("abc"[i], "abc"[j])]
            assert t["p"] == pytest.approx(p[0, k], abs=1e-12) and t["p_holm"] == pytest.approx(adj[k], abs=1e-12)


@pytest.mark.parametrize("items,effect,model,design,prompt", [
    (20, 0.75, toy_model(excluded=0.1), "paired", None),
    (40, 0.5, toy_model(excluded=0.1), "paired", None),
    # worker-level exclusions and a prompt part shared by the systems (paired)
    (30, 0.5, toy_model(excluded=0.05, workers=0.15), "paired", 0.5),
    # unpaired: Mann-Whitney, exact (12 + 12 items) and normal (30 + 30)
    (12, 1.0, toy_model(excluded=0.1), "unpaired", None),
    (30, 0.6, toy_model(workers=0.1), "unpaired", None),
    # a 1-7 scale
    (25, 0.9, toy_model(excluded=0.1, low=1, high=7, mean=5.0), "paired", None),
])
def test_predicted_power_matches_the_report_test_in_a_per_study_loop(items, effect, model, design, prompt):
    setting = pw.Setting(model, systems=2, aspect="fluency", design=design, prompt_share=prompt)
    design = pw.Design(items, 3)
    predicted = pw.simulate_power(design, setting, effect, studies=2000, seed=5)
    observed = pw.simulate_power_loop(design, setting, effect, studies=600, seed=6)
    assert 0.2 < predicted < 0.9                     # a design where the check means something
    assert abs(predicted - observed) <= 0.05, (predicted, observed)
    assert abs(pw.analytic_power(design, setting, effect) - predicted) < 0.2


@pytest.mark.parametrize("kind", ["paired", "unpaired"])
def test_zero_effect_rejects_at_alpha(kind):
    setting = pw.Setting(toy_model(), systems=2, aspect="fluency", family="eval_set_aspect", design=kind)
    for design in (pw.Design(20 if kind == "paired" else 15, 3), pw.Design(60, 3)):   # exact and normal paths
        rate = pw.simulate_power(design, setting, 0.0, studies=4000, seed=2)
        assert 0.03 <= rate <= 0.07, (design, rate)


def test_pilot_components_recovered_within_their_intervals():
    """Pilots of known components (one aspect, integer ratings): the stated 95% intervals contain the
    truth in at least 90% of runs. Truth on the rating scale: rounding adds 1/12 to the residual."""
    rng = np.random.default_rng(9)
    sd = (0.6, 0.4, 0.7)
    truth = {"item": sd[0] ** 2, "rater": sd[1] ** 2, "residual": sd[2] ** 2 + 1 / 12}
    cfg = ExperimentConfig(name="t", models=["tiny"])
    runs, hits = 60, {k: 0 for k in truth}
    for _ in range(runs):
        rows = [r for r in study_rows(rng, 30, 4, 2, pool=24, sd=sd) if r["aspect"] == "fluency"]
        m = model_from_pilot(ratings_from_records(rows, "pilot"), cfg, "pilot")
        a = m.aspect("fluency")
        for k, v in truth.items():
            lo, hi = a.intervals[k]
            hits[k] += lo <= v <= hi
    assert all(h / runs >= 0.9 for h in hits.values()), hits


def test_cost_follows_the_platform_rules():
    from decimal import Decimal

    from mturk_eval.planning.cost import design_cost
    from mturk_eval.platforms.mturk.fees import estimate
    from mturk_eval.platforms.prolific.fees import study_cost

    cfg = ExperimentConfig(name="t")
    cfg.hit.items_per_hit = 5
    c = design_cost("mturk", cfg, 50, 10, 3)
    e = estimate(30, 10, cfg.hit.reward)            # 150 responses / 5 per HIT; 10 assignments: +20%
    assert c["total"] == float(e.total) and c["fees"] == float(e.fees) and e.fee_per_submission == Decimal("0.02")
    p = design_cost("prolific", cfg, 50, 10, 3)
    assert p["total"] == float(study_cost(150, 300).major()) and p["places"] == 300
    assert design_cost("links", cfg, 50, 10, 3)["total"] == 0.0


def _pilot_file(tmp_path, rows):
    path = tmp_path / "pilot.csv"
    write_ratings_csv(path, rows)
    return path


def test_plan_cli_writes_the_plan(tmp_path):
    rng = np.random.default_rng(1)
    pilot = _pilot_file(tmp_path, study_rows(rng, 12, 3, 3, pool=8))
    out = tmp_path / "plan"
    res = CliRunner().invoke(main, ["plan", "--pilot", str(pilot), "--items", "20,40", "--raters", "3",
                                    "--effect", "0.9", "--studies", "200", "--design", "paired", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"plan.md", "plan.json", "power_curve.png"}
    plan = json.loads((out / "plan.json").read_text())
    assert [(g["items"], g["raters"]) for g in plan["grid"]] == [(20, 3), (40, 3)]
    assert plan["setting"]["systems"] == 3 and plan["setting"]["comparisons"] == 12
    # the pilot has no responses file, so the report would test it unpaired; --design paired overrides
    assert plan["setting"]["design"] == "paired" and "no responses file" in plan["setting"]["design_reason"]
    assert plan["model"]["source"] == f"pilot `{pilot}`" and plan["model"]["work_time_s"] == 40
    assert set(plan["cheapest"]) == {"mturk", "prolific", "links"}
    reached = [c for c in plan["cheapest"].values() if c]
    assert reached and all(c["power_if_components_at_upper_bounds"] <= c["power"] + 0.05 for c in reached)
    assert len(plan["mdd"]) == 2 and all(m["mdd"] > 0 for m in plan["mdd"])
    assert "| Items | Raters | Power (simulated)" in res.output and "minimum detectable difference" in res.output


@pytest.mark.parametrize("args,message", [
    (["--effect", "0"], "--effect: expected a difference of mean ratings above 0, got 0"),
    (["--effect", "4.5"], "--effect: expected a difference of mean ratings above 0 and below 4 (the 1-5 scale of "),
    (["--effect", "3.5", "--aspect", "fluency"], "--effect: fluency (scale 1-5) has mean rating 4.31, so a difference "
     "of 3.5 fits neither above nor below it; expected at most 3.30"),
    (["--design", "crossed"], "--design: expected one of auto, paired, unpaired, got 'crossed'"),
    (["--prompt-share", "1"], "--prompt-share: expected a share of the item variance from 0 to below 1, got 1"),
    (["--aspect", "humour"], "--aspect: expected one of fluency, engagingness, relevance, persona, got 'humour'"),
    (["--power", "1"], "--power: expected a probability strictly between 0 and 1, got 1"),
    (["--items", ""], "--items: expected at least one number of items per system, got an empty grid"),
    (["--platform", "prolific"], "does not set up prolific (expected a [platform.prolific] section; set up: mturk)"),
])
def test_bad_inputs_are_one_line_with_exit_2(tmp_path, repo_root, args, message):
    out = tmp_path / "plan"
    res = CliRunner().invoke(main, ["plan", "--config", str(repo_root / "experiments" / "paper_en.toml"),
                                    "--out", str(out), *args])
    assert res.exit_code == 2 and message in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_the_library_plan_takes_its_checked_inputs_and_resolves_auto():
    """``make_plan`` is called with what ``PlanInputs`` and ``make_setting`` checked (the verb checks once):
    a bad input is refused when the inputs are made, and --design auto without a pilot is paired."""
    from mturk_eval.errors import UserError
    from mturk_eval.planning.model import default_model
    from mturk_eval.planning.plan import PlanInputs, check_design, make_plan, make_setting

    with pytest.raises(UserError, match="--studies: expected at least 100 simulated studies per design, got 99"):
        PlanInputs(0.5, 0.8, [20], [3], 99)
    with pytest.raises(UserError, match="--design: expected one of auto, paired, unpaired, got 'both'"):
        check_design("both")
    cfg = ExperimentConfig(name="t", models=["tiny"])
    setting = make_setting(cfg, default_model(), effect=0.5, systems=2, design="auto")
    assert setting.design == "paired" and setting.systems == 2
    plan = make_plan(cfg, setting, PlanInputs(0.5, 0.8, [20, 10], [3], 100), platforms=["links"], seed=1)
    assert [(g["items"], g["raters"]) for g in plan.grid] == [(10, 3), (20, 3)]
    assert plan.setting["design"] == "paired" and plan.setting["studies"] == 100


def test_pilot_with_one_rater_on_an_item_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    rows = study_rows(rng, 6, 3, 2, pool=6)
    rows = [r for r in rows if not (r["item_id"] == "persona.p1.q2.prompt_tuning.tiny" and r["worker_id"] != "W0"
                                    and r["assignment_id"].endswith((".2", ".3", ".4", ".5", ".1")))]
    pilot = _pilot_file(tmp_path, rows)
    res = CliRunner().invoke(main, ["plan", "--pilot", str(pilot), "--out", str(tmp_path / "p")])
    assert res.exit_code == 2, res.output
    assert "item 'persona.p1.q2.prompt_tuning.tiny' (fluency) has 1 rater after exclusions; expected at least 2" \
        in res.output
    assert not (tmp_path / "p").exists()


def test_cost_counts_the_attention_checks_publish_adds():
    """publish mixes hit.attention_check_rate of attention checks into the tasks; the plan prices them:
    the same count as the builder makes, the same number of tasks publish would create."""
    from mturk_eval.planning.cost import design_cost
    from mturk_eval.platforms.mturk.fees import estimate
    from mturk_eval.tasks import builder

    cfg = ExperimentConfig(name="t")
    cfg.hit.items_per_hit = 5
    cfg.hit.attention_check_rate = 0.1
    items = [{"item_id": f"x{i}", "persona": ["p"], "eval_set": "persona", "utterance": "u", "response": "r"}
             for i in range(150)]
    checks = builder.make_attention_checks(items, 0.1, 1, "en", "b")
    assert len(checks) == builder.attention_check_count(150, 0.1) == 17
    c = design_cost("mturk", cfg, 50, 10, 3)        # 150 responses + 17 checks = 167 items -> 34 HITs
    assert c["tasks"] == 34 and c["total"] == float(estimate(34, 10, cfg.hit.reward).total)
    assert design_cost("prolific", cfg, 50, 10, 3)["places"] == 340
    cfg.hit.attention_check_rate = 0.0
    assert design_cost("mturk", cfg, 50, 10, 3)["tasks"] == 30

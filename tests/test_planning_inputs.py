"""The study planner's inputs beyond the paper's defaults (issue #14): the aspects and scales a config
names, a config whose data paths do not resolve, what the report would run on a pilot (paired or not) and
the prompt share it shows, and Prolific's own cost calculator (the local emulator) beside the offline
figure, with its failure falling back in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mturk_eval.analysis.ratings import ResponseIndex, ratings_from_records, write_ratings_csv
from mturk_eval.cli import main
from mturk_eval.config import ExperimentConfig, load_config
from mturk_eval.errors import UserError
from mturk_eval.planning import power as pw
from mturk_eval.planning.model import default_model, model_from_pilot
from helpers.analysis import responses_for
from helpers.planning import study_rows
from helpers.prolific import TOKEN, emulator


@pytest.fixture(autouse=True)
def _no_prolific_token(monkeypatch):
    """A developer's PROLIFIC_TOKEN must not make these tests ask the real Prolific (tests that want the
    calculator give the token to the emulator themselves)."""
    monkeypatch.delenv("PROLIFIC_TOKEN", raising=False)


ASPECTS_TOML = """
[experiment]
name = "custom"
runs_dir = "{runs}"
models = ["tiny"]
methods = ["prompt_tuning", "finetune_none"]
[[data.persona_sources]]
format = "convai2"
path = "${{NO_SUCH_DATA_DIR_FOR_PLAN}}/personachat/valid.txt"
[[report.aspects]]
name = "fluency"
[[report.aspects]]
name = "coherence"
scale = [1, 4]
[[report.aspects]]
name = "humour"
scale = [1, 7]
"""


def _config(tmp_path, extra: str = "") -> str:
    p = tmp_path / "custom.toml"
    p.write_text(ASPECTS_TOML.format(runs=tmp_path / "runs") + extra)
    return str(p)


def _plan(args, env=None):
    return CliRunner().invoke(main, ["plan", *args], env=env)


def test_a_config_whose_data_paths_do_not_resolve_plans_and_other_verbs_still_refuse(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_DATA_DIR_FOR_PLAN", raising=False)
    cfg = _config(tmp_path)
    with pytest.raises(UserError, match=r"data.persona_sources\[0\].path: environment variable "
                                        r"\$\{NO_SUCH_DATA_DIR_FOR_PLAN\} is not set"):
        load_config(cfg)                      # what the verbs that read data get
    assert load_config(cfg, data_paths=False).data.persona_sources[0].path.startswith("${NO_SUCH")
    res = CliRunner().invoke(main, ["data", "build", "--config", cfg])
    assert res.exit_code == 2 and "NO_SUCH_DATA_DIR_FOR_PLAN" in res.output
    out = tmp_path / "plan"
    res = _plan(["--config", cfg, "--items", "30", "--raters", "3", "--studies", "100", "--aspect", "coherence",
                 "--effect", "0.4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["setting"]["systems"] == 2 and plan["setting"]["aspect"] == "coherence"


def test_the_configs_aspects_and_scales_are_planned(tmp_path):
    cfg = _config(tmp_path)
    out = tmp_path / "plan"
    res = _plan(["--config", cfg, "--items", "30,60", "--raters", "3", "--studies", "100", "--aspect", "humour",
                 "--effect", "0.8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "plan.json").read_text())
    aspects = {a["aspect"]: a for a in plan["model"]["aspects"]}
    assert {k: (a["low"], a["high"]) for k, a in aspects.items()} == {"fluency": (1, 5), "coherence": (1, 4),
                                                                      "humour": (1, 7)}
    # the paper's figures mapped linearly: the mean at 83% of the way up, the SD times range / 4
    assert aspects["fluency"]["mean"] == pytest.approx(4.31)
    assert aspects["humour"]["mean"] == pytest.approx(1 + (4.3075 - 1) * 6 / 4)
    sd = np.sqrt(aspects["coherence"]["item"] + aspects["coherence"]["rater"] + aspects["coherence"]["residual"])
    assert sd == pytest.approx(1.0175 * 3 / 4)
    assert plan["setting"]["scale"] == [1, 7] and plan["setting"]["comparisons"] == 3
    assert "mapped linearly" in plan["model"]["source"] and "| humour | 1-7 |" in (out / "plan.md").read_text()
    assert 0 < plan["grid"][0]["power"] < plan["grid"][1]["power"]


def test_simulated_ratings_stay_on_each_aspects_scale():
    from mturk_eval.analysis.aspects import Aspect

    model = default_model([Aspect("coherence", 1, 4), Aspect("humour", 0, 10)])
    setting = pw.Setting(model, systems=2, aspect="humour", family="eval_set")
    rng = np.random.default_rng(0)
    for name, (lo, hi) in (("coherence", (1, 4)), ("humour", (0, 10))):
        sums, counts = pw._draw_aspect(rng, 50, pw.Design(20, 1), setting, name, 0.0)
        assert sums.min() >= lo and sums.max() <= hi and (counts == 1).all()
        assert {int(sums.min()), int(sums.max())} == {lo, hi}         # rounding and clipping reach both ends


@pytest.mark.parametrize("args,message", [
    (["--aspect", "coherence", "--effect", "3"],
     "--effect: expected a difference of mean ratings above 0 and below 3 (the 1-4 scale of coherence), got 3"),
    (["--aspect", "coherence", "--effect", "2.9"],
     "--effect: coherence (scale 1-4) has mean rating 3.48, so a difference of 2.9 fits neither above nor below it"),
    (["--aspect", "relevance"], "--aspect: expected one of fluency, coherence, humour, got 'relevance'"),
    (["--design", "both"], "--design: expected one of auto, paired, unpaired, got 'both'"),
    (["--prompt-share", "-0.1"], "--prompt-share: expected a share of the item variance from 0 to below 1, got -0.1"),
    (["--design", "unpaired", "--prompt-share", "0.3"],
     "--prompt-share: the design is unpaired (--design unpaired, or --design auto on a pilot whose systems share"
     " no prompts) and shares no prompts between systems; expected no --prompt-share, got 0.3"),
])
def test_bad_inputs_on_custom_scales_are_one_line(tmp_path, args, message):
    out = tmp_path / "plan"
    res = _plan(["--config", _config(tmp_path), "--out", str(out), *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_a_pilot_without_pairs_is_planned_unpaired_and_a_paired_one_gives_its_prompt_share(tmp_path):
    rng = np.random.default_rng(4)
    rows = study_rows(rng, 30, 3, 2, pool=12)
    pilot = tmp_path / "pilot.csv"
    write_ratings_csv(pilot, rows)
    out = tmp_path / "plan"
    res = _plan(["--pilot", str(pilot), "--items", "30", "--raters", "3", "--effect", "0.6", "--studies", "100",
                 "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "plan.json").read_text())["setting"]
    assert s["design"] == "unpaired" and s["test"].startswith("mann-whitney")
    assert "no responses file to pair prompts" in s["design_reason"]
    # With the responses file the report pairs the prompts: paired, and the pilot's prompt share is used.
    resp = tmp_path / "responses.jsonl"
    resp.write_text("".join(json.dumps(r) + "\n" for r in responses_for(rows)))
    res = _plan(["--pilot", str(pilot), "--responses", str(resp), "--items", "30", "--raters", "3", "--effect",
                 "0.6", "--studies", "100", "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "plan.json").read_text())["setting"]
    assert s["design"] == "paired" and "paired: both systems answered the same 30 prompts" in s["design_reason"]


def test_the_prompt_share_of_a_paired_pilot_is_recovered():
    """Pilots whose systems share half the item variance per prompt (and none): the moment estimate lands
    near the truth on average."""
    cfg = ExperimentConfig(name="t", models=["tiny"], methods=["prompt_tuning", "finetune_none", "finetune_added"])
    rng = np.random.default_rng(11)
    for truth in (0.5, 0.0):
        got = []
        for _ in range(6):
            rows = [r for r in study_rows(rng, 40, 3, 3, pool=30, prompt=truth) if r["aspect"] == "fluency"]
            responses = ResponseIndex("x", {r["item_id"]: r for r in responses_for(rows)})
            m = model_from_pilot(ratings_from_records(rows, "pilot"), cfg, "pilot", responses)
            assert m.design == "paired"
            got.append(m.aspect("fluency").prompt_share)
        assert abs(np.mean(got) - truth) < 0.15, (truth, got)


PROLIFIC = """
[hit]
items_per_hit = 1
[platform.prolific]
reward = "0.50"
estimated_completion_time = 2
api_url = "{api}"
"""


def test_prolific_costs_use_its_calculator_once_per_distinct_places(tmp_path, monkeypatch):
    with emulator() as emu:
        emu.backend.fee_rate = "1/2"          # the account's rate differs from the offline 1/3
        cfg = _config(tmp_path, PROLIFIC.format(api=emu.api))
        out = tmp_path / "plan"
        # 2 systems, one response per task: 10 x 2 and 20 x 1 both need 40 places (one call), 20 x 2 80
        res = _plan(["--config", cfg, "--items", "10,20", "--raters", "1,2", "--studies", "100", "--effect", "1",
                     "--design", "paired", "--platform", "prolific", "--out", str(out)], env={"PROLIFIC_TOKEN": TOKEN})
        assert res.exit_code == 0, res.output
        assert emu.app.calls.get("calculate-study-cost") == 3   # places 20, 40, 80
    plan = json.loads((out / "plan.json").read_text())
    by = {(g["items"], g["raters"]): g["cost"]["prolific"] for g in plan["grid"]}
    c = by[(10, 2)]
    assert c["places"] == 40 and c["offline_total"] == pytest.approx(40 * 0.5 * 4 / 3, abs=0.011)
    assert c["calculator_total"] == pytest.approx(40 * 0.5 * 1.5) and c["total"] == c["calculator_total"]
    assert by[(20, 1)]["calculator_total"] == c["calculator_total"]
    text = res.output + (out / "plan.md").read_text() + (out / "plan.json").read_text()
    assert TOKEN not in text and "Prolific's own calculator" in text and "3 call(s)" in text


@pytest.mark.parametrize("how", ["unreachable", "refused", "malformed token"])
def test_a_failing_prolific_calculator_is_one_line_and_the_offline_figures_stand(tmp_path, how):
    import contextlib
    import socket

    token = TOKEN if how != "malformed token" else "short tok"
    with contextlib.ExitStack() as stack:
        if how == "unreachable":
            with socket.socket() as s:                 # a port nothing listens on
                s.bind(("127.0.0.1", 0))
                api = f"http://127.0.0.1:{s.getsockname()[1]}/api/v1/"
        else:
            emu = stack.enter_context(emulator())
            emu.backend.tokens = {"another-token-" + "b" * 30}   # the API refuses ours: 401
            api = emu.api
        cfg = _config(tmp_path, PROLIFIC.format(api=api))
        out = tmp_path / "plan"
        res = _plan(["--config", cfg, "--items", "10", "--raters", "1,2", "--studies", "100", "--effect", "1",
                     "--design", "paired", "--platform", "prolific", "--out", str(out)], env={"PROLIFIC_TOKEN": token})
        if how != "unreachable":
            assert emu.app.calls.get("calculate-study-cost") is None
    assert res.exit_code == 0, res.output
    failed = [line for line in res.output.splitlines() if "cost calculator failed" in line]
    assert len(failed) == 1 and "the plan uses the offline Prolific figures" in failed[0], res.output
    plan = json.loads((out / "plan.json").read_text())
    assert all(g["cost"]["prolific"]["calculator_total"] is None for g in plan["grid"])
    assert plan["grid"][0]["cost"]["prolific"]["total"] == pytest.approx(20 * 0.5 * 4 / 3, abs=0.011)
    assert any("could not be used" in n for n in plan["notes"])
    assert token not in res.output and token not in (out / "plan.md").read_text()


def test_a_pilot_on_the_configs_scales_plans_on_them(tmp_path):
    """A pilot rated on the config's aspects (humour 1-7 among them), read with the config: the model keeps
    each aspect's scale, and an effect beyond humour's scale is refused."""
    rng = np.random.default_rng(6)
    rows = []
    for r in study_rows(rng, 20, 3, 2, pool=10):
        if r["aspect"] == "fluency":
            rows.append(r)
            rows.append({**r, "aspect": "humour", "score": int(min(7, r["score"] + rng.integers(0, 3)))})
            rows.append({**r, "aspect": "coherence", "score": int(min(4, r["score"]))})
    pilot = tmp_path / "pilot.csv"
    write_ratings_csv(pilot, rows)
    out = tmp_path / "plan"
    args = ["--config", _config(tmp_path), "--pilot", str(pilot), "--items", "30", "--raters", "3", "--studies", "100",
            "--design", "paired", "--aspect", "humour", "--out", str(out)]
    res = _plan([*args, "--effect", "0.5"])
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "plan.json").read_text())
    assert {a["aspect"]: (a["low"], a["high"]) for a in plan["model"]["aspects"]} == {
        "fluency": (1, 5), "coherence": (1, 4), "humour": (1, 7)}
    assert plan["model"]["source"] == f"pilot `{pilot}`" and plan["setting"]["scale"] == [1, 7]
    res = _plan([*args, "--effect", "6"])
    assert res.exit_code == 2 and "(the 1-7 scale of humour), got 6" in res.output


def test_a_pilots_excluded_workers_are_planned_as_worker_level_exclusions():
    """A pilot rater who failed their attention checks is excluded whole by the report: the model takes
    them as the worker-level share (1 of 8 raters) and the other ratings' share stays 0."""
    rng = np.random.default_rng(8)
    rows = study_rows(rng, 12, 3, 2, pool=8)
    for w in range(8):       # one attention-check row per rater's first assignment; W3 fails it
        first = next(r for r in rows if r["worker_id"] == f"W{w}")
        rows.append({**first, "item_id": f"check.{w}", "attention_check": 1, "attention_passed": int(w != 3),
                     "aspect": "fluency", "score": 5})
    for r in rows:
        r.setdefault("attention_check", 0)
    cfg = ExperimentConfig(name="t", models=["tiny"])
    m = model_from_pilot(ratings_from_records(rows, "pilot"), cfg, "pilot")
    assert m.excluded_worker_share == pytest.approx(1 / 8) and m.excluded_share == pytest.approx(0.0)
    setting = pw.Setting(m, systems=2, aspect="fluency", design="unpaired")
    assert pw._excluded_workers(setting) == pytest.approx(1 / 8)


def test_the_calculator_connects_as_the_workflow_does_with_short_retries(tmp_path):
    """The calculator's client is the workflow's (:func:`api_client`: /api/v1/ added, PROLIFIC_TOKEN from the
    environment, checked, never shown) with at most 3 attempts and short waits, so a plan does not hang."""
    from mturk_eval.planning.cost import ProlificCalculator
    from mturk_eval.platforms.prolific.workflow import api_client, settings_of

    p = tmp_path / "c.toml"
    p.write_text(f'[experiment]\nname = "c"\nruns_dir = "{tmp_path}"\n'
                 + PROLIFIC.format(api="http://127.0.0.1:9/prolific"))
    cfg = load_config(p)
    client = ProlificCalculator(cfg, env={"PROLIFIC_TOKEN": TOKEN})._connect()
    assert client.api_url == "http://127.0.0.1:9/prolific/api/v1/"
    assert (client.attempts, client.base, client.cap, client.timeout) == (3, 0.5, 2.0, 15.0)
    assert TOKEN not in repr(client)
    full = api_client(settings_of(cfg), "http://127.0.0.1:9/prolific", env={"PROLIFIC_TOKEN": TOKEN})
    assert (full.api_url, full.attempts, full.cap, full.timeout) == (client.api_url, 8, 30.0, 30.0)
    with pytest.raises(UserError, match="PROLIFIC_TOKEN is not set") as exc:
        ProlificCalculator(cfg, env={})._connect()
    assert TOKEN not in exc.value.message

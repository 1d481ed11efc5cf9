"""`mturk-eval generate` end to end with the tiny-random model and the shipped sample data."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from helpers.generators import FakeData, tiny_config_text

from mturk_eval.cli import main
from mturk_eval.config import parse_config
from mturk_eval.io import read_jsonl

REQUIRED = {"item_id", "persona", "eval_set", "method", "model", "utterance", "response"}


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(tiny_config_text(runs_dir=str(tmp_path / "runs")))
    return p


def test_generate_end_to_end_and_rerun(config, tmp_path):
    r = CliRunner().invoke(main, ["generate", "--config", str(config), "--quiet"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "tiny"
    rows = read_jsonl(run / "responses.jsonl")
    personas = json.loads((run / "data" / "personas.json").read_text())
    n_general = len(read_jsonl(run / "data" / "general_eval.jsonl"))
    n_persona = sum(len(read_jsonl(run / "data" / p["persona_id"] / "persona_eval.jsonl")) for p in personas)
    assert len(rows) == 3 * (n_persona + n_general * len(personas))
    ids = [row["item_id"] for row in rows]
    assert len(set(ids)) == len(ids)
    for row in rows:
        assert REQUIRED <= row.keys()
        assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", row["item_id"])
        assert row["item_id"] == ".".join([row["eval_set"], row["persona_id"], row["pair_id"], row["method"], "tiny-random"])
        assert row["generation"] == {"strategy": "greedy", "max_new_tokens": 6, "min_new_tokens": 1, "dtype": "float32"}
        assert row["response"].strip()
        assert row["persona"] == next(p["sentences"] for p in personas if p["persona_id"] == row["persona_id"])
    assert {row["method"] for row in rows} == {"prompt_tuning", "finetune_none", "finetune_added"}
    pt = run / "models" / "tiny-random" / "p1" / "prompt_tuning"
    assert (pt / "adapter_config.json").is_file() and (pt / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "models" / "tiny-random" / "p1" / "finetune_added" / "model.safetensors").is_file()
    assert (run / "loss_curves.png").is_file()
    info = json.loads((pt / "training.json").read_text())
    assert info["epochs"] == 2 and len(info["epoch_losses"]) == 2

    # a rerun reuses every checkpoint and gives the same file
    before = (run / "responses.jsonl").read_bytes()
    r = CliRunner().invoke(main, ["generate", "--config", str(config), "--quiet"])
    assert r.exit_code == 0 and r.output.count("trained already") == 6, r.output
    assert (run / "responses.jsonl").read_bytes() == before

    # --force retrains (same seed: same responses); --method narrows
    r = CliRunner().invoke(main, ["generate", "--config", str(config), "--quiet", "--force", "--method", "prompt_tuning"])
    assert r.exit_code == 0 and "trained already" not in r.output
    rows2 = read_jsonl(run / "responses.jsonl")
    assert {row["method"] for row in rows2} == {"prompt_tuning"}
    assert [x for x in rows if x["method"] == "prompt_tuning"] == rows2

    r = CliRunner().invoke(main, ["distinct", "--config", str(config)])
    assert r.exit_code == 0 and "Prompt-tuning" in r.output


def test_changed_training_settings_retrain(tmp_path):
    from mturk_eval.generators.run import run_generate

    text = tiny_config_text(runs_dir=str(tmp_path / "runs"))
    cfg = parse_config(text, "t.toml")
    res = run_generate(cfg, data=FakeData(), methods=["prompt_tuning"], progress=False, echo=lambda s: None)
    assert len(res) == 2 and not any(r.reused for r in res)
    res = run_generate(cfg, data=FakeData(), methods=["prompt_tuning"], progress=False, echo=lambda s: None)
    assert all(r.reused for r in res)
    cfg2 = parse_config(text.replace("max_epochs = 2", "max_epochs = 1"), "t.toml")
    res = run_generate(cfg2, data=FakeData(), methods=["prompt_tuning"], progress=False, echo=lambda s: None)
    assert not any(r.reused for r in res) and all(r.log["epochs"] == 1 for r in res)
    rows = read_jsonl(tmp_path / "runs" / "tiny" / "responses.jsonl")
    assert len(rows) == 2 * (2 + 2)


def test_generate_help_documents_options():
    r = CliRunner().invoke(main, ["generate", "--help"])
    assert r.exit_code == 0
    for opt in ("--config", "--force", "--model", "--method", "--device", "--quiet", "--max-epochs", "--dtype", "--estimate",
                "accelerate launch"):
        assert opt in r.output


@pytest.mark.parametrize(
    "edit,message",
    [
        (("max_epochs = 2", "max_epochs = 0"), "training.max_epochs: expected an integer >= 1"),
        (("max_new_tokens = 6", "max_new_tokens = 'x'"), "generation.max_new_tokens: expected an integer"),
        (("max_new_tokens = 6", "max_new_tokens = 6\nmin_new_tokens = 7"), "generation.min_new_tokens: expected 0 to max_new_tokens (6), got 7"),
        (("max_new_tokens = 6", "max_new_tokens = 6\nstrategy = 'sample'\ntop_p = 0.0"), "generation: sampling needs temperature > 0"),
        (('models = ["tiny-random"]', 'models = ["/no/such/model"]'), "model /no/such/model: no such directory"),
    ],
)
def test_generate_bad_input(tmp_path, edit, message):
    p = tmp_path / "bad.toml"
    p.write_text(tiny_config_text(runs_dir=str(tmp_path / "runs")).replace(*edit))
    r = CliRunner().invoke(main, ["generate", "--config", str(p), "--quiet"])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "runs" / "tiny" / "responses.jsonl").exists()


def test_bad_pair_id_is_refused_before_writing(tmp_path):
    from mturk_eval.errors import UserError
    from mturk_eval.generators.run import run_generate

    class BadData(FakeData):
        def general_eval(self):
            out = super().general_eval()
            out[0].pair_id = "g 1/bad"
            return out

    cfg = parse_config(tiny_config_text(runs_dir=str(tmp_path / "runs")), "t.toml")
    with pytest.raises(UserError, match="item id"):
        run_generate(cfg, data=BadData(), methods=["finetune_none"], progress=False, echo=lambda s: None)
    assert not (tmp_path / "runs" / "tiny" / "responses.jsonl").exists()


def _demo_like_config(tmp_path):
    """The demo's settings (200 virtual tokens, prompt lr 1e-2, seed 7) with tiny-random: its soft prompts
    make the model emit spaces only, which decoded to 14 empty responses before the first-token rule."""
    p = tmp_path / "demo.toml"
    p.write_text(tiny_config_text(runs_dir=str(tmp_path / "runs")).replace("seed = 3", "seed = 7")
                 .replace("num_virtual_tokens = 8", "num_virtual_tokens = 200\nprompt_lr = 1e-2\nmax_length = 64")
                 .replace("max_new_tokens = 6", "max_new_tokens = 24"))
    return p


def test_no_empty_responses_and_a_counted_warning_when_there_are(tmp_path, monkeypatch):
    config = _demo_like_config(tmp_path)
    r = CliRunner().invoke(main, ["generate", "--config", str(config), "--quiet", "--method", "prompt_tuning"])
    assert r.exit_code == 0, r.output
    rows = read_jsonl(tmp_path / "runs" / "tiny" / "responses.jsonl")
    assert len(rows) == 14 and all(row["response"].strip() for row in rows)
    assert "responses are empty" not in r.output
    # training stopped at max_epochs = 2 without converging: said on the summary line, and on reuse
    assert r.output.count("2 epochs, stopped at max_epochs without converging, loss ") == 2, r.output
    r = CliRunner().invoke(main, ["generate", "--config", str(config), "--quiet", "--method", "prompt_tuning"])
    assert r.output.count("trained already (2 epochs, stopped at max_epochs without converging)") == 2, r.output

    # without the rule (no blank tokens known) the same model gives whitespace-only responses: counted
    from mturk_eval.generators.formatting import PairFormat

    scan = PairFormat._scan_vocab
    monkeypatch.setattr(PairFormat, "_scan_vocab", lambda self: (scan(self)[0], set()))
    r = CliRunner().invoke(main, ["generate", "--config", str(config), "--quiet", "--method", "prompt_tuning"])
    assert r.exit_code == 0, r.output
    assert ("warning: 14 of 14 responses are empty (prompt_tuning p1 tiny-random: 7 of 7; "
            "prompt_tuning p2 tiny-random: 7 of 7)") in r.output, r.output


def test_empty_warning_counts_by_system():
    from pathlib import Path

    from mturk_eval.generators.run import SystemResult, empty_warning

    def res(method, pid, texts):
        return SystemResult("tiny-random", pid, method, Path("."), False, {},
                            [{"response": t, "model": "tiny-random"} for t in texts])

    results = [res("prompt_tuning", "p1", ["", " ", "a"]), res("finetune_none", "p1", ["b", "c"])]
    assert empty_warning(results).startswith("warning: 2 of 5 responses are empty (prompt_tuning p1 tiny-random: 2 of 3)")
    assert "min_new_tokens = 0" in empty_warning(results, min_new_tokens=0)
    assert empty_warning(results[1:]) is None


def test_loss_plots_have_whole_epoch_ticks():
    from pathlib import Path

    from mturk_eval.generators.run import SystemResult, summary_figure

    log = {"epoch_losses": [3.0, 2.5]}  # two epochs: matplotlib alone puts ticks at 1.2, 1.4, ...
    fig = summary_figure([SystemResult("m", "p1", meth, Path("."), False, log, []) for meth in ("prompt_tuning", "finetune_none")])
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks

"""Experiment config: typed loading, errors naming the key, path variables, shipped configs."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mturk_eval.cli import main
from mturk_eval.config import ExperimentConfig, load_config, parse_config
from mturk_eval.errors import UserError

MINIMAL = """
[experiment]
name = "t"

[[data.persona_sources]]
format = "jsonl"
path = "p.jsonl"
"""


def test_minimal_config_has_paper_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(MINIMAL)
    cfg = load_config(f)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.training.num_virtual_tokens == 200
    assert cfg.training.prompt_lr == 1e-3 and cfg.training.finetune_lr == 5e-5
    assert cfg.hit.assignments_per_hit == 5
    assert cfg.data.num_personas == 3 and cfg.data.eval_fraction == 0.1
    assert cfg.data.general_topic == "Relationship" and cfg.data.general_max_chars == 50
    # relative paths resolve against the config file's directory
    assert cfg.data.persona_sources[0].path == str(tmp_path / "p.jsonl")
    assert cfg.methods == ["prompt_tuning", "finetune_none", "finetune_added"]


@pytest.mark.parametrize(
    "extra, message",
    [
        ("[data]\nnum_persona = 3\n", "unknown key 'data.num_persona' (did you mean 'num_personas'?"),
        ("[training]\nbatch_size = 'eight'\n", "training.batch_size: expected an integer"),
        ("[data]\neval_fraction = 1.5\n", "data.eval_fraction: expected a number between 0 and 1"),
        ("[hit]\nreward = 0.05\n", "hit.reward: expected a string"),
        ("[hit]\nreward = '$0.05'\n", "hit.reward: expected dollars"),
        ("[bogus]\nx = 1\n", "unknown key 'bogus'"),
        ("[experiment.more]\nx = 1\n", "unknown key 'experiment.more'"),
        ("[[data.persona_sources]]\nformat = 'parquet'\npath = 'x'\n", "data.persona_sources[1].format"),
        ("[generation]\nstrategy = 'nucleus'\n", "generation.strategy: expected 'greedy' or 'sample' or 'beam'"),
        ("[[hit.qualifications]]\ncomparator = 'In'\n", "missing required key 'hit.qualifications[0].type'"),
    ],
)
def test_bad_keys_and_types_name_the_key(extra, message):
    with pytest.raises(UserError) as e:
        parse_config(MINIMAL + extra, "c.toml", Path("/tmp"))
    assert message in str(e.value)
    assert str(e.value).startswith("c.toml")
    assert "\n" not in str(e.value)


def test_misspelled_section_suggests_it_and_lists_sections():
    with pytest.raises(UserError) as e:
        parse_config('[experment]\nname = "t"\n', "c.toml", Path("/tmp"))
    msg = str(e.value)
    assert "unknown key 'experment' (did you mean 'experiment'?" in msg
    assert "sections: experiment, data, generation, hit, prolific, report, site, training" in msg


def test_methods_are_checked():
    text = MINIMAL.replace('name = "t"', 'name = "t"\nmethods = ["prompt_tuning", "lora"]')
    with pytest.raises(UserError, match=r"methods\[1\]"):
        parse_config(text, "c.toml", Path("/tmp"))


def test_not_toml_is_a_one_line_error():
    with pytest.raises(UserError, match="c.toml: not valid TOML"):
        parse_config("[experiment\nname=", "c.toml")


def test_environment_variables_and_data_default(tmp_path, monkeypatch):
    text = MINIMAL.replace('path = "p.jsonl"', 'path = "${MTURK_EVAL_DATA}/x/p.jsonl"')
    monkeypatch.setenv("MTURK_EVAL_DATA", str(tmp_path / "d"))
    cfg = parse_config(text, "c.toml", tmp_path)
    assert cfg.data.persona_sources[0].path == str(tmp_path / "d" / "x" / "p.jsonl")
    # Unset: falls back to the nearest ../shared/data
    monkeypatch.delenv("MTURK_EVAL_DATA")
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    proj = tmp_path / "proj" / "experiments"
    proj.mkdir(parents=True)
    monkeypatch.chdir(proj)
    cfg = parse_config(text, "c.toml", proj)
    assert cfg.data.persona_sources[0].path == str(shared / "x" / "p.jsonl")
    other = MINIMAL.replace('path = "p.jsonl"', 'path = "${NOPE_NOT_SET}/p.jsonl"')
    with pytest.raises(UserError, match=r"data.persona_sources\[0\].path: environment variable \$\{NOPE_NOT_SET\} is not set"):
        parse_config(other, "c.toml", proj)


@pytest.mark.parametrize("name", ["paper_en", "paper_ja", "demo"])
def test_shipped_configs_load(repo_root, name, monkeypatch, tmp_path):
    monkeypatch.setenv("MTURK_EVAL_DATA", str(tmp_path))  # paper_* use ${MTURK_EVAL_DATA}
    cfg = load_config(repo_root / "experiments" / f"{name}.toml")
    assert cfg.name == name
    assert cfg.hit.assignments_per_hit == 5
    if name == "paper_ja":
        assert cfg.language == "ja" and cfg.data.general_ratio == 0.1
    if name == "paper_en":
        assert cfg.data.general_ratio == 1.0 and cfg.data.num_personas == 3
        assert cfg.report.human_reference["fluency"] == "4.31 (1.07)"


def test_cli_bad_config_exit_2_one_line(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(MINIMAL + "[data]\nnum_persona = 3\n")
    res = CliRunner().invoke(main, ["data", "build", "--config", str(f)])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert res.output.strip().count("\n") == 0
    assert "unknown key 'data.num_persona'" in res.output


def test_cli_missing_config_file(tmp_path):
    res = CliRunner().invoke(main, ["data", "build", "--config", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2
    assert "nope.toml: file not found" in res.output


def test_every_verb_has_help():
    runner = CliRunner()
    res = runner.invoke(main, ["--help"])
    assert res.exit_code == 0
    for verb in ["data", "generate", "preview", "publish", "status", "collect", "review", "expire", "report", "sandbox"]:
        assert verb in res.output
    res = runner.invoke(main, ["data", "build", "--help"])
    assert res.exit_code == 0 and "--config" in res.output and "--force" in res.output

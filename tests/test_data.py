"""Dataset builder: loaders, persona grouping, split and mix rules, determinism, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mturk_eval.cli import main
from mturk_eval.config import DataSource, load_config
from mturk_eval.data import load_built
from mturk_eval.data.build import build_datasets
from mturk_eval.data.loaders import (
    Episode,
    load_convai2,
    load_dailydialog,
    load_persona_jsonl,
    load_synthetic,
    load_xpersona,
)
from mturk_eval.data.personas import group_personas, normalise
from mturk_eval.errors import UserError

# ---------------------------------------------------------------------------------------------- loaders


def test_convai2_episodes_restart_at_line_1(tmp_path):
    f = tmp_path / "valid_self_original_no_cands.txt"
    f.write_text(
        "1 your persona: i like cats.\n2 your persona: i am tall.\n3 hi there\thello , i like cats .\n"
        "4 nice\tthanks !\n1 your persona: i surf.\n2 partner's persona: ignored.\n3 yo\tsup\n"
    )
    eps = load_convai2(f)
    assert [e.persona for e in eps] == [["i like cats.", "i am tall."], ["i surf."]]
    assert eps[0].pairs == [("hi there", "hello , i like cats ."), ("nice", "thanks !")]
    assert eps[1].pairs == [("yo", "sup")]


def test_xpersona_drops_silence_first_turns(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(json.dumps([{"persona": ["i am a nurse."], "dialogue": [["__SILENCE__", "hi !"], ["hello", "how are you ?"]]}]))
    (ep,) = load_xpersona(f)
    assert ep.pairs == [("hello", "how are you ?")]


def test_synthetic_gives_both_speakers_their_persona(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text(
        'user 1 personas,user 2 personas,Best Generated Conversation\n'
        '"I bake.\nI knit.","I fly.","User 1: Hi!\nUser 2: Hello!\n*User 1:* I bake cookies.\nUser 2: Nice."\n'
    )
    eps = load_synthetic(f)
    by_persona = {tuple(e.persona): e.pairs for e in eps}
    assert by_persona[("I fly.",)] == [("Hi!", "Hello!"), ("I bake cookies.", "Nice.")]
    assert by_persona[("I bake.", "I knit.")] == [("Hello!", "I bake cookies.")]


def test_dailydialog_round_trips_and_topics(tmp_path):
    d = tmp_path / "dialogues_text.txt"
    d.write_text("Hi ! __eou__ Hello . __eou__ How are you ? __eou__ Fine . __eou__ Bye . __eou__\nA __eou__ B __eou__\n")
    (tmp_path / "dialogues_topic.txt").write_text("5\n1\n")
    pairs = load_dailydialog(DataSource("dailydialog", str(d)))  # topic file found beside it
    assert [(p.utterance, p.response, p.topic) for p in pairs] == [
        ("Hi !", "Hello .", 5), ("How are you ?", "Fine .", 5), ("A", "B", 1)
    ]


# ---------------------------------------------------------------------------------------------- grouping


def _ep(sentences, n_pairs=1, tag="x"):
    return Episode(list(sentences), [(f"u{i}", f"r{i}") for i in range(n_pairs)], tag)


def test_grouping_merges_subsets_and_contraction_variants():
    full = ["i'm a nurse.", "i like dogs.", "i surf.", "i bake.", "i am tall."]
    eps = [_ep(full[:4], 3), _ep(full[1:], 2), _ep(["i am a nurse .", *full[1:4]], 1), _ep(["i fly.", "i sing.", "i ski.", "i row."], 5)]
    groups = group_personas(eps, min_shared=3)
    assert sorted(len(g.episodes) for g in groups) == [1, 3]
    assert normalise("i'm a nurse.") == normalise("i am a nurse .")


def test_grouping_never_chains_unrelated_personas():
    a = ["a1", "a2", "a3", "a4", "a5"]
    b = ["a1", "a2", "c1", "c2", "c3"]  # shares 2 with a and 3 with c
    c = ["c1", "c2", "c3", "c4", "c5"]
    eps = [_ep(a, 10), _ep(b, 5), _ep(c, 1)]
    groups = group_personas(eps, min_shared=2)
    # b joins a (founded first, most pairs); c shares nothing with a's anchor and must found its own.
    members = [sorted(tuple(e.persona) for e in g.episodes) for g in groups]
    assert members == [sorted([tuple(a), tuple(b)]), [tuple(c)]]


def test_grouping_is_independent_of_input_order():
    eps = [_ep(["s1", "s2", "s3", "s4"], 2), _ep(["s1", "s2", "s3", "s5"], 4), _ep(["t1", "t2", "t3"], 1)]
    g1 = group_personas(eps, 3)
    g2 = group_personas(list(reversed(eps)), 3)
    assert [sorted(g.anchor) for g in g1] == [sorted(g.anchor) for g in g2]
    assert [g.num_pairs for g in g1] == [g.num_pairs for g in g2]


# ---------------------------------------------------------------------------------------------- building


def _write_cfg(tmp_path, body: str) -> Path:
    f = tmp_path / "exp.toml"
    f.write_text(body)
    return f


def _tiny_sources(tmp_path, n_personas=3, pairs_each=20, general=60):
    rows = []
    for p in range(n_personas):
        persona = [f"persona {p} fact {k}." for k in range(5)]
        for i in range(pairs_each + p):  # persona p has pairs_each + p pairs
            rows.append({"persona": persona, "utterance": f"q{p}-{i}?", "response": f"a{p}-{i}.", "dialogue_id": f"d{p}-{i // 5}"})
    (tmp_path / "personas.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    g = [{"utterance": f"g{i}?", "response": f"gr{i}.", "topic": "Relationship"} for i in range(general)]
    g.append({"utterance": "x" * 60, "response": "too long", "topic": "Relationship"})
    g.append({"utterance": "off topic", "response": "ok", "topic": "Work"})
    (tmp_path / "general.jsonl").write_text("".join(json.dumps(r) + "\n" for r in g))


TINY = """
[experiment]
name = "tiny"
seed = 3
runs_dir = "runs"
[data]
num_personas = {n}
general_ratio = {ratio}
general_eval_size = 10
[[data.persona_sources]]
format = "jsonl"
path = "personas.jsonl"
[[data.general_sources]]
format = "jsonl"
path = "general.jsonl"
"""


def test_build_split_and_mix_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny_sources(tmp_path)
    cfg = load_config(_write_cfg(tmp_path, TINY.format(n=2, ratio=0.5)))
    manifest = build_datasets(cfg)
    built = load_built(cfg)
    # The two personas with the most pairs, ranked: persona 2 (22 pairs), persona 1 (21 pairs)
    assert [p.num_pairs for p in built.personas] == [22, 21]
    assert built.personas[0].sentences[0] == "persona 2 fact 0."
    general_eval = {(p.utterance, p.response) for p in built.general_eval()}
    assert len(general_eval) == 10
    for p in built.personas:
        train, ev = built.train(p.persona_id), built.persona_eval(p.persona_id)
        persona_train = [x for x in train if x.kind == "persona"]
        general_train = [x for x in train if x.kind == "general"]
        assert len(ev) == round(p.num_pairs * 0.1)
        assert len(persona_train) + len(ev) == p.num_pairs
        assert not {x.pair_id for x in ev} & {x.pair_id for x in persona_train}
        assert len(general_train) == round(len(persona_train) * 0.5)
        # the general eval set is disjoint from every training mix, and only filtered pairs are used
        assert not general_eval & {(x.utterance, x.response) for x in general_train}
        for x in general_train:
            assert len(x.utterance) < 50 and len(x.response) < 50 and x.utterance != "off topic"
    assert manifest["counts"]["general_filtered"] == 60


def test_rebuild_is_byte_identical_and_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny_sources(tmp_path)
    cfg = load_config(_write_cfg(tmp_path, TINY.format(n=3, ratio=1.0)))
    build_datasets(cfg)
    first = {p.relative_to(cfg.data_dir): p.read_bytes() for p in cfg.data_dir.rglob("*") if p.is_file()}
    assert build_datasets(cfg)["reused"] is True
    build_datasets(cfg, force=True)
    second = {p.relative_to(cfg.data_dir): p.read_bytes() for p in cfg.data_dir.rglob("*") if p.is_file()}
    assert first == second
    # a different seed gives a different split
    cfg2 = load_config(_write_cfg(tmp_path, TINY.format(n=3, ratio=1.0).replace("seed = 3", "seed = 4")))
    build_datasets(cfg2)
    assert (cfg2.data_dir / "p1" / "persona_eval.jsonl").read_bytes() != first[Path("p1/persona_eval.jsonl")]


@pytest.mark.shared_data
def test_paper_en_on_shared_data(repo_root, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MTURK_EVAL_DATA", str(shared_data))
    res = CliRunner().invoke(main, ["data", "build", "--config", str(repo_root / "experiments" / "paper_en.toml")])
    assert res.exit_code == 0, res.output
    assert "p1" in res.output and "139, 126, 124 pairs" in res.output
    manifest = json.loads((tmp_path / "runs" / "paper_en" / "data" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["episodes"] == 2000  # 1,000 ConvAI2 validation episodes + 1,000 Xpersona dialogues
    assert [p["pairs"] for p in counts["personas"]] == [139, 126, 124]
    for p in counts["personas"]:
        assert p["persona_eval"] == round(p["pairs"] * 0.1)
        assert p["train_general"] == p["train_persona"]  # English 1:1 mix
    assert counts["general_eval"] == 20
    # every source is recorded with its hash
    assert all(len(s["path_sha256"]) == 64 for s in manifest["sources"])


@pytest.mark.shared_data
def test_convai2_validation_groups_into_its_100_personas(shared_data):
    eps = load_convai2(shared_data / "personachat" / "convai2_valid_self_original_no_cands.txt")
    assert len(eps) == 1000 and sum(len(e.pairs) for e in eps) == 7801
    for k in (2, 3, 4):
        assert len(group_personas(eps, k)) == 100  # Persona-Chat's validation split has 100 personas


@pytest.mark.shared_data
def test_other_shared_sources_load(shared_data):
    x = load_xpersona(shared_data / "personachat" / "xpersona_En_persona_valid.json")
    assert len(x) == 1000 and sum(len(e.pairs) for e in x) == 6316  # 7,316 turns minus 1,000 __SILENCE__
    warnings: list[str] = []
    s = load_synthetic(shared_data / "synthetic-persona-chat" / "Synthetic-Persona-Chat_valid.csv", warnings)
    assert len(s) == 2 * 999 and len(warnings) == 1 and "row 485" in warnings[0]
    dd = load_dailydialog(DataSource("dailydialog", str(shared_data / "dailydialog/original/validation/dialogues_validation.txt")))
    assert {p.topic for p in dd} <= set(range(1, 11))


# ---------------------------------------------------------------------------------------------- bad input

BAD_CASES = {
    "missing_file": (None, "personas.jsonl: file not found"),
    "bad_encoding": (b"\xff\xfe{\"persona\": 1}\n", "personas.jsonl:1: not valid utf-8"),
    "malformed_json": (b'{"persona": ["a."], "utterance": "u", "response": "r"}\n{"persona": \n', "personas.jsonl:2: not valid JSON"),
    "missing_field": (b'{"persona": ["a."], "utterance": "u"}\n', "personas.jsonl:1: missing field 'response'"),
    "empty_persona": (b'{"persona": [], "utterance": "u", "response": "r"}\n', "personas.jsonl:1: field 'persona' is empty"),
    "too_many_personas": (b'{"persona": ["a."], "utterance": "u", "response": "r"}\n', "data.num_personas: asks for 3 personas but the data holds only 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    _tiny_sources(tmp_path)
    cfg_path = _write_cfg(tmp_path, TINY.format(n=3, ratio=1.0))
    # a good build first: a failed rebuild must leave it untouched
    assert CliRunner().invoke(main, ["data", "build", "--config", str(cfg_path)]).exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    content, message = BAD_CASES[case]
    if content is None:
        (tmp_path / "personas.jsonl").unlink()
    else:
        (tmp_path / "personas.jsonl").write_bytes(content)
    res = CliRunner().invoke(main, ["data", "build", "--config", str(cfg_path)])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output and res.output.strip().count("\n") == 0
    after = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in (tmp_path / "runs").rglob("*.tmp*")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 your persona: a.\n2 hi there no tab\n", ":2: expected '<partner utterance>TAB<responder utterance>'"),
        ("1 your persona: a.\n3 hi\tho\n", ":2: line number 3 does not continue the episode"),
        ("1 hi\tho\n", ":1: episode has no 'your persona:' lines (empty persona)"),
        ("one your persona: a.\n", ":1: expected '<number> <text>'"),
        ("", "no episodes found"),
    ],
)
def test_convai2_malformed_lines(tmp_path, text, message):
    f = tmp_path / "c.txt"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        load_convai2(f)
    assert message in str(e.value) and str(f) in str(e.value)


def test_dailydialog_topic_file_misaligned(tmp_path):
    d = tmp_path / "dialogues_text.txt"
    d.write_text("a __eou__ b __eou__\nc __eou__ d __eou__\n")
    (tmp_path / "dialogues_topic.txt").write_text("5\n")
    with pytest.raises(UserError, match="has 1 topic lines but"):
        load_dailydialog(DataSource("dailydialog", str(d)))


def test_general_ratio_larger_than_pool(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny_sources(tmp_path, general=15)
    cfg = load_config(_write_cfg(tmp_path, TINY.format(n=1, ratio=1.0)))
    with pytest.raises(UserError, match="data.general_ratio: persona p1 needs 20 general pairs"):
        build_datasets(cfg)


def test_missing_japanese_data_says_what_to_do(repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MTURK_EVAL_DATA", str(tmp_path))
    res = CliRunner().invoke(main, ["data", "build", "--config", str(repo_root / "experiments" / "paper_ja.toml")])
    assert res.exit_code == 2
    assert "jpersonachat.jsonl: file not found" in res.output and "generic JSONL" in res.output


def test_demo_config_builds_from_shipped_sample(repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["data", "build", "--config", str(repo_root / "experiments" / "demo.toml")])
    assert res.exit_code == 0, res.output
    built = load_built(load_config(repo_root / "experiments" / "demo.toml"))
    assert len(built.personas) == 2 and all(p.num_pairs == 32 for p in built.personas)

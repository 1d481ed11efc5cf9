"""distinct-N against hand-computed values, Table 1/6 rows and the `distinct` verb."""
from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from mturk_eval.analysis.distinct import distinct_n, distinct_rows, to_csv, to_markdown
from mturk_eval.cli import main
from mturk_eval.errors import UserError


def test_distinct_pools_ngrams_over_all_responses():
    r = ["a b a", "b c"]
    # unigrams a b a b c: 3 distinct of 5; per-response averaging would give (2/3 + 1) / 2 = 0.833
    assert distinct_n(r, 1) == pytest.approx(3 / 5)
    # bigrams (a b) (b a) (b c): n-grams never cross responses, so (a b) from "a" + "b c" is not counted
    assert distinct_n(r, 2) == pytest.approx(3 / 3)
    assert distinct_n(["x y x y"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["hello"], 2) is None and distinct_n([], 1) is None  # undefined, not 0


def test_distinct_is_case_and_punctuation_literal():
    assert distinct_n(["I i i ."], 1) == pytest.approx(3 / 4)


def test_char_ngrams_ignore_whitespace():
    assert distinct_n(["ねこ ねこ"], 1, "char") == pytest.approx(2 / 4)
    assert distinct_n(["ねこ ねこ"], 2, "char") == pytest.approx(2 / 3)  # ねこ こね ねこ


@pytest.mark.skipif(importlib.util.find_spec("fugashi") is None, reason="ja extra (fugashi) not installed")
def test_mecab_words():
    # 猫 / が / 好き / 。 twice: 4 distinct of 8 words; bigrams 4 distinct of 7
    text = ["猫が好き。猫が好き。"]
    assert distinct_n(text, 1, "mecab") == pytest.approx(4 / 8)
    assert distinct_n(text, 2, "mecab") == pytest.approx(4 / 7)


def test_unknown_tokenizer():
    with pytest.raises(UserError, match="tokenizer"):
        distinct_n(["a"], 1, "bpe")


def _rows():
    base = {"persona": ["i x."], "utterance": "u", "reference": "a b c"}
    rows = []
    for i, (m, resp) in enumerate([("prompt_tuning", "a b a"), ("prompt_tuning", "b c"), ("finetune_none", "a a")]):
        rows.append({**base, "item_id": f"persona.p1.p1-{i}.{m}.tiny", "eval_set": "persona", "persona_id": "p1",
                     "pair_id": f"p1-{i}", "method": m, "model": "tiny", "response": resp})
    rows.append({**base, "item_id": "general.p1.g-1.finetune_none.tiny", "eval_set": "general", "persona_id": "p1",
                 "pair_id": "g-1", "method": "finetune_none", "model": "tiny", "response": "c d", "reference": "d e"})
    return rows


def test_table_rows_per_system_over_both_eval_sets():
    rows = distinct_rows(_rows())
    by = {(r.model, r.method): r for r in rows}
    pt = by[("tiny", "prompt_tuning")]
    assert (pt.responses, pt.distinct_1, pt.distinct_2) == (2, pytest.approx(0.6), pytest.approx(1.0))
    ft = by[("tiny", "finetune_none")]  # "a a" + "c d": unigrams a a c d -> 3/4; bigrams (a a) (c d) -> 2/2
    assert (ft.responses, ft.distinct_1, ft.distinct_2) == (2, pytest.approx(0.75), pytest.approx(1.0))
    ref = by[("-", "reference")]  # references of distinct pairs: "a b c" x3 pairs and "d e"
    assert ref.responses == 4
    assert [r.method for r in rows] == ["prompt_tuning", "finetune_none", "reference"]
    md = to_markdown(rows)
    assert "not averaged per response" in md and "| tiny | Prompt-tuning | 2 | 0.600 | 1.000 |" in md
    assert to_csv(rows).splitlines()[1] == "tiny,prompt_tuning,2,0.600000,1.000000"


def test_distinct_cli(tmp_path):
    p = tmp_path / "responses.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    res = CliRunner().invoke(main, ["distinct", "--responses", str(p)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "distinct.md").read_text().count("|") > 10
    assert (tmp_path / "distinct.csv").read_text().startswith("model,method,responses,distinct_1,distinct_2")
    res = CliRunner().invoke(main, ["distinct", "--responses", str(p), "--tokenizer", "char", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0 and "char tokens" in (tmp_path / "o" / "distinct.md").read_text()


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"model": "m", "method": "x"}\n', "responses.jsonl:1: response: required key missing"),
        ('{"model": "m", "method": "x", "response": 3}\n', "responses.jsonl:1: response: expected a string"),
        ('{"model": "m", "method": "x", "response": "a"}\nnot json\n', "responses.jsonl:2: not valid JSON"),
        ("\n", "expected at least one response row"),
    ],
)
def test_distinct_cli_bad_input(tmp_path, content, message):
    p = tmp_path / "responses.jsonl"
    p.write_text(content)
    res = CliRunner().invoke(main, ["distinct", "--responses", str(p)])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "distinct.md").exists()


def test_distinct_cli_needs_one_source(tmp_path):
    res = CliRunner().invoke(main, ["distinct"])
    assert res.exit_code == 2 and "exactly one of --config or --responses" in res.output
    res = CliRunner().invoke(main, ["distinct", "--responses", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "file not found" in res.output


def test_no_ngrams_is_undefined_not_zero(tmp_path):
    """A system whose responses are all empty (or one word, for distinct-2) has no N-grams: distinct-N is
    undefined, shown as "-" in Markdown with a note, an empty CSV cell and null in the report's JSON."""
    from dataclasses import asdict

    rows = _rows()
    for i, resp in enumerate(["", "  "]):
        rows.append({**rows[0], "item_id": f"persona.p1.e{i}.finetune_added.tiny", "pair_id": f"e{i}",
                     "method": "finetune_added", "response": resp})
    rows.append({**rows[0], "item_id": "persona.p1.m.prompt_tuning.big", "model": "big", "response": "word"})
    out = {(r.model, r.method): r for r in distinct_rows(rows, reference=False)}
    empty, one = out[("tiny", "finetune_added")], out[("big", "prompt_tuning")]
    assert (empty.responses, empty.distinct_1, empty.distinct_2) == (2, None, None)
    assert (one.distinct_1, one.distinct_2) == (1.0, None)
    md = to_markdown(list(out.values()))
    assert "| tiny | Fine-tuning (added) | 2 | - | - |" in md and "| big | Prompt-tuning | 1 | 1.000 | - |" in md
    assert "-: undefined, the system's responses hold no N-gram at all" in md
    assert "0.000" not in md
    assert "tiny,finetune_added,2,,\n" in to_csv(list(out.values()))
    assert json.loads(json.dumps(asdict(empty)))["distinct_1"] is None
    # no note when every value is defined
    assert "undefined" not in to_markdown(distinct_rows(_rows()))
    p = tmp_path / "responses.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(main, ["distinct", "--responses", str(p)])
    assert res.exit_code == 0 and "| - | - |" in res.output, res.output

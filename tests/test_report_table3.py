"""Table 3/8 for several aspects: each aspect marked (``table3 = true`` in the config's or the mapping's
aspects, or ``[report] table3_aspects``) gets its own Table 3 with bins from its own scale, in every
output (Markdown, LaTeX, CSV, JSON, report.md/.json, plots, the ``table3()`` DataFrame); one marked aspect
keeps today's file names; bad names are one line, exit 2, nothing written."""
from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from helpers.analysis import make_rows, two_scale_study
from mturk_eval.analysis import analysis, load_ratings, table3
from mturk_eval.analysis.batch_csv import write_batch_csv
from mturk_eval.analysis.frames import frame_csv
from mturk_eval.analysis.ratings import write_ratings_csv
from mturk_eval.cli import main
from mturk_eval.config import load_config
from mturk_eval.errors import UserError
from test_bad_inputs import fails_cleanly

HUMOUR_BINS = ["[1,2)", "[2,3)", "[3,4)", "[4,5)", "[5,6)", "[6,7]"]
COHERENCE_BINS = ["[1,2)", "[2,3)", "[3,4]"]


@pytest.fixture
def two_scales(tmp_path):
    """Humour (1-7) and coherence (1-4), both binned as Table 3."""
    _, cfg = two_scale_study(tmp_path, coherence_table3=True)
    return tmp_path, cfg


def test_two_marked_aspects_each_get_a_table3_with_their_own_bins(two_scales):
    tmp, cfg = two_scales
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--ratings", str(tmp / "r.csv"), "-q"])
    assert res.exit_code == 0, res.output
    rep = tmp / "runs/x/report"
    assert not (rep / "tables/table3.csv").exists()
    humour = list(csv.reader(open(rep / "tables/table3_humour.csv")))
    coherence = list(csv.reader(open(rep / "tables/table3_coherence.csv")))
    # humour means 1.5, 6.5, 4; coherence means 4, 1.5, 2.5
    assert humour == [["eval_set", "method", "model", *HUMOUR_BINS, "n"], ["persona", "m", "t", "1", "0", "0", "1",
                                                                          "0", "1", "3"]]
    assert coherence == [["eval_set", "method", "model", *COHERENCE_BINS, "n"], ["persona", "m", "t", "1", "1", "1", "3"]]
    for stem in ("table3_humour", "table3_coherence"):
        for ext in ("md", "tex", "json"):
            assert (rep / f"tables/{stem}.{ext}").exists(), (stem, ext)
        assert (rep / f"plots/bins_{stem[7:]}.png").stat().st_size > 1000
    assert "tab:persona-x-coherence" in (rep / "tables/table3_coherence.tex").read_text()
    assert not (rep / "plots/persona_consideration.png").exists()
    md = (rep / "report.md").read_text()
    assert md.index("## Humour (Table 3)") < md.index("## Coherence (Table 3)")
    assert "(plots/bins_humour.png)" in md and "(plots/bins_coherence.png)" in md
    data = json.loads((rep / "report.json").read_text())
    assert list(data["table3_by_aspect"]) == ["humour", "coherence"]
    assert data["table3"] == data["table3_by_aspect"]["humour"]
    assert json.loads((rep / "tables/table3_coherence.json").read_text()) == data["table3_by_aspect"]["coherence"]
    # The notebook API gives the same tables; the default is the first marked aspect.
    an = analysis(load_ratings(tmp / "r.csv", config=cfg), load_config(cfg))
    assert (rep / "tables/table3_coherence.csv").read_text() == frame_csv(table3(an, aspect="coherence"))
    assert (rep / "tables/table3_humour.csv").read_text() == frame_csv(table3(an))
    with pytest.raises(UserError, match=r"expected one of the aspects binned as Table 3 \(humour, coherence\), "
                                        r"got 'fluency'"):
        table3(an, aspect="fluency")


def test_table3_aspects_marks_the_papers_aspects_by_name(tmp_path):
    rows = make_rows(n_prompts=4, seed=5)
    write_ratings_csv(tmp_path / "r.csv", rows)
    base = f'[experiment]\nname = "x"\nruns_dir = "{tmp_path}/runs"\n[report]\nbootstrap_samples = 20\nmixed_model = false\n'
    (tmp_path / "plain.toml").write_text(base, encoding="utf-8")
    (tmp_path / "two.toml").write_text(base + 'table3_aspects = ["persona", "Relevance"]\n', encoding="utf-8")
    (tmp_path / "none.toml").write_text(base + "table3_aspects = []\n", encoding="utf-8")
    for name in ("plain", "two", "none"):
        res = CliRunner().invoke(main, ["report", "--config", str(tmp_path / f"{name}.toml"), "--ratings",
                                        str(tmp_path / "r.csv"), "--out", str(tmp_path / name), "--no-plots"])
        assert res.exit_code == 0, res.output
        terminal = res.output
        assert ("Table 3: relevance, per-response mean in bins" in terminal) == (name == "two")
        assert ("Table 3: persona consideration, per-response mean in bins" in terminal) == (name != "none")
    plain, two = tmp_path / "plain/tables", tmp_path / "two/tables"
    # The paper's persona table is the same table, now beside relevance's.
    assert (two / "table3_persona.csv").read_text() == (plain / "table3.csv").read_text()
    assert (two / "table3_persona.md").read_text() == (plain / "table3.md").read_text()
    rel = pd.read_csv(two / "table3_relevance.csv")
    assert list(rel.columns) == ["eval_set", "method", "model", "[1,2)", "[2,3)", "[3,4)", "[4,5]", "n"]
    assert rel["n"].tolist() == [4] * 6
    assert (two / "table3_relevance.csv").read_text() == frame_csv(
        table3(load_ratings(tmp_path / "r.csv"), tmp_path / "two.toml", aspect="relevance"))
    assert not list((tmp_path / "none/tables").glob("table3*"))
    assert "(Table 3)" not in (tmp_path / "none/report.md").read_text()


def test_japanese_tables_are_numbered_8(two_scales):
    tmp, cfg = two_scales
    cfg.write_text(cfg.read_text().replace('name = "x"\n', 'name = "x"\nlanguage = "ja"\n', 1))
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--ratings", str(tmp / "r.csv"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp / "runs/x/report/tables").glob("table8*.csv")) == [
        "table8_coherence.csv", "table8_humour.csv"]


def test_a_mapping_marks_several_aspects(tmp_path):
    rows = [{"HITId": "H", "AssignmentId": f"A{w}", "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
             "Input.id": "x", "Answer.q": str(w + 1), "Answer.fun": str(7 - w)} for w in range(3)]
    write_batch_csv(tmp_path / "b.csv", rows)
    (tmp_path / "m.toml").write_text('item_id = "{Input.id}"\n[system]\nmethod = "m"\neval_set = "e"\nmodel = "t"\n'
                                     '[[aspects]]\nname = "quality"\nscale = [1, 4]\nanswer = "Answer.q"\ntable3 = true\n'
                                     '[[aspects]]\nname = "humour"\nscale = [1, 7]\nanswer = "Answer.fun"\n'
                                     'table3 = true\n', encoding="utf-8")
    res = CliRunner().invoke(main, ["report", "--batch-csv", str(tmp_path / "b.csv"), "--mapping",
                                    str(tmp_path / "m.toml"), "--out", str(tmp_path / "rep"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    q = list(csv.reader(open(tmp_path / "rep/tables/table3_quality.csv")))
    h = list(csv.reader(open(tmp_path / "rep/tables/table3_humour.csv")))
    assert q[1] == ["e", "m", "t", "0", "1", "0", "1"]                       # mean 2
    assert h[1] == ["e", "m", "t", "0", "0", "0", "0", "0", "1", "1"]        # mean 6
    # [report] table3_aspects chooses among the mapping's aspects too.
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[experiment]\nname = "x"\nruns_dir = "{tmp_path}/runs"\n[report]\ntable3_aspects = ["humour"]\n',
                   encoding="utf-8")
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--batch-csv", str(tmp_path / "b.csv"), "--mapping",
                                    str(tmp_path / "m.toml"), "--out", str(tmp_path / "one"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "one/tables").glob("table3*.csv")) == ["table3.csv"]
    assert list(csv.reader(open(tmp_path / "one/tables/table3.csv"))) == h


@pytest.mark.parametrize("value,needle", [
    ('["humor"]', "report.table3_aspects: expected names among the rated aspects (fluency, engagingness, relevance, "
                  "persona), got 'humor'"),
    ('["persona", "persona"]', "report.table3_aspects: expected each aspect once, got 'persona' again"),
    ('"persona"', "report.table3_aspects: expected list of string or nothing, got 'persona'"),
])
def test_bad_table3_aspects(tmp_path, value, needle):
    write_ratings_csv(tmp_path / "r.csv", make_rows(n_prompts=2, seed=1))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[experiment]\nname = "x"\nruns_dir = "{tmp_path}/runs"\n[report]\ntable3_aspects = {value}\n',
                   encoding="utf-8")
    fails_cleanly(["report", "--config", str(cfg), "--ratings", str(tmp_path / "r.csv")], tmp_path, needle)

"""The pandas layer: load_ratings from every source, the DataFrame tables the report writes, Parquet in
and out (and its type checks), the pyarrow CSV path against the careful one, aspects with their own
scales, and the worked example of docs/report.md run as written."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from helpers.analysis import make_rows, responses_for, two_scale_study
from mturk_eval.analysis import agreement, analysis, comparisons, load_ratings, mixed_models, table2, table3, workers
from mturk_eval.analysis.frames import COMPARISON_COLUMNS, frame_csv
from mturk_eval.analysis.ratings import read_ratings, write_ratings_csv
from mturk_eval.cli import main
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.io import write_jsonl
from test_bad_inputs import fails_cleanly

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path):
    rows = make_rows(n_prompts=6, seed=2, shift={"prompt_tuning": 1.0})
    write_ratings_csv(tmp_path / "ratings.csv", rows)
    write_jsonl(tmp_path / "ratings.jsonl", rows)
    write_jsonl(tmp_path / "responses.jsonl", responses_for(rows))
    return tmp_path, rows


def test_every_source_gives_the_same_frame(files):
    tmp, rows = files
    csv_df = load_ratings(tmp / "ratings.csv")
    assert csv_df.index.name == "line" and csv_df.index[0] == 2
    assert str(csv_df["score"].dtype) == "int64" and isinstance(csv_df["item_id"].dtype, pd.CategoricalDtype)
    assert str(csv_df["attention_passed"].dtype) == "boolean" and csv_df["attention_passed"].isna().all()
    csv_df.to_parquet(tmp / "r.parquet")
    others = [load_ratings(tmp / "ratings.jsonl"), load_ratings(rows), load_ratings(pd.DataFrame(rows)),
              load_ratings(tmp / "r.parquet"), load_ratings(csv_df)]
    plain = csv_df.reset_index(drop=True).astype({c: object for c in csv_df.columns if c != "score"})
    for df in others:
        assert df.reset_index(drop=True).astype({c: object for c in df.columns if c != "score"}).equals(plain)


def test_report_csvs_are_the_frames(files):
    tmp, _ = files
    res = CliRunner().invoke(main, ["report", "--ratings", str(tmp / "ratings.csv"), "--responses",
                                    str(tmp / "responses.jsonl"), "--out", str(tmp / "rep"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    cfg = ExperimentConfig(name="report")
    an = analysis(load_ratings(tmp / "ratings.csv"), cfg, tmp / "responses.jsonl")
    rep = tmp / "rep"
    assert (rep / "tables/table2.csv").read_text() == frame_csv(table2(an), "%.6g")
    assert (rep / "tables/table3.csv").read_text() == frame_csv(table3(an))
    assert (rep / "tests.csv").read_text() == frame_csv(comparisons(an))
    assert (rep / "mixed_model.csv").read_text() == frame_csv(mixed_models(an))
    assert list(pd.read_csv(rep / "tests.csv").columns[:len(COMPARISON_COLUMNS)]) == COMPARISON_COLUMNS
    assert (rep / "agreement.csv").read_text() == frame_csv(agreement(an))
    w = pd.read_csv(rep / "workers.csv")
    assert w["rating_rows"].sum() == an.counts["rows"] and w["rows_used"].sum() == an.counts["used_rows"]
    assert list(w.columns) == list(workers(an).columns)
    back = pd.read_parquet(rep / "ratings.parquet")
    assert len(back) == an.counts["rows"] and set(back["aspect"]) == {"fluency", "engagingness", "relevance", "persona"}
    # the same numbers whether a DataFrame or its Analysis is given
    assert table2(load_ratings(tmp / "ratings.csv"), cfg).equals(table2(an))


def test_worker_rows_by_hand(files):
    tmp, rows = files
    w = workers(load_ratings(rows)).set_index("worker_id")
    for wid in {r["worker_id"] for r in rows}:
        mine = [r for r in rows if r["worker_id"] == wid]
        assert w.loc[wid, "rating_rows"] == len(mine)
        assert w.loc[wid, "assignments"] == len({r["assignment_id"] for r in mine})
        assert w.loc[wid, "median_work_time_s"] == float(np.median([r["work_time_s"] for r in
                                                                     {r["assignment_id"]: r for r in mine}.values()]))


def test_arrow_csv_path_matches_the_careful_path_and_keeps_line_numbers(files):
    tmp, rows = files
    text = (tmp / "ratings.csv").read_text()
    fast = read_ratings(tmp / "ratings.csv")
    lines = text.splitlines()
    (tmp / "blank.csv").write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")  # a blank line: careful path
    careful = read_ratings(tmp / "blank.csv")
    for f in ("item", "worker", "assignment", "aspect", "score", "work_time_s"):
        assert np.array_equal(getattr(fast, f), getattr(careful, f), equal_nan=True), f
    assert fast.item_ids == careful.item_ids and fast.lines[:3].tolist() == [2, 3, 4]
    assert careful.lines[:3].tolist() == [2, 3, 5]
    bad = lines[:]
    bad[7] = bad[7].replace(",fluency,", ",humour,") if ",fluency," in bad[7] else re.sub(r",(engagingness|relevance|persona),", ",humour,", bad[7])
    (tmp / "bad.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(UserError, match=r"bad.csv:8: aspect: expected one of fluency, engagingness, relevance, persona, got 'humour'"):
        read_ratings(tmp / "bad.csv")


@pytest.mark.parametrize(
    "column, values, message",
    [
        ("score", [4.0, 3.0], "score: expected a Parquet column of integers, got double"),
        ("worker_id", [1, 2], "worker_id: expected a Parquet column of strings, got int64"),
        ("simulated", ["no", "yes"], "simulated: expected a Parquet column of booleans or 0/1 integers, got "),
        ("work_time_s", ["10", "20"], "work_time_s: expected a Parquet column of numbers, got "),
        ("score", [4, 9], "r.parquet:2: score: expected an integer from 1 to 5, got 9"),
    ],
)
def test_parquet_with_wrong_types(tmp_path, column, values, message):
    df = pd.DataFrame({"item_id": ["i1", "i2"], "eval_set": "persona", "method": "m", "model": "t",
                       "worker_id": ["W1", "W2"], "aspect": "fluency", "score": [4, 3]})
    df[column] = values
    df.to_parquet(tmp_path / "r.parquet")
    fails_cleanly(["report", "--ratings", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "rep"), "-q"],
                  tmp_path, message)


def test_not_parquet_is_one_line(tmp_path):
    (tmp_path / "r.parquet").write_text("item_id,score\n")
    fails_cleanly(["report", "--ratings", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "rep"), "-q"],
                  tmp_path, "r.parquet: not a readable Parquet file")


def test_config_aspects_with_their_own_scales(tmp_path):
    rows, cfg = two_scale_study(tmp_path)
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--ratings", str(tmp_path / "r.csv"), "-q",
                                    "--no-plots"])
    assert res.exit_code == 0, res.output
    t3 = pd.read_csv(tmp_path / "runs/x/report/tables/table3.csv")
    assert list(t3.columns[3:-1]) == ["[1,2)", "[2,3)", "[3,4)", "[4,5)", "[5,6)", "[6,7]"]
    assert t3.iloc[0, 3:].tolist() == [1, 0, 0, 1, 0, 1, 3]   # means 1.5, 6.5, 4
    df = load_ratings(tmp_path / "r.csv", config=cfg)
    assert list(df["aspect"].cat.categories) == ["humour", "coherence"]
    rows[1]["score"] = 5  # coherence 5 on a 1-4 scale
    write_ratings_csv(tmp_path / "bad.csv", rows)
    fails_cleanly(["report", "--config", str(cfg), "--ratings", str(tmp_path / "bad.csv")], tmp_path,
                  "bad.csv:3: score: expected an integer from 1 to 4 (coherence's scale), got 5")
    cfg.write_text(cfg.read_text().replace("[1, 4]", "[1]"))
    fails_cleanly(["report", "--config", str(cfg), "--ratings", str(tmp_path / "r.csv")], tmp_path,
                  "report.aspects[1].scale: expected [low, high]")


def test_worked_example_in_docs_runs(files, monkeypatch):
    tmp, _ = files
    text = (ROOT / "docs" / "report.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- worked-example -->\s*```python\n(.*?)```\s*<!-- /worked-example -->", text, re.S)
    assert block, "docs/report.md lost its worked example"
    monkeypatch.chdir(tmp)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pd.option_context("display.width", 250, "display.max_columns", 40):
        exec(compile(block.group(1), "docs/report.md", "exec"), {})
    printed = out.getvalue()
    assert f"{len(load_ratings(tmp / 'ratings.csv'))} ratings of 36 items by 12 workers" in printed
    assert "fluency_mean" in printed and "alpha_ordinal" in printed
    assert (tmp / "ratings.parquet").exists()


def test_arrow_blocks_keep_first_appearance_order(files, monkeypatch):
    """Many small pyarrow blocks (each its own dictionary, unified in file order) give the vocabularies in
    order of first appearance, exactly as the careful reader does: the loader relies on it."""
    import mturk_eval.analysis.ratings as ratings_mod

    tmp, rows = files
    rng = np.random.default_rng(3)
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    write_ratings_csv(tmp / "s.csv", shuffled)
    monkeypatch.setattr(ratings_mod, "ARROW_BLOCK", 1 << 10)
    fast = read_ratings(tmp / "s.csv")
    assert ratings_mod._read_csv_arrow(tmp / "s.csv")["item_id"].codes.size == len(rows)
    careful = ratings_mod.ratings_from_records(shuffled, "records")
    for f in ("item", "worker", "assignment", "aspect", "score", "item_eval_set", "item_method"):
        assert np.array_equal(getattr(fast, f), getattr(careful, f)), f
    assert (fast.item_ids, fast.worker_ids, fast.assignment_ids) == (careful.item_ids, careful.worker_ids,
                                                                      careful.assignment_ids)


def test_ratings_parquet_reads_back_as_the_frame_it_was_written_from(files):
    """The report's ratings.parquet (every string column stored dictionary-encoded but the submission ids)
    reads back as the same long-format frame, categories and their order included, and as the same
    ratings."""
    from mturk_eval.analysis.ratings import ratings_frame, ratings_parquet, read_ratings_parquet

    tmp, _ = files
    r = read_ratings(tmp / "ratings.csv")
    (tmp / "r.parquet").write_bytes(ratings_parquet(r))
    back, frame = pd.read_parquet(tmp / "r.parquet"), ratings_frame(r).reset_index(drop=True)
    assert isinstance(back["assignment_id"].dtype, pd.CategoricalDtype)
    # attention_passed: a nullable boolean in the frame, object (True/False/None) from Parquet.
    assert back["attention_passed"].tolist() == [None if v is pd.NA else bool(v) for v in frame["attention_passed"]]
    pd.testing.assert_frame_equal(back.drop(columns="attention_passed"), frame.drop(columns="attention_passed"))
    again = read_ratings_parquet(tmp / "r.parquet")
    for f in ("item", "worker", "assignment", "aspect", "score", "status", "attention_passed", "item_method"):
        assert np.array_equal(getattr(again, f), getattr(r, f)), f
    assert (again.item_ids, again.worker_ids, again.assignment_ids) == (r.item_ids, r.worker_ids, r.assignment_ids)


@pytest.mark.parametrize("tail, fast", [("\n", True), ("", True), ("\n\n", False), ("\r\n", True)])
def test_arrow_path_counts_the_line_breaks(files, tail, fast):
    """pyarrow's reader is used when its rows are the file's lines (last line with or without a break);
    a blank line anywhere (here at the end) leaves the file to the careful reader."""
    import mturk_eval.analysis.ratings as ratings_mod

    tmp, rows = files
    lines = (tmp / "ratings.csv").read_text().splitlines()
    sep = "\r\n" if tail == "\r\n" else "\n"
    (tmp / "t.csv").write_bytes((sep.join(lines) + tail).encode())
    got = ratings_mod._read_csv_arrow(tmp / "t.csv")
    assert (got is not None) == fast
    if fast:
        assert got["item_id"].codes.size == len(rows)


def test_bytes_that_are_not_utf8_leave_the_csv_to_the_careful_reader(files):
    """pyarrow checks UTF-8 on each column's distinct values, not on every cell: a bad byte in any cell,
    a repeated value or not, still sends the file to the careful reader and its one-line message."""
    import mturk_eval.analysis.ratings as ratings_mod

    tmp, _ = files
    lines = (tmp / "ratings.csv").read_bytes().split(b"\n")
    for cell in (b"fluency", b"AW1"):
        bad = lines[:]
        k = next(i for i, ln in enumerate(bad) if b"," + cell + b"," in ln and i > 3)
        bad[k] = bad[k].replace(b"," + cell + b",", b"," + cell + b"\xff,", 1)
        (tmp / "bad.csv").write_bytes(b"\n".join(bad))
        assert ratings_mod._read_csv_arrow(tmp / "bad.csv") is None
        with pytest.raises(UserError, match=r"bad.csv.*not valid utf-8"):
            read_ratings(tmp / "bad.csv")

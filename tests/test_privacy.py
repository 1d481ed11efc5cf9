"""mturk_eval.privacy: the per-experiment key (0600, never shown, refused when lost after use), stable
pseudonyms (single ids, lists and pandas Series), and the free-text detection the report relies on."""
from __future__ import annotations

import os
import re
import sqlite3
import stat

import pandas as pd
import pytest

from mturk_eval.errors import UserError
from mturk_eval.privacy import (KEY_ID_META, PSEUDONYM_RE, Pseudonymiser, answer_free_text_fields,
                                form_free_text_fields, is_pseudonym, key_path)


def _ledger(run_dir, name="ledger.sandbox.sqlite"):
    run_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(run_dir / name)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.commit()
    conn.close()
    return run_dir / name


def _meta(path):
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (KEY_ID_META,)).fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def test_key_is_created_0600_whatever_the_umask_and_never_shown(tmp_path):
    old = os.umask(0)
    try:
        p = Pseudonymiser.for_run(tmp_path / "exp")
    finally:
        os.umask(old)
    path = key_path(tmp_path / "exp")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", text)
    assert text not in repr(p) and p.key.hex() not in repr(p) and p.key_id in repr(p)
    assert not list((tmp_path / "exp").glob(".*tmp"))  # the temporary file is gone


def test_pseudonyms_are_stable_readable_and_keyed(tmp_path):
    a = Pseudonymiser.for_run(tmp_path / "exp")
    again = Pseudonymiser.for_run(tmp_path / "exp")
    other = Pseudonymiser.for_run(tmp_path / "other")
    r = a.rater("A1B2C3D4E5F6G7")
    assert PSEUDONYM_RE.match(r) and r.startswith("r-") and is_pseudonym(r)
    assert again.rater("A1B2C3D4E5F6G7") == r            # same key: same pseudonym in every export
    assert other.rater("A1B2C3D4E5F6G7") != r            # another experiment's key: unlinkable
    assert a.submission("A1B2C3D4E5F6G7") != r and a.submission("x").startswith("s-")
    assert "A1B2" not in r
    assert not is_pseudonym("A1B2C3D4E5F6G7") and not is_pseudonym("r-UPPERCASE1")


def test_lists_and_series_match_single_ids_and_keep_missing(tmp_path):
    p = Pseudonymiser.for_run(tmp_path / "exp")
    ids = ["AW1", "AW2", "AW1", "AW3"]
    assert p.raters(ids) == [p.rater(i) for i in ids]
    s = pd.Series(ids + [None], index=list("abcde"), name="worker_id")
    out = p.series(s)
    assert list(out.index) == list("abcde") and out.name == "worker_id"
    assert out.iloc[:4].tolist() == [p.rater(i) for i in ids] and pd.isna(out.iloc[4])
    assert p.series(pd.Series(["x"]), "submission").iloc[0] == p.submission("x")
    # An earlier export read back keeps its pseudonyms when asked to.
    assert p.raters([p.rater("AW1"), "AW2"], keep_pseudonyms=True) == [p.rater("AW1"), p.rater("AW2")]


def test_key_id_is_recorded_in_the_ledgers(tmp_path):
    run = tmp_path / "exp"
    led = _ledger(run)
    p = Pseudonymiser.for_run(run)
    assert _meta(led) == p.key_id


def test_missing_key_after_use_is_refused_with_how_to_restore(tmp_path):
    run = tmp_path / "exp"
    led = _ledger(run)
    Pseudonymiser.for_run(run)
    key_path(run).unlink()
    with pytest.raises(UserError) as e:
        Pseudonymiser.for_run(run)
    msg = e.value.message
    assert "pseudonym.key: missing" in msg and "restore it from your backup" in msg
    assert "mturk-eval participants new-key" in msg and "\n" not in msg
    assert not key_path(run).exists()  # no new key made silently
    assert _meta(led) is not None


def test_wrong_key_and_loose_permissions_are_refused(tmp_path):
    run = tmp_path / "exp"
    _ledger(run)
    Pseudonymiser.for_run(run)
    path = key_path(run)
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match=r"permissions 0644, expected 0600 .*chmod 600"):
        Pseudonymiser.for_run(run)
    path.unlink()
    path.write_text("ab" * 32 + "\n")
    os.chmod(path, 0o600)
    with pytest.raises(UserError, match="not the key this experiment's pseudonyms were made with"):
        Pseudonymiser.for_run(run)
    path.write_text("not a key")
    with pytest.raises(UserError, match="expected 64 hex digits"):
        Pseudonymiser.for_run(run)


def test_one_off_keys_differ():
    a, b = Pseudonymiser.one_off(), Pseudonymiser.one_off()
    assert a.rater("AW1") != b.rater("AW1") and not a.stored


def test_free_text_fields_of_pages_and_answers():
    from mturk_eval.tasks.builder import render_html

    html = render_html([{"persona": ["p"], "utterance": "u", "response": "r"}], "en", "https://x.invalid/")
    assert form_free_text_fields(html) == []  # the built-in page: ratings only
    assert form_free_text_fields(render_html([{"persona": ["p"], "utterance": "u", "response": "r"}], "ja",
                                             "https://x.invalid/")) == []
    page = ("<form><input type=hidden name=assignmentId value=x>"
            "<input type=radio name=i0_fluency value=1><input type=radio name=i0_fluency value=2>"
            "<textarea name=comments></textarea><input name=age type=number>"
            "<input type=radio name=gender value=f><input type=radio name=gender value=m>"
            "<select name=i0_scale><option>1</option><option>2</option><option>3</option></select></form>")
    assert form_free_text_fields(page) == ["comments", "age", "gender"]
    assert answer_free_text_fields({"i0_fluency": "4", "comments": "I am Jane from Leeds", "note": " ",
                                    "mturk_eval_simulated": "1", "i0_relevance": "good"}) == ["comments", "i0_relevance"]


def test_batched_hashing_equals_one_by_one(tmp_path):
    p = Pseudonymiser.for_run(tmp_path / "exp")
    ids = [f"A{i:05d}" for i in range(300)] + ["A00001", "ünïcode"]   # > 64: the batched path
    assert p.raters(ids) == [p.rater(i) for i in ids]
    assert p.submissions(ids[:300], distinct=True) == [p.submission(i) for i in ids[:300]]


def test_report_pseudonymisation_of_a_dataframe_and_the_spend(tmp_path):
    """The report's one call, on the long-format DataFrame the pandas loader returns: rater pseudonyms,
    opaque submission numbers, bonuses re-keyed to them."""
    from types import SimpleNamespace

    from mturk_eval.config import ExperimentConfig
    from mturk_eval.privacy import pseudonymise_ratings

    cfg = ExperimentConfig(name="exp", runs_dir=str(tmp_path / "runs"))
    df = pd.DataFrame({"worker_id": ["AW1", "AW2", "AW1"], "assignment_id": ["3X", "3Y", "3X"], "score": [1, 2, 3]})
    spend = SimpleNamespace(bonus_by_assignment={"3Y": 0.5})
    done = pseudonymise_ratings(df, cfg, from_ledger=True)
    assert done.rekey_spend(spend) is spend
    info = done.info
    p = Pseudonymiser.for_run(cfg.run_dir)
    assert df["worker_id"].tolist() == [p.rater("AW1"), p.rater("AW2"), p.rater("AW1")]
    assert df["assignment_id"].tolist() == ["s-000001", "s-000002", "s-000001"]
    assert spend.bonus_by_assignment == {"s-000002": 0.5}
    assert info["key"] == "experiment" and info["key_id"] == p.key_id


def test_submission_numbers_are_s_and_at_least_six_digits_in_order():
    from mturk_eval.privacy import submission_numbers

    assert submission_numbers(0) == []
    assert submission_numbers(3) == ["s-000001", "s-000002", "s-000003"]
    for n in (999_999, 1_000_000, 1_000_001):   # the width grows past six digits with n
        width = max(6, len(str(n)))
        got = submission_numbers(n)
        assert len(got) == n and got[::99_991] == [f"s-{i:0{width}d}" for i in range(1, n + 1, 99_991)]
        assert got[-1] == f"s-{n:0{width}d}" and got[8] == f"s-{9:0{width}d}"


def test_exports_read_back_keep_their_pseudonyms_and_reports_without_config_use_a_one_off_key(tmp_path):
    """`collect --export-csv` rows (already pseudonymised) give the same report as the ledger; a report
    from a file without --config stores no key anywhere and says its pseudonyms match nothing else."""
    import json

    from click.testing import CliRunner

    from helpers.analysis import make_rows
    from mturk_eval.platforms.mturk.batch_export import batch_rows
    from mturk_eval.analysis.batch_csv import write_batch_csv
    from mturk_eval.analysis.ratings import write_ratings_csv
    from mturk_eval.cli import main
    from mturk_eval.ledger import Ledger, ledger_path
    from mturk_eval.privacy import pseudonymise_batch_rows
    from test_report_cli import _fill_ledger, write_config

    rows = make_rows(n_prompts=4, seed=3)
    cfg_path = write_config(tmp_path)
    cfg = _fill_ledger(cfg_path, rows)
    run = CliRunner().invoke
    assert run(main, ["report", "--config", str(cfg_path), "-q", "--no-plots"]).exit_code == 0
    from_ledger = json.loads((cfg.run_dir / "report" / "report.json").read_text())
    p = Pseudonymiser.for_run(cfg.run_dir)
    with Ledger.open(ledger_path(cfg, "local")) as led:
        write_batch_csv(tmp_path / "export.csv", pseudonymise_batch_rows(batch_rows(cfg, led), p))
    assert "AW3" not in (tmp_path / "export.csv").read_text() and p.rater("AW3") in (tmp_path / "export.csv").read_text()
    res = run(main, ["report", "--config", str(cfg_path), "--batch-csv", str(tmp_path / "export.csv"),
                     "--out", str(tmp_path / "from_export"), "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "from_export" / "report.json").read_text())
    assert again["workers"]["excluded_workers"] == from_ledger["workers"]["excluded_workers"]
    assert again["workers"]["excluded_workers"][0]["worker_id"] == p.rater("AW3")

    write_ratings_csv(tmp_path / "plain.csv", rows)
    res = run(main, ["report", "--ratings", str(tmp_path / "plain.csv"), "--out", str(tmp_path / "plain"), "-q",
                     "--no-plots"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert data["privacy"]["key"] == "one-off" and "matching no other export" in data["privacy"]["note"]
    assert not any(f.name == "pseudonym.key" for f in tmp_path.rglob("*") if f.parent != cfg.run_dir)
    assert "AW" not in (tmp_path / "plain" / "report.md").read_text()

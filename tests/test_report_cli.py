"""`mturk-eval report` through click's CliRunner: every input route, the output files, the simulated
banner, and bad input (exit 2, one line, nothing half-written)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.analysis import make_rows, responses_for
from mturk_eval.analysis.ratings import write_ratings_csv
from mturk_eval.cli import main
from mturk_eval.config import ASPECTS
from mturk_eval.io import write_jsonl
from mturk_eval.privacy import Pseudonymiser

QFA = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd"


def run(*args, cwd: Path | None = None):
    runner = CliRunner()
    return runner.invoke(main, ["report", *args], catch_exceptions=False)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(f'[experiment]\nname = "exp"\nmodels = ["tiny"]\nruns_dir = "{tmp_path / "runs"}"\n'
                 f'[hit]\nassignments_per_hit = 5\n[report]\nbootstrap_samples = 200\n{extra}', encoding="utf-8")
    return p


@pytest.fixture
def files(tmp_path):
    rows = make_rows(n_prompts=6, seed=2, shift={"prompt_tuning": 1.0})
    write_ratings_csv(tmp_path / "ratings.csv", rows)
    write_jsonl(tmp_path / "responses.jsonl", responses_for(rows))
    return tmp_path, rows


def test_help_documents_every_option():
    res = CliRunner().invoke(main, ["report", "--help"])
    assert res.exit_code == 0
    for opt in ("--config", "--ratings", "--batch-csv", "--target", "--responses", "--out", "--seed", "--no-plots",
                "--quiet"):
        assert opt in res.output


def test_report_from_ratings_file_writes_everything(files):
    tmp_path, rows = files
    cfg = write_config(tmp_path, 'human_reference = {fluency = "4.31 (1.07)", engagingness = "4.25 (1.06)", '
                                 'relevance = "4.36 (0.92)"}\n')
    res = run("--config", str(cfg), "--ratings", str(tmp_path / "ratings.csv"),
              "--responses", str(tmp_path / "responses.jsonl"), "--quiet")
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "exp" / "report"
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    for name in ("report.md", "report.json", "tests.csv", "agreement.csv", "underrated_items.csv",
                 "plots/persona_consideration.png", "plots/means_ci.png", "tables/table1.md",
                 *[f"tables/table{n}.{ext}" for n in (2, 3) for ext in ("md", "tex", "csv", "json")]):
        assert name in names, name
    md = (out / "report.md").read_text()
    assert "SIMULATED" not in md
    assert "| Human" in md and "4.31 (1.07)" in md
    assert "## Agreement between workers" in md and "## Workers" in md
    tex = (out / "tables" / "table2.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "Prompt-tuning" in tex
    data = json.loads((out / "report.json").read_text())
    assert len(data["table2"]) == 6 and data["tests"][0]["test"] == "wilcoxon"
    assert (out / "plots" / "means_ci.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_terminal_tables_and_simulated_banner_without_config(files):
    tmp_path, rows = files
    rows[5]["simulated"] = 1
    write_ratings_csv(tmp_path / "ratings.csv", rows)
    res = run("--ratings", str(tmp_path / "ratings.csv"), "--out", str(tmp_path / "rep"), "--no-plots")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("**SIMULATED RATINGS.** 1 of the rating rows")
    assert "Table 2: human evaluation, mean (SD)" in res.output and "| Persona      | (a) Prompt-tuning" in res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "> **SIMULATED RATINGS.**" in md.splitlines()[2]
    assert not (tmp_path / "rep" / "plots").exists()


def test_japanese_experiment_numbers_tables_7_and_8(files):
    tmp_path, _ = files
    cfg = tmp_path / "ja.toml"
    cfg.write_text(f'[experiment]\nname = "ja"\nlanguage = "ja"\nruns_dir = "{tmp_path / "runs"}"\n', encoding="utf-8")
    res = run("--config", str(cfg), "--ratings", str(tmp_path / "ratings.csv"), "--no-plots", "-q")
    assert res.exit_code == 0, res.output
    tables = tmp_path / "runs" / "ja" / "report" / "tables"
    assert (tables / "table7.md").exists() and (tables / "table8.csv").exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda rows: rows[3].update(score=7), "score: expected an integer from 1 to 5, got '7'"),
        (lambda rows: rows[3].update(aspect="humour"), "aspect: expected one of fluency"),
    ],
)
def test_bad_input_exits_2_and_keeps_old_report(files, mutate, message):
    tmp_path, rows = files
    out = tmp_path / "rep"
    assert run("--ratings", str(tmp_path / "ratings.csv"), "--out", str(out), "--no-plots", "-q").exit_code == 0
    before = (out / "report.md").read_bytes()
    mutate(rows)
    write_ratings_csv(tmp_path / "bad.csv", rows)
    res = CliRunner().invoke(main, ["report", "--ratings", str(tmp_path / "bad.csv"), "--out", str(out), "-q"])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert (out / "report.md").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".rep")) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ratings", "a.csv", "--batch-csv", "b.csv", "--out", "o"], "expected one ratings source, got both"),
        (["--ratings", "a.csv"], "--out: expected an output directory"),
        ([], "--config: expected an experiment config"),
        (["--ratings", "missing.csv", "--out", "o"], "missing.csv: file not found"),
    ],
)
def test_bad_arguments(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.csv").write_text("x\n")
    (tmp_path / "b.csv").write_text("x\n")
    res = CliRunner().invoke(main, ["report", *args])
    assert res.exit_code == 2 and message in res.output


def test_bad_report_config_values(files):
    tmp_path, _ = files
    cfg = write_config(tmp_path, "alpha = 1.5\n")
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--ratings", str(tmp_path / "ratings.csv")])
    assert res.exit_code == 2 and "report.alpha: expected a number between 0 and 1, got 1.5" in res.output


# --------------------------------------------------------------------------------------------------
# The ledger, and the ledger exported as a batch CSV by `collect --export-csv`


def _ledger_submissions(cfg):
    from mturk_eval.ledger import Ledger, ledger_path

    with Ledger.open(ledger_path(cfg, "local")) as led:
        return led.submissions()


def _fill_ledger(cfg_path: Path, rows):
    from mturk_eval.config import load_config
    from mturk_eval.ledger import Ledger, ledger_path

    cfg = load_config(cfg_path)
    responses = {r["item_id"]: r for r in responses_for(rows)}
    check = {"item_id": "attn.0", "persona_id": "p1", "persona": ["i like tea."], "eval_set": "persona",
             "pair_id": "q0", "method": "attention_check", "model": "attention_check", "utterance": "hello",
             "response": "zzz", "attention_check": {"aspects": {"fluency": 2}, "kind": "garbled"}}
    scores: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        scores.setdefault((r["worker_id"], r["item_id"]), {})[r["aspect"]] = r["score"]
    with Ledger.open(ledger_path(cfg, "local")) as led:
        led.bind("exp", "local")
        hits = [{"task_key": f"k{i}", "batch": "b1", "request_token": f"t{i}", "annotation": "b1",
                 "places": 5, "reward": "0.05", "item_ids": [iid, "attn.0"]}
                for i, iid in enumerate(responses)]
        led.add_plan([*responses.values(), check], hits)
        for i, iid in enumerate(responses):
            led.record_created(f"k{i}", f"HIT{i}", "TYPE1", "GROUP1")
        n = 0
        for (worker, iid), sc in scores.items():
            i = list(responses).index(iid)
            n += 1
            failed = worker == "AW3"  # this worker always fails the check
            check_scores = {a: (5 if failed else 1) for a in ASPECTS}
            fields = {f"i0_{a}": str(v) for a, v in sc.items()} | {f"i1_{a}": str(v) for a, v in check_scores.items()}
            fields["mturk_eval_simulated"] = "1"  # what the simulated workers' form adds
            xml = f'<QuestionFormAnswers xmlns="{QFA}">' + "".join(
                f"<Answer><QuestionIdentifier>{k}</QuestionIdentifier><FreeText>{v}</FreeText></Answer>"
                for k, v in fields.items()) + "</QuestionFormAnswers>"
            led.store_submission(submission_id=f"ASG{n}", task_id=f"HIT{i}", rater_id=worker, status="Submitted",
                                 accept_time=1000.0, submit_time=1000.0 + 30 + n % 7, raw_answer=xml,
                                 scores={0: sc, 1: check_scores}, error=None, simulated=True,
                                 attention_passed=not failed, fields=fields)
    return cfg


def test_report_from_ledger_and_from_its_batch_csv_export_agree(files):
    tmp_path, rows = files
    cfg_path = write_config(tmp_path)
    cfg = _fill_ledger(cfg_path, rows)
    run_dir = tmp_path / "runs" / "exp"
    write_jsonl(run_dir / "responses.jsonl", responses_for(rows))
    res = run("--config", str(cfg_path), "-q", "--no-plots")
    assert res.exit_code == 0, res.output
    led = json.loads((run_dir / "report" / "report.json").read_text())
    assert led["simulated_rows"] > 0
    # Rater ids leave the machine as pseudonyms made with the experiment's key (mturk_eval/privacy.py).
    pseudonym = Pseudonymiser.for_run(run_dir).rater("AW3")
    assert led["workers"]["excluded_workers"][0]["worker_id"] == pseudonym
    assert led["privacy"]["rater_ids"] == "pseudonymised" and led["privacy"]["key"] == "experiment"
    import pandas as pd

    real = {a.rater_id for a in _ledger_submissions(cfg)} | {a.submission_id for a in _ledger_submissions(cfg)}
    assert real and all(i.startswith(("AW", "ASG")) for i in real)
    checked = set()
    for f in (run_dir / "report").rglob("*"):
        if f.is_file() and f.suffix in (".md", ".json", ".csv", ".tex"):
            text = f.read_text()
            assert not any(f"AW{w}" in text for w in range(12)) and "ASG" not in text, f
            checked.add(f.name)
        elif f.is_file() and f.suffix == ".parquet":   # compressed: read back, every cell of every column
            df = pd.read_parquet(f)
            cells = {str(v) for col in df.columns for v in df[col].unique()}
            assert not cells & real and not any(c.startswith(("AW", "ASG")) for c in cells), f
            assert set(df["worker_id"]) <= {Pseudonymiser.for_run(run_dir).rater(r) for r in real}
            checked.add(f.name)
    assert {"ratings.parquet", "workers.csv", "report.json", "report.md"} <= checked
    assert led["counts"]["attention_check_rows"] == len(rows)

    from mturk_eval.platforms.mturk.batch_export import batch_rows
    from mturk_eval.analysis.batch_csv import write_batch_csv
    from mturk_eval.ledger import Ledger, ledger_path

    with Ledger.open(ledger_path(cfg, "local")) as ledger:
        write_batch_csv(tmp_path / "export.csv", batch_rows(cfg, ledger))
    res = run("--config", str(cfg_path), "--batch-csv", str(tmp_path / "export.csv"), "--out",
              str(tmp_path / "from_csv"), "-q", "--no-plots")
    assert res.exit_code == 0, res.output
    csv_rep = json.loads((tmp_path / "from_csv" / "report.json").read_text())
    assert csv_rep["table2"] == led["table2"]
    assert csv_rep["table3"] == led["table3"]
    assert csv_rep["counts"]["used_rows"] == led["counts"]["used_rows"]
    assert csv_rep["workers"]["excluded_workers"] == led["workers"]["excluded_workers"]
    assert csv_rep["simulated_rows"] == led["simulated_rows"]


def test_no_ledger_is_a_clear_error(tmp_path):
    cfg = write_config(tmp_path)
    res = CliRunner().invoke(main, ["report", "--config", str(cfg)])
    assert res.exit_code == 2 and "expected a ledger (ledger.<target>.sqlite), got none" in res.output


def test_several_ledgers_need_a_target(files):
    tmp_path, rows = files
    cfg_path = write_config(tmp_path)
    _fill_ledger(cfg_path, rows)
    run_dir = tmp_path / "runs" / "exp"
    (run_dir / "ledger.local.sqlite").rename(run_dir / "ledger.sandbox.sqlite")
    _fill_ledger(cfg_path, rows[: len(rows) // 2])
    res = CliRunner().invoke(main, ["report", "--config", str(cfg_path), "-q"])
    assert res.exit_code == 2 and "found several ledgers (ledger.sandbox.sqlite, ledger.local.sqlite)" in res.output
    res = CliRunner().invoke(main, ["report", "--config", str(cfg_path), "--target", "sandbox", "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    data = json.loads((run_dir / "report" / "report.json").read_text())
    # The sandbox ledger holds every row; AW3 fails every attention check and is left out.
    assert data["counts"]["used_rows"] == sum(r["worker_id"] != "AW3" for r in rows)


def test_duplicate_warning_reaches_stderr_and_report(files):
    tmp_path, rows = files
    write_ratings_csv(tmp_path / "dup.csv", rows + rows[:4])
    res = run("--ratings", str(tmp_path / "dup.csv"), "--out", str(tmp_path / "rep"), "--no-plots")
    assert res.exit_code == 0
    assert "warning: 4 duplicate rating(s)" in res.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Data warnings" in md and "4 duplicate rating(s)" in md


def test_report_from_ledger_counts_bonuses_and_total_cost(files):
    """From the ledger the workers section adds paid bonuses to the hourly pay and gives the total spend:
    rewards + bonuses + MTurk fees (20% of each, at least one cent), with unreviewed work apart."""
    from mturk_eval.config import load_config
    from mturk_eval.ledger import Ledger, ledger_path

    tmp_path, rows = files
    cfg_path = write_config(tmp_path)
    _fill_ledger(cfg_path, rows)
    with Ledger.open(ledger_path(load_config(cfg_path), "local")) as led:
        asg = led.submissions()
        for a in asg[:10]:
            led.set_submission_status(a.submission_id, "Approved")
        led.set_submission_status(asg[10].submission_id, "Rejected")
        for k, a in enumerate(asg[:4]):
            led.add_bonus(f"bt{k}", a.submission_id, a.rater_id, "0.50", "thanks")
            if k < 3:
                led.mark_bonus_paid(f"bt{k}")
        n = len(asg)
    res = run("--config", str(cfg_path), "-q", "--no-plots")
    assert res.exit_code == 0, res.output
    rep = tmp_path / "runs" / "exp" / "report"
    cost = json.loads((rep / "report.json").read_text())["workers"]["cost"]
    # 10 approved x ($0.05 + $0.01 fee), 3 paid bonuses x ($0.50 + $0.10 fee)
    assert cost == {"currency": "USD", "fee_label": "MTurk fees", "submissions_word": "assignments",
                    "approved_assignments": 10, "rewards": 0.5, "bonuses_paid": 3, "bonuses": 1.5,
                    "fees": 0.4, "total": 2.4, "submitted_assignments": n - 11,
                    "submitted_cost": pytest.approx(0.06 * (n - 11)), "bonuses_pending": 1,
                    "bonuses_pending_cost": 0.6, "rejected_assignments": 1}
    md = (rep / "report.md").read_text()
    assert "- Total cost: $2.40 = rewards $0.50 (10 approved assignments) + bonuses $1.50 (3 paid) + MTurk fees $0.40" in md
    assert "1 pending bonuses ($0.60 with fees)" in md
    assert "; with bonuses (" in md
    # a ratings file knows no bonuses: said so
    res = run("--ratings", str(tmp_path / "ratings.csv"), "--out", str(tmp_path / "o"), "-q", "--no-plots")
    assert res.exit_code == 0, res.output
    assert "bonuses not included" in (tmp_path / "o" / "report.md").read_text()

"""status, collect, review and expire with --batch: only that batch's HITs and assignments; the default
(every batch) says which batches it covered; an unknown or malformed label is a one-line error (exit 2,
nothing written)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from helpers.mturk import FakeMTurk, make_cfg, write_responses
from mturk_eval.actions import collect as col_mod
from mturk_eval.actions import expire as ex_mod
from mturk_eval.actions import publish as pub
from mturk_eval.actions import review as rv_mod
from mturk_eval.actions import status as st_mod
from mturk_eval.cli import main
from mturk_eval.ledger import Ledger, ledger_path

GOOD = {"fluency": 4, "engagingness": 3, "relevance": 5, "persona": 2}


class RecordingMTurk(FakeMTurk):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def task_state(self, task_id):
        self.calls.append(("task_state", task_id))
        return super().task_state(task_id)

    def list_submissions(self, task_id):
        self.calls.append(("list_submissions", task_id))
        return super().list_submissions(task_id)

    def expire(self, task_id):
        self.calls.append(("expire", task_id))

    def approve(self, assignment_id, feedback=None):
        self.calls.append(("approve", assignment_id))


@pytest.fixture
def two_batches(tmp_path, monkeypatch):
    """One item published as batch ``main`` and again as ``b2`` (two HITs), one stored assignment each."""
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 1)
    fake = FakeMTurk()
    for batch in ("main", "b2"):
        pub.publish(cfg, responses, platform=fake, batch=batch, echo=lambda s: None, progress=False)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        hits = {h.batch: h.hit_id for h in led.hits()}
        for batch, aid in (("main", "3AMAIN"), ("b2", "3AB2")):
            led.store_assignment(assignment_id=aid, hit_id=hits[batch], worker_id="AW1", status="Submitted",
                                 accept_time=1.0, submit_time=2.0, answer_xml="<x/>", scores={0: GOOD}, error=None,
                                 simulated=False, attention_passed=None)
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n')
    plat = RecordingMTurk()
    for mod in (col_mod, ex_mod, rv_mod, st_mod):
        monkeypatch.setattr(mod, "make_platform", lambda *a, **k: plat)
    return cfg, str(conf), hits, plat


def _run(args):
    return CliRunner().invoke(main, args)


def test_status_counts_only_the_batch_given(two_batches):
    cfg, conf, hits, plat = two_batches
    r = _run(["status", "--config", conf, "--offline"])
    assert r.exit_code == 0, r.output
    assert "target: sandbox; batches: b2, main (all)" in r.output and "HITs (ledger): created 2" in r.output
    assert "assignments collected: 2 (Submitted 2)" in r.output
    r = _run(["status", "--config", conf, "--batch", "b2"])
    assert r.exit_code == 0, r.output
    assert "batches: b2 (of b2, main)" in r.output and "HITs (ledger): created 1" in r.output
    assert "assignments collected: 1 (Submitted 1)" in r.output
    assert plat.calls == [("task_state", hits["b2"])]


def test_collect_only_the_batch_given(two_batches, tmp_path):
    cfg, conf, hits, plat = two_batches
    out = tmp_path / "b2.csv"
    r = _run(["collect", "--config", conf, "--batch", "b2", "--no-progress", "--export-csv", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("batches: b2 (of b2, main)\n1 HITs:")
    assert plat.calls == [("list_submissions", hits["b2"])]
    text = out.read_text(encoding="utf-8")
    assert "3AB2" in text and "3AMAIN" not in text
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        # A collect of one batch does not claim every batch was collected.
        assert led.get_meta(col_mod.COLLECTED_THROUGH) is None
        assert led.get_meta(col_mod.collected_through_key("b2")) is not None
    plat.calls.clear()
    r = _run(["collect", "--config", conf, "--no-progress"])
    assert r.exit_code == 0 and r.output.startswith("batches: b2, main (all)\n2 HITs:"), r.output
    assert sorted(plat.calls) == sorted([("list_submissions", hits["b2"]), ("list_submissions", hits["main"])])


def test_review_only_the_batch_given(two_batches):
    cfg, conf, hits, plat = two_batches
    r = _run(["review", "--config", conf, "--batch", "main"])
    assert r.exit_code == 0, r.output
    assert "would  approve 3AMAIN" in r.output and "3AB2" not in r.output
    assert "batches: main (of b2, main)" in r.output and "approve 1" in r.output
    r = _run(["review", "--config", conf, "--batch", "b2", "--apply"])
    assert r.exit_code == 0, r.output
    assert plat.calls == [("approve", "3AB2")]
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert {a.assignment_id: a.status for a in led.assignments()} == {"3AMAIN": "Submitted", "3AB2": "Approved"}
    r = _run(["review", "--config", conf])
    assert "batches: b2, main (all)" in r.output and "would  approve 3AMAIN" in r.output


def test_expire_only_the_batch_given(two_batches):
    cfg, conf, hits, plat = two_batches
    r = _run(["expire", "--config", conf, "--batch", "b2", "--delete", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert hits["b2"] in r.output and hits["main"] not in r.output
    assert r.output.startswith("batches: b2 (of b2, main)\n")
    r = _run(["expire", "--config", conf, "--batch", "b2"])
    assert r.exit_code == 0 and "1 HITs expired" in r.output, r.output
    assert ("expire", hits["b2"]) in plat.calls and ("expire", hits["main"]) not in plat.calls
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert {h.batch: h.state for h in led.hits()} == {"main": "created", "b2": "expired"}
    r = _run(["expire", "--config", conf, "--dry-run"])
    assert r.output.startswith("batches: b2, main (all)\n") and hits["main"] in r.output, r.output


def test_repeated_batch_selects_both(two_batches):
    cfg, conf, hits, plat = two_batches
    r = _run(["status", "--config", conf, "--offline", "--batch", "main", "--batch", "b2"])
    assert r.exit_code == 0 and "batches: b2, main (all)" in r.output and "created 2" in r.output, r.output


def _snapshot(root):
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("verb", [["status"], ["status", "--offline"], ["collect", "--no-progress"], ["review"],
                                  ["review", "--apply"], ["expire"], ["expire", "--delete", "--dry-run"]],
                         ids=" ".join)
@pytest.mark.parametrize("label, needle", [
    ("nope", "--batch: 'nope' is not a batch of "),
    ("my batch", "--batch: expected 1-40 characters of [A-Za-z0-9_.-], got 'my batch'"),
    ("x" * 41, "--batch: expected 1-40 characters of [A-Za-z0-9_.-]"),
], ids=["unknown", "space", "too_long"])
def test_bad_batch_is_one_line_exit_2_nothing_written(two_batches, tmp_path, verb, label, needle):
    cfg, conf, hits, plat = two_batches
    before = _snapshot(tmp_path)
    r = _run([*verb, "--config", conf, "--batch", "main", "--batch", label])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.output.startswith("Error: ") and r.output.strip().count("\n") == 0, r.output
    assert needle in r.output and "Traceback" not in r.output
    if label == "nope":
        assert r.output.rstrip().endswith("; known batches: b2, main")
    assert _snapshot(tmp_path) == before
    assert plat.calls == []


def test_help_mentions_batch():
    for verb in ("status", "collect", "review", "expire"):
        h = _run([verb, "--help"]).output
        assert "--batch LABEL" in h and "default every batch" in h, verb

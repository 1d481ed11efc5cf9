"""End to end through the CLI: data build -> generate (tiny-random) -> publish to the local sandbox ->
simulated workers -> collect -> review -> report, checking what each step leaves behind."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from helpers.generators import tiny_config_text
from helpers.sandbox import client, sandbox_server
from mturk_eval.cli import main

pytestmark = pytest.mark.slow


SECRET = "SECRETKEYMARKER0123456789abcdefghijklmnop"
OUTPUTS: list[str] = []


def run(*args: str) -> str:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, f"mturk-eval {' '.join(args)}:\n{r.output}"
    OUTPUTS.append(r.output)  # stdout and stderr together (click >= 8.2)
    return r.output


def test_whole_study_on_the_local_sandbox(tmp_path, monkeypatch):
    # real-looking credentials in the environment must never reach any output, file or the server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAMARKERMARKER0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    cfg = tmp_path / "exp.toml"
    text = tiny_config_text(name="e2e", runs_dir=str(tmp_path / "runs")).replace("num_personas = 2", "num_personas = 1")
    cfg.write_text(text + """
[hit]
assignments_per_hit = 3
items_per_hit = 2
attention_check_rate = 0.25
publish_rate = 1000.0

[report]
bootstrap_samples = 100
""")
    c = str(cfg)
    run("data", "build", "--config", c)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a busy 2-core machine: extra threads only spin (8x slower)
    try:
        run("generate", "--config", c, "--quiet", "--method", "prompt_tuning", "--method", "finetune_none")
    finally:
        torch.set_num_threads(threads)
    responses = [json.loads(x) for x in (tmp_path / "runs" / "e2e" / "responses.jsonl").read_text().splitlines()]
    assert {r["method"] for r in responses} == {"prompt_tuning", "finetune_none"}

    with sandbox_server(tmp_path / "sandbox.sqlite") as srv:
        out = run("publish", "--config", c, "--endpoint-url", srv.url, "--no-progress")
        assert "cost of this run" in out
        mturk = client(srv.url)
        hits = [h for p in mturk.get_paginator("list_hits").paginate() for h in p["HITs"]]
        n_hits = len(hits)
        assert n_hits == srv.store.counts()["hits"] > 0
        # the HTML workers see holds no hidden truth: no method, model or attention-check marker
        for h in hits:
            assert "prompt_tuning" not in h["Question"] and "finetune" not in h["Question"]
            assert "tiny-random" not in h["Question"] and "attention" not in h["Question"].lower()

        out = run("sandbox", "simulate", "--config", c, "--endpoint", srv.url, "--workers", "6",
                  "--careless-share", "0.34", "--seed", "4", "--no-progress")
        assert f"{3 * n_hits} simulated assignments submitted by 6 workers (2 careless)" in out
        out = run("collect", "--config", c, "--endpoint-url", srv.url, "--no-progress")
        assert f"{3 * n_hits} new assignments" in out and f"{3 * n_hits} simulated" in out
        out = run("review", "--config", c, "--endpoint-url", srv.url, "--reject-failed-attention", "--apply")
        statuses = [a["AssignmentStatus"] for h in hits
                    for a in mturk.list_assignments_for_hit(HITId=h["HITId"])["Assignments"]]
        assert len(statuses) == 3 * n_hits and "Submitted" not in statuses
        # rerunning review changes nothing on the server
        run("review", "--config", c, "--endpoint-url", srv.url, "--reject-failed-attention", "--apply")
        assert statuses == [a["AssignmentStatus"] for h in hits
                            for a in mturk.list_assignments_for_hit(HITId=h["HITId"])["Assignments"]]

    out = run("report", "--config", c, "--target", "local", "--no-plots")
    report = (tmp_path / "runs" / "e2e" / "report" / "report.md").read_text()
    assert "SIMULATED RATINGS" in report.split("\n\n")[0] + report.split("\n\n")[1]
    assert "Prompt-tuning" in out and "Fine-tuning (none)" in out
    # nothing secret anywhere: every command's output, every file the run left
    assert OUTPUTS and not any(SECRET in o or "AKIAMARKERMARKER0000" in o for o in OUTPUTS)
    for f in tmp_path.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert SECRET.encode() not in data and b"AKIAMARKERMARKER0000" not in data, f

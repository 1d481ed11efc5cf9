"""The real boto3 code path against the local MTurk-compatible server (mturk_eval.emulators): the whole
workflow with simulated workers, lost responses (botocore retries + HitAlreadyExists recovery), and a
publish killed by SIGKILL mid-run and resumed: exactly one HIT per item on the server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.mturk import make_cfg, write_responses
from mturk_eval.actions import collect, expire, publish, review, status
from mturk_eval.ledger import Ledger, ledger_path
from mturk_eval.platforms.mturk.client import make_client

sandbox_server = pytest.importorskip("mturk_eval.emulators.server")
faults_mod = pytest.importorskip("mturk_eval.emulators.faults")
simulate_mod = pytest.importorskip("mturk_eval.emulators.simulate")


def _server_hits(url):
    c = make_client("local", url)
    hits, params = [], {"MaxResults": 100}
    while True:
        r = c.list_hits(**params)
        hits += r["HITs"]
        if not r.get("NextToken") or not r["HITs"]:
            return hits
        params["NextToken"] = r["NextToken"]


def _exactly_once(cfg, url, n_items):
    server = _server_hits(url)
    with Ledger.open(ledger_path(cfg, "local")) as led:
        hs = led.hits()
        ids = [i for h in hs for i in h.item_ids]
        assert len(ids) == len(set(ids)) == n_items
        assert all(h.state == "created" for h in hs)
        assert sorted(h.hit_id for h in hs) == sorted(h["HITId"] for h in server)
    assert len({h["RequesterAnnotation"] for h in server}) == len(server)


def test_whole_workflow_against_the_local_server(tmp_path):
    cfg = make_cfg(tmp_path, items_per_hit=2, attention_check_rate=0.2, publish_concurrency=3)
    responses = write_responses(tmp_path / "r.jsonl", 8)
    srv = sandbox_server.start_server(":memory:")
    try:
        url = srv.url
        res = publish.publish(cfg, responses, target="local", endpoint_url=url, echo=lambda s: None, progress=False)
        assert res.created == 5 and res.preview_url.startswith(url + "/mturk/preview?groupId=")
        with Ledger.open(ledger_path(cfg, "local")) as led:
            sim = simulate_mod.simulate(url, workers=5, seed=1, items_of=simulate_mod.ledger_items(led), progress=False)
        assert sim.submitted == 25
        c = collect.collect(cfg, target="local", endpoint_url=url, progress=False, export_csv=tmp_path / "b.csv")
        assert (c.new, c.invalid, c.simulated) == (25, 0, 25)
        assert collect.collect(cfg, target="local", endpoint_url=url, progress=False).new == 0
        acts = review.review(cfg, target="local", endpoint_url=url, apply=True, bonus="0.02", bonus_reason="thanks")
        assert sum(a.kind == "approve" and a.done for a in acts) == 25
        assert sum(a.kind == "bonus" and a.done for a in acts) == 25
        assert not [a for a in review.review(cfg, target="local", endpoint_url=url, apply=True, bonus="0.02",
                                             bonus_reason="thanks") if a.kind != "skip"]
        rep = status.status(cfg, target="local", endpoint_url=url)
        assert rep.assignments_by_status == {"Approved": 25} and str(rep.cost_so_far) == "2.25"
        assert [o.action for o in expire.expire(cfg, target="local", endpoint_url=url)] == ["expired"] * 5
        assert [o.action for o in expire.expire(cfg, target="local", endpoint_url=url, delete=True)] == ["deleted"] * 5
        with Ledger.open(ledger_path(cfg, "local")) as led:
            rows = led.ratings()
        assert len(rows) == 25 * 2 * 4 and {r["simulated"] for r in rows} == {1}
        assert {r["status"] for r in rows} == {"Approved"}
    finally:
        srv.stop()


def test_lost_responses_are_retried_and_recovered(tmp_path):
    """The server creates the HIT but drops the connection: botocore retries the same token and the
    server answers HitAlreadyExists, which publish turns back into the HIT id."""
    cfg = make_cfg(tmp_path, publish_concurrency=2)
    responses = write_responses(tmp_path / "r.jsonl", 12)
    faults = faults_mod.FaultConfig(drop_after_rate=0.3, throttle_rate=0.2, seed=3,
                                    operations=["CreateHITWithHITType"])
    srv = sandbox_server.start_server(":memory:", faults=faults)
    try:
        res = publish.publish(cfg, responses, target="local", endpoint_url=srv.url, echo=lambda s: None,
                              progress=False)
        assert res.created + res.recovered == 12 and res.recovered >= 1
        _exactly_once(cfg, srv.url, 12)
    finally:
        srv.stop()


def test_sigkill_mid_publish_then_resume(tmp_path, repo_root):
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n'
                    "[hit]\npublish_concurrency = 2\npublish_rate = 50.0\n")
    responses = write_responses(tmp_path / "r.jsonl", 16)
    faults = faults_mod.FaultConfig(latency_s=0.15, operations=["CreateHITWithHITType"])
    srv = sandbox_server.start_server(":memory:", faults=faults)
    cfg = make_cfg(tmp_path)
    cmd = [sys.executable, "-m", "mturk_eval", "publish", "--config", str(conf), "--responses", str(responses),
           "--endpoint-url", srv.url, "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    try:
        proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        created = 0
        while time.time() < deadline and created < 4:
            time.sleep(0.05)
            if ledger_path(cfg, "local").exists():
                try:
                    with Ledger.open(ledger_path(cfg, "local")) as led:
                        created = len(led.hits(state="created"))
                except Exception:
                    pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with Ledger.open(ledger_path(cfg, "local")) as led:
            left = len(led.hits(state="pending"))
        assert 0 < left < 16
        out = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        _exactly_once(cfg, srv.url, 16)
    finally:
        srv.stop()


def test_connection_lost_during_create_hit_leaves_the_ledger_resumable(tmp_path):
    """Every CreateHIT's connection is closed through all of botocore's retries: publish stops with one
    line, the HITs stay ``pending`` with their tokens, and the rerun once the endpoint answers again
    creates each HIT exactly once (test_publish.py: the same when the HIT was made before the loss)."""
    from mturk_eval.errors import UserError

    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    faults = faults_mod.FaultConfig(operations=["CreateHITWithHITType"], drop_rate=1.0)
    srv = sandbox_server.start_server(":memory:", faults=faults)
    try:
        with pytest.raises(UserError) as err:
            publish.publish(cfg, responses, target="local", endpoint_url=srv.url, echo=lambda s: None,
                            progress=False)
        msg = err.value.message
        assert msg.startswith("publishing HIT main/0000") and "failed: " + srv.url in msg
        assert ("cannot reach the MTurk endpoint (the connection was closed before an answer came;"
                " CreateHITWithHITType, 6 tries); 0 HITs created this run, 2 still pending in") in msg
        assert msg.endswith("run publish again to resume (no HIT is created twice)")
        with Ledger.open(ledger_path(cfg, "local")) as led:
            assert [h.state for h in led.hits()] == ["pending", "pending"]
        assert _server_hits(srv.url) == []
        srv.set_faults(faults_mod.FaultConfig())
        res = publish.publish(cfg, responses, target="local", endpoint_url=srv.url, echo=lambda s: None,
                              progress=False)
        assert (res.created, res.recovered) == (2, 0)
        _exactly_once(cfg, srv.url, 2)
    finally:
        srv.stop()

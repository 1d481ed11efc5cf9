"""Issue 8 under faults: publish, collect and review against the local sandbox with throttling, 5xx
errors, dropped connections (before and after the operation runs) and added latency, each process
SIGKILLed at >= 20 random points and rerun; then the server, the ledger and the money must agree.

The sandbox runs in this process (a thread), so its state can be read directly; each command runs as a
real ``python -m mturk_eval`` child process so that SIGKILL hits it wherever it is.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from helpers.sandbox import sandbox_server
from mturk_eval.config import load_config
from mturk_eval.ledger import Ledger, ledger_path
from mturk_eval.platforms.mturk import fees
from mturk_eval.emulators.faults import FaultConfig
from mturk_eval.emulators.simulate import RatingModel, ledger_items, simulate

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
N_ITEMS = 200
ASSIGNMENTS = 2
KILLS = 20
FAULTS = FaultConfig(throttle_rate=0.04, error_rate=0.03, drop_rate=0.02, drop_after_rate=0.03,
                     latency_s=0.002, latency_jitter_s=0.008, seed=11)
# collect and review make 3-4 times as many calls, each fault costing botocore's ~1 s backoff: the same
# kinds of fault at a third of the rate keep this file within its time budget.
FAULTS_LIGHT = FaultConfig(throttle_rate=0.015, error_rate=0.01, drop_rate=0.01, drop_after_rate=0.01,
                           latency_s=0.002, latency_jitter_s=0.008, seed=12)


def _responses(path: Path) -> Path:
    rows = []
    for i in range(N_ITEMS):
        method = ("prompt_tuning", "finetune_none", "finetune_added")[i % 3]
        rows.append({"item_id": f"persona.p1.p1-{i:04d}.{method}.tiny", "persona_id": "p1",
                     "persona": ["i like cats.", "i am a nurse."], "eval_set": "persona", "pair_id": f"p1-{i:04d}",
                     "method": method, "model": "tiny", "utterance": f"do you have pets? ({i})",
                     "response": f"yes, two cats. ({i})"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """An experiment of 200 items, a faulty sandbox, and the kill log shared by the tests below."""
    tmp = tmp_path_factory.mktemp("faults")
    cfg = tmp / "exp.toml"
    cfg.write_text(f"""
[experiment]
name = "faults"
seed = 5
runs_dir = "{tmp / 'runs'}"

[hit]
assignments_per_hit = {ASSIGNMENTS}
items_per_hit = 1
attention_check_rate = 0.05
publish_concurrency = 4
publish_rate = 1000.0
""")
    responses = _responses(tmp / "responses.jsonl")
    with sandbox_server(tmp / "sandbox.sqlite", faults=FAULTS) as srv:
        yield {"tmp": tmp, "cfg": cfg, "responses": responses, "srv": srv, "rng": random.Random(2026)}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mturk_eval", *args]


def _calls(srv, ops: tuple[str, ...]) -> int:
    return sum(srv.app.calls.get(op, 0) for op in ops)


def kill_loop(study, args: list[str], ops: tuple[str, ...], step: tuple[int, int], cumulative: bool) -> list:
    """Run ``args`` again and again, SIGKILLing each run at a random point, until KILLS kills are done.

    A kill point is a random number of successful server operations (``ops``, within ``step``) counted
    from the run's start, or (every fifth kill) a random moment during start-up and planning. ``cumulative``: progress carries over between
    runs (publish, review) rather than starting again (collect).
    """
    srv, rng = study["srv"], study["rng"]
    points = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    while len(points) < KILLS:
        base = _calls(srv, ops)
        # every fifth kill lands at a random moment of start-up (imports, planning, the first writes)
        target = 0 if len(points) % 5 == 4 else rng.randint(*step)
        proc = subprocess.Popen(_cmd(*args), cwd=study["tmp"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        started = time.monotonic()
        if target == 0:
            delay = rng.uniform(0.05, 1.0)
            while proc.poll() is None and time.monotonic() - started < delay:
                time.sleep(0.005)
        else:
            while proc.poll() is None and _calls(srv, ops) - base < target:
                if time.monotonic() - started > 120:
                    proc.kill()
                    raise AssertionError(f"{args[0]} made no progress for 120 s")
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.01))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            points.append((target, _calls(srv, ops) - base))
        else:
            err = proc.stderr.read().decode()
            assert proc.returncode == 0, f"{args[0]} failed by itself: {err}"
            if cumulative:
                break  # finished: nothing left to interrupt
    proc = subprocess.run(_cmd(*args), cwd=study["tmp"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    study.setdefault("final_output", {})[args[0]] = proc.stdout + proc.stderr
    return points


def test_publish_exactly_once_under_faults_and_kills(study):
    srv, cfg_path = study["srv"], study["cfg"]
    common = ["--config", str(cfg_path), "--responses", str(study["responses"]), "--endpoint-url", srv.url,
              "--no-progress"]
    dry = subprocess.run(_cmd("publish", *common, "--dry-run"), cwd=study["tmp"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    shown = Decimal(re.search(r"total \$([0-9.]+)", dry.stdout).group(1))
    n_planned = int(re.search(r"(\d+) new HITs planned", dry.stdout).group(1))
    assert n_planned > N_ITEMS  # the items plus attention checks

    # small steps: publish is cumulative, so 20 kills must land before its ~210 HITs are all created
    points = kill_loop(study, ["publish", *common], ("CreateHITWithHITType",), (1, 3), cumulative=True)
    assert len(points) >= KILLS, points
    assert sum(1 for t, _ in points if t == 0) >= 1 and len({got for _, got in points}) > 5
    assert sum(srv.app.faults.counts.values()) > 10, srv.app.faults.counts

    cfg = load_config(cfg_path)
    with Ledger.open(ledger_path(cfg, "local"), create=False) as ledger:
        planned = ledger.hits()
        assert len(planned) == n_planned and all(h.state != "pending" and h.hit_id for h in planned)
        items = [iid for h in planned for iid in h.item_ids]
        response_ids = {json.loads(x)["item_id"] for x in study["responses"].read_text().splitlines()}
        assert response_ids <= set(items) and len(items) == len(set(items))  # each item in exactly one HIT
        ledger_map = {h.hit_id: h.annotation for h in planned}
    with srv.store.lock:
        rows = srv.store.db.execute("SELECT id, annotation, max_assignments FROM hits").fetchall()
    server_map = {r["id"]: r["annotation"] for r in rows}
    assert server_map == ledger_map  # exactly one server HIT per planned HIT, the same ids
    assert len(set(server_map.values())) == len(server_map)
    spent = fees.estimate(len(rows), ASSIGNMENTS, cfg.hit.reward, False).total
    assert spent == shown and sum(r["max_assignments"] for r in rows) == ASSIGNMENTS * n_planned
    # a rerun now has nothing to do and shows no cost
    again = subprocess.run(_cmd("publish", *common), cwd=study["tmp"], capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to publish" in again.stdout
    assert srv.store.counts()["hits"] == n_planned


def test_collect_loses_nothing_under_faults_and_kills(study):
    srv, cfg_path = study["srv"], study["cfg"]
    if srv.store.counts()["hits"] == 0:
        pytest.skip("needs the publish test's HITs")
    cfg = load_config(cfg_path)
    with Ledger.open(ledger_path(cfg, "local"), create=False) as ledger:
        srv.set_faults(FaultConfig())
        res = simulate(srv.url, workers=ASSIGNMENTS + 1, model=RatingModel(careless_share=0.34), seed=9,
                       items_of=ledger_items(ledger), progress=False)
        srv.set_faults(FAULTS_LIGHT)
    n_hits = srv.store.counts()["hits"]
    assert res.submitted == ASSIGNMENTS * n_hits

    args = ["collect", "--config", str(cfg_path), "--endpoint-url", srv.url, "--no-progress"]
    points = kill_loop(study, args, ("ListAssignmentsForHIT",), (1, n_hits // 3), cumulative=False)
    assert len(points) >= KILLS
    with srv.store.lock:
        server = {r["id"]: r["answer"] for r in srv.store.db.execute("SELECT id, answer FROM assignments")}
    with Ledger.open(ledger_path(cfg, "local"), create=False) as ledger:
        stored = {a.assignment_id: a for a in ledger.assignments()}
        assert set(stored) == set(server)  # none lost, none invented
        for aid, a in stored.items():
            assert a.valid and a.simulated and ledger.answer_count(aid) == 4
            assert ledger.assignment_record(aid)["answer_xml"] == server[aid]
        assert len(ledger.ratings()) == 4 * len(server)
        study["failed_attention"] = sum(1 for a in stored.values() if a.attention_passed is False)


def test_review_approves_once_after_storing_and_pays_each_bonus_once(study):
    srv, cfg_path = study["srv"], study["cfg"]
    if srv.store.counts()["assignments"] == 0:
        pytest.skip("needs the collect test's assignments")
    args = ["review", "--config", str(cfg_path), "--endpoint-url", srv.url, "--apply", "--reject-failed-attention",
            "--bonus", "0.10", "--bonus-reason", "thank you"]
    points = kill_loop(study, args, ("ApproveAssignment", "RejectAssignment", "SendBonus"), (1, 30),
                       cumulative=True)
    assert len(points) >= KILLS
    cfg = load_config(cfg_path)
    with srv.store.lock:
        asg = {r["id"]: dict(r) for r in srv.store.db.execute("SELECT * FROM assignments")}
        bonuses = [dict(r) for r in srv.store.db.execute("SELECT * FROM bonuses")]
    with Ledger.open(ledger_path(cfg, "local"), create=False) as ledger:
        stored = {a.assignment_id: a for a in ledger.assignments()}
        for aid, a in asg.items():
            assert a["status"] in ("Approved", "Rejected"), a
            assert stored[aid].status == a["status"]
            rec = ledger.assignment_record(aid)
            # decided only after its answer was stored
            decided = a["approval_time"] if a["status"] == "Approved" else a["rejection_time"]
            assert decided >= rec["stored_at"]
            if a["status"] == "Rejected":
                assert stored[aid].attention_passed is False
    approved = {aid for aid, a in asg.items() if a["status"] == "Approved"}
    per_assignment = Counter(b["assignment_id"] for b in bonuses)
    assert set(per_assignment) == approved and max(per_assignment.values()) == 1  # no bonus paid twice
    assert all(b["amount"] == "0.10" for b in bonuses)
    assert len(asg) - len(approved) == study.get("failed_attention", len(asg) - len(approved))


def test_a_second_concurrent_run_is_refused_by_the_lock(study):
    srv, cfg_path = study["srv"], study["cfg"]
    if srv.store.counts()["hits"] == 0:
        pytest.skip("needs the publish test's HITs")
    srv.set_faults(FaultConfig(latency_s=0.05, operations=["ListAssignmentsForHIT"]))
    try:
        args = _cmd("collect", "--config", str(cfg_path), "--endpoint-url", srv.url, "--no-progress")
        first = subprocess.Popen(args, cwd=study["tmp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not _holds_lock(study, first.pid):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        second = subprocess.run(args, cwd=study["tmp"], capture_output=True, text=True)
        first.kill()
        first.wait()
    finally:
        srv.set_faults(FAULTS_LIGHT)
    assert second.returncode == 2
    assert "already running" in second.stderr and "Traceback" not in second.stderr


def _holds_lock(study, pid: int) -> bool:
    lock = study["tmp"] / "runs" / "faults" / ".lock.local"
    try:
        return json.loads(lock.read_text()).get("pid") == pid
    except (OSError, ValueError):
        return False

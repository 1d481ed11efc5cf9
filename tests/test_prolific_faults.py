"""Faults on Prolific: ``publish`` and ``review`` killed with SIGKILL at random points (24 times in all),
429 bursts, 5xx and dropped connections; a bonus whose payment outcome is unclear. Afterwards: one study
per batch, every approval once, every bonus paid once, and the money shown equal to the money spent."""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from mturk_eval.cli import main
from mturk_eval.emulators.prolific.participants import simulate_participants, store_items
from mturk_eval.ledger import Ledger
from mturk_eval.platforms.prolific import fees
from mturk_eval.platforms.prolific.records import Records
from mturk_eval.platforms.prolific.workflow import ledger_file
from tests.helpers.prolific import emulator, load, site_for, write_config, write_responses

REPO = Path(__file__).resolve().parent.parent
FORK = multiprocessing.get_context("fork")
KILLS_PER_VERB = 10  # 20 SIGKILLs in all, plus the second kills while resuming


def finish(tmp: Path, *args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def _run_cli(tmp: str, args: tuple[str, ...]) -> None:
    os.chdir(tmp)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    main(list(args))


def kill_at(tmp: Path, delay: float, *args: str) -> bool:
    """Run the CLI in a forked process (every module already imported, so it starts at once) and SIGKILL
    it after ``delay`` seconds, wherever it is."""
    p = FORK.Process(target=_run_cli, args=(str(tmp), args), daemon=True)
    p.start()
    time.sleep(delay)
    p.kill()  # SIGKILL: no cleanup of any kind
    p.join(timeout=30)
    return p.exitcode == -signal.SIGKILL  # False: it had finished before the kill


def bulk_dump(emu, cfg) -> tuple:
    bulks = [tuple(r) for r in emu.backend.db.execute("SELECT id, times_paid FROM bulk_bonuses")]
    with Ledger.open(ledger_file(cfg, True)) as ledger:
        return bulks, [(r["label"], r["bulk_id"], r["state"]) for r in Records(ledger.conn).bonuses()]


def settle_like_a_researcher(tmp: Path, emu, *args: str) -> str:
    """Rerun; when review stops on a bonus whose payment is unclear, look it up (here: in the emulator,
    for a researcher: on Prolific's site) and answer with --bonus-paid or --bonus-unpaid, as it says."""
    r = CliRunner().invoke(main, list(args))
    out = r.output
    if r.exit_code == 0:
        return out
    assert "was being paid when an earlier run stopped" in out, out
    bulk = out.split("bulk bonus ")[1].split()[0]
    time.sleep(0.5)  # as a researcher would wait: the killed run's last request may still be on its way
    row = emu.backend.db.execute("SELECT times_paid FROM bulk_bonuses WHERE id=?", (bulk,)).fetchone()
    return finish(tmp, *args, "--bonus-paid" if row["times_paid"] else "--bonus-unpaid", bulk)


@pytest.fixture
def world(tmp_path):
    fast = "retry_base_s = 0.01\nretry_cap_s = 0.1"
    cfg_path = write_config(tmp_path, k=2, per_task=2, extra=fast)
    cfg = load(tmp_path, k=2, per_task=2, extra=fast)
    responses = write_responses(tmp_path, 4)
    with emulator() as emu, site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox", "--api-url", emu.url]
        yield cfg, responses, emu, site, base


def spent(charges: list[dict], kind: str) -> Decimal:
    return sum((Decimal(str(c["rewards"] + c["fees"] + c["vat"])) for c in charges if c["kind"] == kind), Decimal(0))


def test_sigkill_publish_at_random_points_makes_one_study_per_batch(world, tmp_path):
    cfg, responses, emu, site, base = world
    pub = ["publish", *base, "--responses", str(responses), "--public-url", site.url]
    t0 = time.monotonic()
    finish(tmp_path, *pub, "--batch", "warm")
    full = time.monotonic() - t0
    emu.faults(latency_s=0.02)
    rng = random.Random(12)
    killed, i = 0, 0
    while killed < KILLS_PER_VERB:  # until that many runs were killed in progress (not after finishing)
        batch = f"k{i}"
        i += 1
        assert i <= 3 * KILLS_PER_VERB, f"only {killed} kills hit a run in progress"
        killed += kill_at(tmp_path, rng.uniform(0.0, full), *pub, "--batch", batch)
        if rng.random() < 0.5:  # sometimes a second kill while resuming
            killed += kill_at(tmp_path, rng.uniform(0.0, full), *pub, "--batch", batch)
        out = finish(tmp_path, *pub, "--batch", batch)
        assert "study " in out
    emu.faults()
    state = emu.state()
    names = [s["internal_name"] for s in state["studies"]]
    assert len(names) == len(set(names)) == i + 1  # one study per batch
    assert all(s["status"] == "ACTIVE" and s["total_available_places"] == 4 for s in state["studies"])
    publishes = [c for c in state["charges"] if c["kind"] == "publish"]
    assert len(publishes) == i + 1  # each study paid for once
    with Ledger.open(ledger_file(cfg, True)) as ledger:
        records = Records(ledger.conn).studies()
        assert sorted(r.study_id for r in records) == sorted(s["id"] for s in state["studies"])
        shown = sum(Decimal(str(r.shown_cost)) for r in records)
    assert shown == spent(state["charges"], "publish")  # money shown = money spent


def test_sigkill_review_at_random_points_approves_and_pays_once(world, tmp_path):
    cfg, responses, emu, site, base = world
    finish(tmp_path, "publish", *base, "--responses", str(responses), "--public-url", site.url)
    study_id = emu.state()["studies"][0]["id"]
    done = simulate_participants(emu.url, study_id, 4, seed=2, items_of=store_items(site.store))
    assert len(done.completed) == 4
    t0 = time.monotonic()
    finish(tmp_path, "collect", *base)
    full = 3 * (time.monotonic() - t0)  # about a review's length; the first kill may hit the approvals
    emu.faults(latency_s=0.02)
    rng = random.Random(7)
    labels: list[str] = []
    killed = 0
    while killed < KILLS_PER_VERB:
        label = f"l{len(labels)}"
        labels.append(label)
        assert len(labels) <= 3 * KILLS_PER_VERB, f"only {killed} kills hit a run in progress"
        killed += kill_at(tmp_path, rng.uniform(0.0, full), "review", *base, "--apply", "--bonus", "0.10",
                          "--bonus-label", label)
        settle_like_a_researcher(tmp_path, emu, "review", *base, "--apply", "--bonus", "0.10", "--bonus-label", label)
        assert len(emu.state()["bonus_payments"]) == 4 * len(labels), (label, bulk_dump(emu, cfg))
    emu.faults()
    state = emu.state()
    subs = [s for s in state["submissions"]]
    assert [s["status"] for s in subs] == ["APPROVED"] * 4
    approvals = [e["ref"] for e in state["events"] if e["kind"] == "approved"]
    assert sorted(approvals) == sorted(s["id"] for s in subs)  # every approval once
    per_sub: dict[str, int] = {}
    for p in state["bonus_payments"]:
        per_sub[p["submission_id"]] = per_sub.get(p["submission_id"], 0) + 1
    assert per_sub == {s["id"]: len(labels) for s in subs}  # every bonus paid exactly once
    assert spent(state["charges"], "bonus") == len(labels) * fees.bonus_cost([10] * 4).total  # shown = spent
    with Ledger.open(ledger_file(cfg, True)) as ledger:
        rows = Records(ledger.conn).bonuses()
        assert {r["state"] for r in rows} == {"paid"} and len(rows) == 4 * len(labels)


def test_429_bursts_5xx_and_drops_do_not_change_the_outcome(world, tmp_path):
    cfg, responses, emu, site, base = world
    emu.faults(throttle_rate=0.3, error_rate=0.1, drop_rate=0.1, drop_after_rate=0.1, seed=4)
    # Non-idempotent calls whose answer is lost are settled by asking the API (a rerun).
    for _ in range(6):
        r = CliRunner().invoke(main, ["publish", *base, "--responses", str(responses), "--public-url", site.url])
        if r.exit_code == 0:
            break
        assert "whether it was done is not known" in r.output or "connection was lost" in r.output, r.output
    else:
        pytest.fail("publish never finished under faults")
    assert len(emu.state()["studies"]) == 1
    emu.faults()
    study_id = emu.state()["studies"][0]["id"]
    simulate_participants(emu.url, study_id, 4, seed=3, items_of=store_items(site.store))
    emu.faults(throttle_rate=0.3, error_rate=0.1, drop_rate=0.1, drop_after_rate=0.1, seed=5)
    for _ in range(8):
        ok = all(CliRunner().invoke(main, [verb, *base, *extra]).exit_code == 0 for verb, extra in
                 (("collect", []), ("review", ["--apply", "--bonus", "0.20"])))
        if ok and {s["status"] for s in emu.state()["submissions"]} == {"APPROVED"}:
            break
    emu.faults()
    finish(tmp_path, "review", *base, "--apply", "--bonus", "0.20")
    state = emu.state()
    assert {s["status"] for s in state["submissions"]} == {"APPROVED"}
    assert sorted(p["submission_id"] for p in state["bonus_payments"]) == sorted(s["id"] for s in state["submissions"])
    assert state["fault_counts"]["throttle"] > 0 and state["fault_counts"]["drop_after"] > 0


def test_an_unclear_bonus_payment_stops_and_names_the_bonus(world, tmp_path):
    cfg, responses, emu, site, base = world
    finish(tmp_path, "publish", *base, "--responses", str(responses), "--public-url", site.url)
    study_id = emu.state()["studies"][0]["id"]
    simulate_participants(emu.url, study_id, 4, seed=4, items_of=store_items(site.store))
    finish(tmp_path, "collect", *base)
    emu.backend.bonus_delay_s = 600  # payments show up on submissions only minutes later
    emu.faults(drop_after_rate=1.0, operations=["pay-bonus-payments"])
    r = CliRunner().invoke(main, ["review", *base, "--apply", "--bonus", "0.50"])
    assert r.exit_code == 2 and "may or may not be paid" in r.output
    emu.faults()
    r = CliRunner().invoke(main, ["review", *base, "--apply", "--bonus", "0.50"])
    assert r.exit_code == 2 and "was being paid when an earlier run stopped" in r.output
    bulk = r.output.split("bulk bonus ")[1].split()[0]
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"--bonus-paid {bulk}" in errors[0]
    assert len(emu.state()["bonus_payments"]) == 4  # paid once, by the first run
    finish(tmp_path, "review", *base, "--apply", "--bonus", "0.50", "--bonus-paid", bulk)
    finish(tmp_path, "review", *base, "--apply", "--bonus", "0.50")
    assert len(emu.state()["bonus_payments"]) == 4
    # Minutes later the payments show; a crash in the same place is then settled by asking the API.
    emu.backend.advance_clock(601)
    emu.backend.bonus_delay_s = 0
    emu.faults(drop_after_rate=1.0, operations=["pay-bonus-payments"])
    CliRunner().invoke(main, ["review", *base, "--apply", "--bonus", "0.50", "--bonus-label", "second"])
    emu.faults()
    out = finish(tmp_path, "review", *base, "--apply", "--bonus", "0.50", "--bonus-label", "second")
    assert "found paid on Prolific" in out and len(emu.state()["bonus_payments"]) == 8

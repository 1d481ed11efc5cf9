"""publish: Stubber-checked calls, cost and budget checks, live confirmation, crash-resume (one HIT per
item), stale-pending recovery, concurrency within the configured limits, the experiment lock, the CLI."""
from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from helpers.mturk import (ANY, Crash, FakeMTurk, hit_id, hit_response, hit_shape, make_cfg, response_row, stubbed,
                           write_responses)
from mturk_eval.tasks import builder as hits_mod
from mturk_eval.actions import publish as pub
from mturk_eval.actions.common import experiment_lock
from mturk_eval.cli import main
from mturk_eval.errors import UserError
from mturk_eval.ledger import Ledger, ledger_path


def _quiet(*a, **k):
    pass


def _stub_start(stub, balance="10000.00", hit_type=True, cfg=None):
    stub.add_response("get_account_balance", {"AvailableBalance": balance}, {})
    if hit_type:
        stub.add_response("create_hit_type", {"HITTypeId": "3TYPE0000000000000001"}, {
            "AutoApprovalDelayInSeconds": cfg.hit.auto_approval_delay_s,
            "AssignmentDurationInSeconds": cfg.hit.assignment_duration_s, "Reward": cfg.hit.reward,
            "Title": cfg.hit.title, "Keywords": cfg.hit.keywords, "Description": cfg.hit.description})


def _create(stub, n, h, cfg):
    stub.add_response("create_hit_with_hit_type", hit_response(n, h.annotation), {
        "HITTypeId": "3TYPE0000000000000001", "MaxAssignments": cfg.hit.assignments_per_hit,
        "LifetimeInSeconds": cfg.hit.lifetime_s, "Question": ANY, "RequesterAnnotation": h.annotation,
        "UniqueRequestToken": h.request_token})


def _plan_for(cfg, responses, target="sandbox"):
    """The HITs publish will plan (computed with the same builder) to script the Stubber in order."""
    from mturk_eval.tasks import builder as hits
    items = hits.load_responses(responses)
    attn = hits.make_attention_checks(items, cfg.hit.attention_check_rate, cfg.seed, cfg.language, "main.0")
    plan = hits.plan_hits(items + attn, experiment=cfg.name, target=target, batch="main", seed=cfg.seed,
                          items_per_hit=cfg.hit.items_per_hit, max_assignments=cfg.hit.assignments_per_hit,
                          reward=cfg.hit.reward)

    class H:
        def __init__(self, d):
            self.__dict__.update(d)
    return [H(h) for h in plan]


def _one_hit_per_item(cfg, n_items, target="sandbox"):
    with Ledger.open(ledger_path(cfg, target)) as led:
        hs = led.hits()
        ids = [i for h in hs for i in h.item_ids]
        assert len(ids) == len(set(ids)) == n_items
        assert all(h.state == "created" and h.hit_id for h in hs)
        assert len({h.hit_id for h in hs}) == len(hs)
        return hs


def test_publish_with_stubber_records_everything(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "responses.jsonl", 3)
    plat, stub = stubbed()
    _stub_start(stub, cfg=cfg)
    for n, h in enumerate(_plan_for(cfg, responses), start=1):
        _create(stub, n, h, cfg)
    lines = []
    res = pub.publish(cfg, responses, platform=plat, echo=lines.append, progress=False)
    stub.assert_no_pending_responses()
    assert (res.created, res.recovered, res.planned) == (3, 0, 3)
    assert res.hit_type_id == "3TYPE0000000000000001"
    assert res.preview_url == "https://workersandbox.mturk.com/mturk/preview?groupId=3GROUP000000000000001"
    assert any("3 HITs x 5 assignments = 15 assignments at $0.05 + $0.01 MTurk fee each" in ln for ln in lines)
    assert any("total $0.90" in ln for ln in lines)
    hs = _one_hit_per_item(cfg, 3)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        items = led.hit_items(hs[0].hit_id)
        assert len(items) == 1 and items[0]["attention_check"] is None and items[0]["persona"]
    # A rerun publishes nothing (and makes no call but... none at all: nothing left to create).
    plat2, stub2 = stubbed()
    res2 = pub.publish(cfg, responses, platform=plat2, echo=_quiet, progress=False)
    assert (res2.created, res2.already) == (0, 3)
    stub2.assert_no_pending_responses()


def test_qualifications_reach_create_hit_type(tmp_path):
    from mturk_eval.config import QualificationConfig
    cfg = make_cfg(tmp_path, qualifications=[QualificationConfig(type="masters")])
    responses = write_responses(tmp_path / "r.jsonl", 1)
    plat, stub = stubbed()
    stub.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
    stub.add_response("create_hit_type", {"HITTypeId": "3TYPE0000000000000001"}, {
        "AutoApprovalDelayInSeconds": ANY, "AssignmentDurationInSeconds": ANY, "Reward": "0.05", "Title": ANY,
        "Keywords": ANY, "Description": ANY,
        "QualificationRequirements": [{"QualificationTypeId": "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6",
                                       "Comparator": "Exists", "ActionsGuarded": "DiscoverPreviewAndAccept"}]})
    _create(stub, 1, _plan_for(cfg, responses)[0], cfg)
    pub.publish(cfg, responses, platform=plat, echo=_quiet, progress=False)
    stub.assert_no_pending_responses()


def test_items_per_hit_and_attention_checks_are_in_the_ledger(tmp_path):
    cfg = make_cfg(tmp_path, items_per_hit=4, attention_check_rate=0.2)
    responses = write_responses(tmp_path / "r.jsonl", 8)
    fake = FakeMTurk()
    res = pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    assert res.created == 3  # 8 items + 2 checks = 10 -> 4 + 4 + 2
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        checks = [it for h in led.hits() for it in led.hit_items(h.hit_id) if it["attention_check"]]
        assert len(checks) == 2 and {c["attention_check"]["aspects"].popitem()[0] for c in checks} == {"fluency", "relevance"}
        assert sorted(len(h.item_ids) for h in led.hits()) == [2, 4, 4]


def test_cost_limits_and_balance(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 3)
    with pytest.raises(UserError, match=r"--max-cost: this run costs \$0.90, above the limit \$0.50"):
        pub.publish(cfg, responses, platform=FakeMTurk(), max_cost=0.5, echo=_quiet, progress=False)
    cfg.hit.max_cost = 0.5
    with pytest.raises(UserError, match="above the limit"):
        pub.publish(cfg, responses, platform=FakeMTurk(), echo=_quiet, progress=False)
    cfg.hit.max_cost = None
    plat, stub = stubbed()
    stub.add_response("get_account_balance", {"AvailableBalance": "0.50"}, {})
    with pytest.raises(UserError, match=r"account balance \$0.50 is below this run's cost \$0.90"):
        pub.publish(cfg, responses, platform=plat, echo=_quiet, progress=False)
    # Nothing was written by the refused runs: no ledger, no lock file, not even the run folder.
    assert not (tmp_path / "runs").exists()


def test_live_needs_yes_or_confirmation(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    asked = []
    with pytest.raises(UserError, match="live publishing not confirmed"):
        pub.publish(cfg, responses, target="live", platform=FakeMTurk(), echo=_quiet, progress=False,
                    confirm=lambda m: asked.append(m) or False)
    assert asked == ["Publish 2 HITs on LIVE MTurk for $0.60?"]
    with pytest.raises(UserError, match="not confirmed"):
        pub.publish(cfg, responses, target="live", platform=FakeMTurk(), echo=_quiet, progress=False)
    assert not (tmp_path / "runs").exists()  # the refusals left no ledger or lock file behind
    res = pub.publish(cfg, responses, target="live", platform=FakeMTurk(), echo=_quiet, progress=False,
                      confirm=lambda m: True)
    assert res.created == 2
    res = pub.publish(cfg, responses, target="live", platform=FakeMTurk(), echo=_quiet, progress=False, yes=True)
    assert res.created == 0 and res.already == 2
    assert not ledger_path(cfg, "sandbox").exists()  # targets never mix


def test_dry_run_writes_nothing(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    fake = FakeMTurk()
    res = pub.publish(cfg, responses, platform=fake, dry_run=True, echo=_quiet, progress=False)
    assert res.dry_run and res.cost.hits == 2 and fake.create_calls == 0
    assert not (tmp_path / "runs").exists()
    pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    write_responses(responses, 3)
    res = pub.publish(cfg, responses, platform=fake, dry_run=True, echo=_quiet, progress=False)
    assert (res.cost.hits, res.already) == (1, 2)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert len(led.hits()) == 2


def test_crash_between_calls_then_resume_with_stubber(tmp_path):
    """Killed right after MTurk created HIT 2 but before the ledger heard of it; the rerun sends the
    same token, gets HitAlreadyExists naming HIT 2, and creates only the rest: one HIT per item."""
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 4)
    plan = _plan_for(cfg, responses)
    plat, stub = stubbed()
    _stub_start(stub, cfg=cfg)
    _create(stub, 1, plan[0], cfg)
    _create(stub, 2, plan[1], cfg)
    real_publish = plat.publish
    calls = []

    def dying_publish(spec):
        calls.append(spec.request_token)
        result = real_publish(spec)
        if len(calls) == 2:
            raise Crash("SIGKILL")
        return result

    plat.publish = dying_publish
    with pytest.raises(Crash):
        pub.publish(cfg, responses, platform=plat, echo=_quiet, progress=False)
    stub.assert_no_pending_responses()
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert [h.state for h in led.hits()] == ["created", "pending", "pending", "pending"]
        assert led.hits()[1].first_attempt_at is not None

    plat2, stub2 = stubbed()
    stub2.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
    stub2.add_client_error(
        "create_hit_with_hit_type", "RequestError",
        f"There is already a HIT which exists with the same UniqueRequestToken: {hit_id(2)}", 400,
        modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists"},
        expected_params={"HITTypeId": "3TYPE0000000000000001", "MaxAssignments": 5, "LifetimeInSeconds": ANY,
                         "Question": ANY, "RequesterAnnotation": plan[1].annotation,
                         "UniqueRequestToken": plan[1].request_token})
    stub2.add_response("get_hit", hit_response(2, plan[1].annotation), {"HITId": hit_id(2)})
    _create(stub2, 3, plan[2], cfg)
    _create(stub2, 4, plan[3], cfg)
    res = pub.publish(cfg, responses, platform=plat2, echo=_quiet, progress=False)
    stub2.assert_no_pending_responses()
    assert (res.created, res.recovered, res.already) == (2, 1, 1)
    hs = _one_hit_per_item(cfg, 4)
    assert [h.hit_id for h in hs] == [hit_id(n) for n in (1, 2, 3, 4)]


@pytest.mark.parametrize("crash_after", [1, 3, 5])
def test_crash_at_any_point_with_concurrency_resumes_exactly_once(tmp_path, crash_after):
    cfg = make_cfg(tmp_path, publish_concurrency=3)
    responses = write_responses(tmp_path / "r.jsonl", 6)
    fake = FakeMTurk(crash_after=crash_after)
    with pytest.raises(Crash):
        pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    fake.crash_after = None
    pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    hs = _one_hit_per_item(cfg, 6)
    assert fake.created == 6 and {h.hit_id for h in hs} == set(fake.hits)


@pytest.mark.parametrize("changed, match", [
    ({"assignments_per_hit": 2}, r"hit.assignments_per_hit is 2 but 4 HITs left pending were planned with 12;"
                                 r" set hit.assignments_per_hit: 12 again .* new --batch"),
    ({"reward": "0.20"}, r"hit.reward is 0.20 but 4 HITs left pending were planned with 0.50;"
                         r" set hit.reward: 0.50 again .* new --batch"),
])
def test_resumed_pending_hits_refuse_a_changed_reward_or_assignment_count(tmp_path, changed, match):
    """Pending HITs are created with the ledger's MaxAssignments and reward: a config that changed either
    must not price the run with the new values (review: $4.80 shown, $33.60 spent)."""
    settings = dict(assignments_per_hit=12, items_per_hit=1, attention_check_rate=0.0, reward="0.50")
    cfg = make_cfg(tmp_path, **settings)
    responses = write_responses(tmp_path / "r.jsonl", 4)
    fake = FakeMTurk(crash_after=1)
    with pytest.raises(Crash):
        pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    cfg2 = make_cfg(tmp_path, **{**settings, **changed})
    fake.crash_after = None
    with pytest.raises(UserError, match=match):
        pub.publish(cfg2, responses, platform=fake, echo=_quiet, progress=False, max_cost=10.0)
    assert fake.created == 1
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert [h.state for h in led.hits()] == ["pending"] * 4
    # The original settings resume them, priced from the ledger rows: 4 x 12 x (0.50 + 0.20 fee).
    res = pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    assert str(res.cost.total) == "33.60" and {s.max_assignments for s in fake.hits.values()} == {12}
    _one_hit_per_item(cfg, 4)


def test_stale_pending_hits_are_found_by_annotation_before_reuse(tmp_path):
    """After 24 h MTurk forgets tokens: pending HITs first tried long ago are looked up with ListHITs."""
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    fake = FakeMTurk(crash_after=1)
    with pytest.raises(Crash):
        pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        led.conn.execute("UPDATE hits SET first_attempt_at = first_attempt_at - 2 * 86400")
        plan = led.hits()
    assert [h.state for h in plan] == ["pending", "pending"]
    plat, stub = stubbed()
    stub.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
    stub.add_response("list_hits", {"HITs": [hit_shape(5, plan[0].annotation)], "NumResults": 1},
                      {"MaxResults": 100})
    stub.add_response("create_hit_with_hit_type", hit_response(6, plan[1].annotation),
                      {"HITTypeId": "3TYPEFAKE", "MaxAssignments": 5, "LifetimeInSeconds": ANY,
                       "Question": ANY, "RequesterAnnotation": plan[1].annotation,
                       "UniqueRequestToken": plan[1].request_token})
    res = pub.publish(cfg, responses, platform=plat, echo=_quiet, progress=False)
    stub.assert_no_pending_responses()
    assert (res.recovered, res.created) == (1, 1)
    assert [h.hit_id for h in _one_hit_per_item(cfg, 2)] == [hit_id(5), hit_id(6)]


def test_permanent_error_leaves_the_ledger_consistent(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 3)
    plan = _plan_for(cfg, responses)
    plat, stub = stubbed()
    _stub_start(stub, cfg=cfg)
    _create(stub, 1, plan[0], cfg)
    stub.add_client_error("create_hit_with_hit_type", "RequestError", "Insufficient funds", 400,
                          modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.InsufficientFunds"})
    with pytest.raises(UserError, match=r"publishing HIT main/00001 failed: .*InsufficientFunds.*1 HITs created"
                                        r" this run, 2 still pending .*run publish again"):
        pub.publish(cfg, responses, platform=plat, echo=_quiet, progress=False)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        hs = led.hits()
        assert [h.state for h in hs] == ["created", "pending", "pending"]
        assert "InsufficientFunds" in led.conn.execute("SELECT error FROM hits WHERE hit_key='main/00001'").fetchone()[0]


class LostAnswers(FakeMTurk):
    """CreateHIT makes the HIT, then the endpoint goes away before the answer arrives (after botocore's
    retries): the platform layer's one-line EndpointUnreachable."""

    def __init__(self, lose_after: int):
        super().__init__()
        self.lose_after = lose_after

    def publish(self, spec):
        from mturk_eval.platforms.mturk.retry import EndpointUnreachable

        pub_ = super().publish(spec)
        if self.created >= self.lose_after:
            raise EndpointUnreachable("http://127.0.0.1:9: cannot reach the MTurk endpoint (read timeout;"
                                      " CreateHITWithHITType, 6 tries)", "check ...")
        return pub_


def test_connection_lost_after_create_hit_is_resumed_exactly_once(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 3)
    plat = LostAnswers(lose_after=2)
    with pytest.raises(UserError) as err:
        pub.publish(cfg, responses, platform=plat, echo=_quiet, progress=False)
    assert err.value.message.startswith(
        "publishing HIT main/00001 failed: http://127.0.0.1:9: cannot reach the MTurk endpoint (read timeout;"
        " CreateHITWithHITType, 6 tries); 1 HITs created this run, 2 still pending in ")
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert [h.state for h in led.hits()] == ["created", "pending", "pending"]
    assert plat.created == 2  # the second HIT exists on the platform, the ledger has it pending
    plat.lose_after = 99
    res = pub.publish(cfg, responses, platform=plat, echo=_quiet, progress=False)
    assert (res.created, res.recovered, res.already) == (1, 1, 1)
    assert plat.created == 3 and len(plat.hits) == 3
    _one_hit_per_item(cfg, 3)


def test_concurrency_and_rate_stay_within_config(tmp_path):
    cfg = make_cfg(tmp_path, publish_concurrency=3, publish_rate=200.0)
    responses = write_responses(tmp_path / "r.jsonl", 12)
    fake = FakeMTurk()
    fake.delay = 0.02
    t0 = time.monotonic()
    res = pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    assert res.created == 12 and 2 <= fake.max_active <= 3
    assert time.monotonic() - t0 >= 11 / 200.0


def test_rate_limiter_spaces_calls():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s
    lim = pub.RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        lim.acquire()
    assert slept == [0.25, 0.25, 0.25, 0.25]


def test_changed_item_is_refused(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    pub.publish(cfg, responses, platform=FakeMTurk(), echo=_quiet, progress=False)
    from helpers.mturk import response_row
    write_responses(responses, rows=[response_row(0, response="changed"), response_row(1)])
    with pytest.raises(UserError, match="differs from the item already in the ledger"):
        pub.publish(cfg, responses, platform=FakeMTurk(), echo=_quiet, progress=False)


def test_new_items_later_and_a_second_batch(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    fake = FakeMTurk()
    pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    write_responses(responses, 3)
    res = pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    assert (res.created, res.already) == (1, 2)
    res = pub.publish(cfg, responses, platform=fake, batch="more", echo=_quiet, progress=False)
    assert res.created == 3 and fake.created == 6


def test_a_batch_published_between_the_checks_and_the_lock_is_planned_again(tmp_path):
    """The checks run before the lock; if another run publishes the batch meanwhile, this run plans
    again under the lock: nothing is created twice, and a dearer plan than the one checked is refused."""
    cfg = make_cfg(tmp_path, items_per_hit=1, attention_check_rate=0.0)
    responses = write_responses(tmp_path / "r.jsonl", 3)

    class Racing(FakeMTurk):
        def __init__(self, other_rows: int):
            super().__init__()
            self.other_rows = other_rows

        def balance(self):
            if self.other_rows:  # another publish gets in while this one is asking for the balance
                n, self.other_rows = self.other_rows, 0
                pub.publish(cfg, write_responses(tmp_path / "other.jsonl", n), platform=self, echo=_quiet,
                            progress=False)
            return super().balance()

    fake = Racing(other_rows=3)  # the whole batch: nothing left for this run
    res = pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    assert (res.created, fake.created) == (0, 3)
    write_responses(responses, 5)
    res = pub.publish(cfg, responses, platform=fake, echo=_quiet, progress=False)
    assert (res.created, res.already, fake.created) == (2, 3, 5)

    # A plan that grew meanwhile (another run left HITs pending) is refused rather than paid unchecked.
    write_responses(responses, 6)
    checked = {}

    class Growing(FakeMTurk):
        def balance(self):
            with Ledger.open(ledger_path(cfg, "sandbox")) as led:
                items = [response_row(i) for i in range(6, 9)]
                led.add_plan(items, hits_mod.plan_hits(items, experiment="exp1", target="sandbox", batch="main",
                                                       seed=cfg.seed, items_per_hit=1, max_assignments=5,
                                                       reward="0.05", start_index=99))
            checked["yes"] = True
            return super().balance()

    with pytest.raises(UserError, match=r"batch main changed while this run was checking it"):
        pub.publish(cfg, responses, platform=Growing(), echo=_quiet, progress=False)
    assert checked


def test_lock_refuses_a_concurrent_run(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 1)
    with experiment_lock(cfg, "sandbox", "collect"):
        with pytest.raises(UserError, match=r"experiment exp1 \(sandbox\): mturk-eval collect \(pid \d+\) is already running"):
            pub.publish(cfg, responses, platform=FakeMTurk(), echo=_quiet, progress=False)
        # Another target is another ledger and another lock.
        pub.publish(cfg, responses, target="local", platform=FakeMTurk(), echo=_quiet, progress=False)
    pub.publish(cfg, responses, platform=FakeMTurk(), echo=_quiet, progress=False)


def test_lock_is_released_when_the_holder_dies(tmp_path):
    import subprocess
    import sys
    cfg = make_cfg(tmp_path)
    from pathlib import Path
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r});"
            "from helpers.mturk import make_cfg; from pathlib import Path;"
            "from mturk_eval.actions.common import experiment_lock;"
            f"cm = experiment_lock(make_cfg(Path({str(tmp_path)!r})), 'sandbox', 'publish'); cm.__enter__();"
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match="publish"):
            with experiment_lock(cfg, "sandbox", "publish"):
                pass
    finally:
        proc.kill()
        proc.wait()
    with experiment_lock(cfg, "sandbox", "publish"):
        pass


# ---------------------------------------------------------------- CLI

def _config_file(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n[hit]\nreward = "0.05"\n')
    return p


def test_cli_publish_dry_run_and_bad_input(tmp_path):
    cfg_file = _config_file(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    runner = CliRunner()
    r = runner.invoke(main, ["publish", "--config", str(cfg_file), "--responses", str(responses), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "2 HITs x 5 assignments" in r.output and "total $0.60" in r.output and "dry run" in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "x"}\n')
    r = runner.invoke(main, ["publish", "--config", str(cfg_file), "--responses", str(bad)])
    assert r.exit_code == 2 and "bad.jsonl:1: persona: required key missing" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(main, ["publish", "--config", str(cfg_file), "--responses", str(responses), "--live"])
    assert r.exit_code == 2 and "give --yes" in r.output
    r = runner.invoke(main, ["publish", "--config", str(cfg_file), "--responses", str(responses), "--live",
                             "--endpoint-url", "http://127.0.0.1:9"])
    assert r.exit_code == 2 and "choose one target" in r.output
    r = runner.invoke(main, ["publish", "--help"])
    for opt in ("--sandbox / --live", "--endpoint-url", "--max-cost", "--yes", "--dry-run", "--batch", "--responses"):
        assert opt in r.output


def test_cli_publish_to_an_endpoint_uses_the_local_ledger(tmp_path, monkeypatch):
    cfg_file = _config_file(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    fake = FakeMTurk()
    monkeypatch.setattr(pub, "make_platform", lambda target, url, c: fake if target == "local" else None)
    r = CliRunner().invoke(main, ["publish", "--config", str(cfg_file), "--responses", str(responses),
                                  "--endpoint-url", "http://127.0.0.1:9", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "created 2, recovered 0, earlier 0" in r.output
    assert (tmp_path / "runs" / "exp1" / "ledger.local.sqlite").exists()
    assert not (tmp_path / "runs" / "exp1" / "ledger.sandbox.sqlite").exists()

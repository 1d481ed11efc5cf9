"""Fault injection of the local sandbox: throttling, 5xx, dropped connections, latency; seeded."""
from __future__ import annotations

import time

import botocore.exceptions
import pytest
import requests
from click.testing import CliRunner

from helpers.sandbox import client, hit_params, sandbox, sandbox_server  # noqa: F401
from mturk_eval.errors import UserError
from mturk_eval.emulators.faults import FaultConfig, FaultInjector


def test_throttling_is_a_throttling_exception_and_retries_get_through():
    with sandbox_server(faults=FaultConfig(throttle_rate=1.0)) as srv:
        c = client(srv.url)
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            c.get_account_balance()
        assert ei.value.response["Error"]["Code"] == "ThrottlingException"
        assert ei.value.response["Error"]["Message"] == "Rate exceeded"
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with sandbox_server(faults=FaultConfig(throttle_rate=0.3, seed=3)) as srv:
        c = client(srv.url, max_attempts=10)
        for _ in range(10):
            assert c.get_account_balance()["AvailableBalance"] == "10000.00"
        assert srv.app.faults.counts["throttle"] > 0


def test_service_fault_is_http_500_and_does_not_run_the_operation():
    with sandbox_server(faults=FaultConfig(error_rate=1.0)) as srv:
        c = client(srv.url)
        with pytest.raises(c.exceptions.ServiceFault) as ei:
            c.create_hit(**hit_params())
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert ei.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.InternalError"
        assert srv.store.counts()["hits"] == 0


def test_dropped_connection_before_and_after_the_operation():
    with sandbox_server(faults=FaultConfig(drop_rate=1.0)) as srv:
        c = client(srv.url)
        with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
            c.create_hit(**hit_params(UniqueRequestToken="t1"))
        assert srv.store.counts()["hits"] == 0
    with sandbox_server(faults=FaultConfig(drop_after_rate=1.0)) as srv:
        c = client(srv.url)
        with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
            c.create_hit(**hit_params(UniqueRequestToken="t1"))
        # it ran: the HIT exists although the client never heard so; a retry with the token says so
        assert srv.store.counts()["hits"] == 1
        srv.set_faults(FaultConfig())
        with pytest.raises(c.exceptions.RequestError) as ei:
            c.create_hit(**hit_params(UniqueRequestToken="t1"))
        assert ei.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HitAlreadyExists"


def test_latency_is_added_to_api_calls_only():
    with sandbox_server(faults=FaultConfig(latency_s=0.2)) as srv:
        c = client(srv.url)
        t = time.perf_counter()
        c.get_account_balance()
        assert time.perf_counter() - t >= 0.2
        t = time.perf_counter()
        assert requests.get(srv.url + "/").status_code == 200  # the worker site has no faults
        assert time.perf_counter() - t < 0.2


def test_faults_are_deterministic_with_a_seed_and_can_target_operations():
    cfg = FaultConfig(throttle_rate=0.2, error_rate=0.1, drop_rate=0.1, drop_after_rate=0.1, seed=7)
    a, b = FaultInjector(cfg), FaultInjector(cfg)
    seq_a = [a.decide("CreateHIT").action for _ in range(200)]
    assert seq_a == [b.decide("CreateHIT").action for _ in range(200)]
    assert seq_a != [FaultInjector(FaultConfig(**{**cfg.to_dict(), "seed": 8})).decide("CreateHIT").action
                     for _ in range(200)]
    assert 20 < seq_a.count("throttle") < 60 and seq_a.count(None) > 60
    only = FaultInjector(FaultConfig(throttle_rate=1.0, operations=["CreateHIT"]))
    assert only.decide("GetHIT").action is None and only.decide("CreateHIT").action == "throttle"


@pytest.mark.parametrize("bad,needle", [
    ({"throttle_rate": 1.5}, "throttle_rate"),
    ({"error_rate": -0.1}, "error_rate"),
    ({"throttle_rate": 0.6, "error_rate": 0.6}, "add up"),
    ({"latency_s": -1}, "latency"),
    ({"colour": 1}, "unknown key 'colour'"),
])
def test_bad_fault_configs(bad, needle):
    with pytest.raises(UserError, match=needle):
        FaultConfig.from_dict(bad)


def test_admin_endpoints_set_faults_and_move_the_clock(sandbox):
    r = requests.post(sandbox.url + "/_sandbox/faults", json={"throttle_rate": 1.0})
    assert r.status_code == 200
    with pytest.raises(botocore.exceptions.ClientError, match="Rate exceeded"):
        client(sandbox.url).get_account_balance()
    assert requests.post(sandbox.url + "/_sandbox/faults", json={"throttle_rate": 9}).status_code == 400
    requests.post(sandbox.url + "/_sandbox/faults", json={})
    before = requests.get(sandbox.url + "/_sandbox/state").json()["now"]
    after = requests.post(sandbox.url + "/_sandbox/clock", json={"advance_s": 3600}).json()["now"]
    assert after - before == pytest.approx(3600, abs=5)
    assert requests.post(sandbox.url + "/_sandbox/clock", json={"later": 1}).status_code == 400


def test_cli_refuses_a_public_bind_and_bad_fault_flags():
    from mturk_eval.cli import main

    r = CliRunner().invoke(main, ["sandbox", "serve", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--allow-remote" in r.output
    r = CliRunner().invoke(main, ["sandbox", "serve", "--throttle-rate", "0.7", "--error-rate", "0.7"])
    assert r.exit_code == 2 and "add up" in r.output
    r = CliRunner().invoke(main, ["sandbox", "serve", "--throttle-rate", "2"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["sandbox", "serve", "--help"])
    for flag in ("--throttle-rate", "--error-rate", "--drop-rate", "--drop-after-rate", "--latency", "--fault-seed",
                 "--state", "--host", "--allow-remote", "--max-body"):
        assert flag in r.output


def test_cli_port_in_use_is_one_clear_error(tmp_path):
    import socket

    from mturk_eval.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(main, ["sandbox", "serve", "--port", str(port), "--state", str(tmp_path / "s.sqlite")])
    assert r.exit_code == 2 and "cannot bind" in r.output and "Traceback" not in r.output

"""The Prolific client: token handling, retries and error lines, paging, the requests it builds (checked
against the contract's examples and the emulator), and the money rules."""
from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
import requests

from mturk_eval.errors import UserError
from mturk_eval.platforms.prolific import contract, fees
from mturk_eval.platforms.prolific.client import (OutcomeUnknown, ProlificClient, ProlificError, error_line,
                                                  token_from_env)
from mturk_eval.platforms.prolific.prolific_platform import ProlificPlatform
from mturk_eval.platforms.prolific.settings import ProlificSettings
from tests.helpers.prolific import EXAMPLES, TOKEN, emulator, example


@pytest.fixture(scope="module")
def emu():
    with emulator() as e:
        yield e


def client(emu, **kw) -> tuple[ProlificClient, list[float]]:
    sleeps: list[float] = []
    return ProlificClient(emu.api, TOKEN, sleep=sleeps.append, rng=random.Random(0), **kw), sleeps


# ---------------------------------------------------------------------------------------------- token
@pytest.mark.parametrize("value, says", [
    (None, "PROLIFIC_TOKEN is not set"),
    ("   ", "PROLIFIC_TOKEN is not set"),
    ("Token abcdefghijklmnopqrstuvwxyz0123", "starts with 'Token '"),
    ("abc def ghi jkl mno pqr stu vwx", "spaces"),
    ("short-token", "does not look like"),
])
def test_missing_or_malformed_token_is_one_line_without_the_value(value, says):
    env = {} if value is None else {"PROLIFIC_TOKEN": value}
    with pytest.raises(UserError) as e:
        token_from_env(env=env)
    msg = e.value.message
    assert says in msg and "\n" not in msg and "nothing was sent" in msg
    if value and value.strip():
        assert value.strip() not in msg and value.split()[-1] not in msg


def test_token_is_hidden_and_only_sent_to_the_api_base(emu):
    c, _ = client(emu)
    assert TOKEN not in repr(c) and "<hidden>" in repr(c)
    with pytest.raises(ProlificError, match="outside"):
        c.request("GET", "https://evil.example/api/v1/users/me/")
    with pytest.raises(ProlificError, match="outside"):
        c.request("GET", emu.url.replace("127.0.0.1", "localhost") + "/api/v1/users/me/")
    assert c.session.trust_env is False


def test_a_redirect_is_not_followed_with_the_token():
    seen = []

    class Session(requests.Session):
        def request(self, method, url, **kw):
            seen.append((url, kw.get("allow_redirects")))
            r = requests.Response()
            r.status_code, r.headers["Location"], r._content = 302, "https://elsewhere.example/x", b""
            return r

    c = ProlificClient("https://api.prolific.com/api/v1/", TOKEN, session=Session(), sleep=lambda s: None)
    with pytest.raises(ProlificError, match="redirect to elsewhere.example"):
        c.me()
    assert seen == [("https://api.prolific.com/api/v1/users/me/", False)]


# ---------------------------------------------------------------------------------------------- errors
def test_error_bodies_of_the_contract_read_as_one_line():
    ex = example("error-responses.json")
    assert error_line("GET", "/api/v1/studies/x/", 400, json.dumps(ex["nested_error_format_status_400"]))[0] == \
        "Prolific GET /api/v1/studies/x/: 400 Bad Request: study ID is invalid"
    assert error_line("GET", "/p", 400, json.dumps(ex["simple_error_format_status_400"]))[0] == \
        "Prolific GET /p: 400 Bad Request: study not found"
    assert error_line("GET", "/p", 404, b"<html>\nnope\n</html>")[0] == "Prolific GET /p: 404: <html> nope </html>"


def test_other_4xx_is_one_line_with_prolifics_message(emu):
    c, sleeps = client(emu)
    with pytest.raises(ProlificError) as e:
        c.create_study({"name": "x", "bogus": 1})
    assert e.value.status == 400 and "bogus" in e.value.message and "\n" not in e.value.message
    assert sleeps == []  # not retried
    with pytest.raises(ProlificError, match="404 Not Found: Study nope not found"):
        c.get_study("nope")


# ---------------------------------------------------------------------------------------------- retries
def test_429_bursts_and_5xx_are_retried_with_bounded_jittered_backoff(emu):
    c, sleeps = client(emu, base=0.5, cap=4.0)
    emu.faults(throttle_rate=0.5, error_rate=0.2, seed=3)
    try:
        for _ in range(10):
            assert c.me()["id"]
    finally:
        emu.faults()
    assert sleeps and all(0 <= s <= 4.0 for s in sleeps)
    assert len(set(sleeps)) > 1  # jitter
    c2, sleeps2 = client(emu, attempts=4)
    emu.faults(throttle_rate=1.0)
    try:
        with pytest.raises(ProlificError, match="429 Too Many Requests.*after 4 tries"):
            c2.me()
    finally:
        emu.faults()
    assert len(sleeps2) == 3


def test_non_idempotent_calls_are_never_repeated_blindly(emu):
    c, _ = client(emu)
    emu.faults(error_rate=1.0, operations=["create-study"])
    try:
        with pytest.raises(OutcomeUnknown, match="whether it was done is not known"):
            c.create_study({"name": "x"})
    finally:
        emu.faults()
    assert emu.app.calls.get("create-study", 0) == 0
    emu.faults(drop_after_rate=1.0, operations=["create-study"])
    body = example("cli-docs-examples/minimal-study.json")
    try:
        with pytest.raises(OutcomeUnknown, match="connection was lost"):
            c.create_study(body | {"internal_name": "dropped-after"})
    finally:
        emu.faults()
    names = [s["internal_name"] for s in c.studies()]
    assert names.count("dropped-after") == 1  # done once, the answer lost, not sent again


def test_dropped_connections_on_reads_are_retried(emu):
    c, sleeps = client(emu)
    emu.faults(drop_rate=0.5, seed=1)
    try:
        for _ in range(6):
            c.workspaces()
    finally:
        emu.faults()
    assert sleeps


def test_unreachable_api_is_one_line(emu):
    c = ProlificClient("http://127.0.0.1:9/api/v1/", TOKEN, attempts=2, sleep=lambda s: None)
    with pytest.raises(ProlificError, match="cannot reach the Prolific API .*2 tries"):
        c.me()


# ---------------------------------------------------------------------------------------------- requests
def test_the_study_body_matches_the_contract_and_the_emulator_takes_it(emu):
    c, _ = client(emu)
    plat = ProlificPlatform(c, ProlificSettings(age=[18, 60]), emulator=True, echo=lambda s: None)
    body = plat.study_body(experiment="e", batch="b1", title="Rate", description="Rate replies", places=10,
                           public_url="https://rate.example/p/b1", filters=plat.settings.named_filters())
    assert set(body) <= contract.STUDY_FIELDS and set(contract.STUDY_REQUIRED) <= set(body)
    ref = example("cli-docs-examples/study-with-range-filters.json")
    for key in ("reward", "total_available_places", "estimated_completion_time"):
        assert type(body[key]) is type(ref[key]) is int  # minor units, minutes
    assert body["reward"] == 150 and body["filters"] == [{"filter_id": "age", "selected_range": {"lower": 18,
                                                                                                "upper": 60}}]
    assert body["prolific_id_option"] == "url_parameters"
    for ph in (contract.PID, contract.STUDY_ID, contract.SESSION_ID):
        assert ph in body["external_study_url"]
    assert [cc["code_type"] for cc in body["completion_codes"]] == ["COMPLETED", "FAILED_ATTENTION_CHECK"]
    assert body["completion_codes"][0]["actions"] == [{"action": "MANUALLY_REVIEW"}]
    created = c.create_study(body)
    assert created["status"] == "UNPUBLISHED" and created["project"] == body["project"]
    assert c.transition_study(created["id"], "PUBLISH")["status"] == "ACTIVE"


def test_paging_follows_both_styles(emu):
    c, _ = client(emu)
    body = example("cli-docs-examples/minimal-study.json") | {"total_available_places": 7}
    sid = c.create_study(body)["id"]
    c.transition_study(sid, "PUBLISH")
    s = requests.Session()
    for i in range(7):
        s.cookies.clear()
        assert s.get(f"{emu.url}/_prolific/studies/{sid}/take?PROLIFIC_PID={i:024x}", allow_redirects=False
                     ).status_code == 302
    assert len(list(c.pages(f"studies/{sid}/submissions/", size=3))) == 7
    assert len(list(c.pages("submissions/", {"study": sid}, style="page", size=2))) == 7


# ---------------------------------------------------------------------------------------------- money
def test_fees_reproduce_the_contract_example_and_the_calculator(emu):
    bonus = example("create-bonus-payments.json")["response"]
    cost = fees.bonus_cost([425, 425])
    assert (float(cost.rewards), float(cost.fees), float(cost.vat), float(cost.total)) == \
        (bonus["amount"], bonus["fees"], bonus["vat"], bonus["total_amount"])
    c, _ = client(emu)
    req = example("calculate-study-cost.json")["request"]
    assert Decimal(str(c.cost_calculator(req["reward"], req["total_available_places"]))) == \
        fees.study_cost(req["reward"], req["total_available_places"]).total
    uk = fees.study_cost(150, 100, vat_rate="0.2")
    assert (uk.rewards, uk.fees, uk.vat, uk.major()) == (Decimal("15000.00"), Decimal("5000.00"), Decimal("1000.00"),
                                                          Decimal("210.00"))
    assert fees.study_cost(150, 100).money() == "£200.00"


def test_minimum_hourly_reward():
    assert fees.check_hourly(100, 10, "GBP") == Decimal("6.00")
    with pytest.raises(UserError, match=r"£5.94/h, below the minimum £6.00/h; pay at least £1.00"):
        fees.check_hourly(99, 10, "GBP")
    with pytest.raises(UserError, match=r"\$7.98/h, below the minimum \$8.00/h"):
        fees.check_hourly(133, 10, "USD")
    assert fees.check_hourly(50, 10, "GBP", minimum="3.00") == Decimal("3.00")


def test_examples_folder_is_there():
    assert (EXAMPLES / "cli-docs-examples" / "minimal-study.json").exists()

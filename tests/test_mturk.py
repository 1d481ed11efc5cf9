"""MTurk pieces: fees, qualifications, answer parsing, client factory, retries, and every platform call
under botocore's Stubber (which checks parameters against the mturk service model)."""
from __future__ import annotations

from decimal import Decimal

import boto3
import botocore.exceptions as bce
import pytest
from lxml import etree

from helpers.mturk import (ANY, SCHEMAS, assignment, hit_id, hit_response, hit_shape, qfa_xml,
                           rating_fields, stubbed)
from mturk_eval.config import QualificationConfig
from mturk_eval.errors import UserError
from mturk_eval.platforms.mturk import answers, client, fees, quals
from mturk_eval.platforms.mturk.mturk_platform import EXPIRE_AT, MTurkPlatform
from mturk_eval.platforms.crowd_platform import TaskSpec, TaskType


# ---------------------------------------------------------------- fees

@pytest.mark.parametrize("reward, n, masters, fee", [
    ("0.05", 5, False, "0.01"), ("0.50", 5, False, "0.10"), ("0.50", 10, False, "0.20"),
    ("1.00", 9, True, "0.25"), ("1.00", 10, True, "0.45"), ("0.00", 5, False, "0.01"), ("0.03", 5, False, "0.01"),
])
def test_assignment_fee(reward, n, masters, fee):
    assert fees.assignment_fee(reward, n, masters) == Decimal(fee)


def test_batch_estimate_and_bonus_fee():
    est = fees.estimate(hits=120, assignments_per_hit=5, reward="0.50")
    assert est.assignments == 600 and est.rewards == Decimal("300.00") and est.fees == Decimal("60.00")
    assert est.total == Decimal("360.00") and "$360.00" in est.describe()
    assert fees.bonus_fee("0.02") == Decimal("0.01") and fees.bonus_fee("1.00") == Decimal("0.20")


# ---------------------------------------------------------------- qualifications

def test_system_qualifications_and_masters_ids_per_target():
    qs = [QualificationConfig(type="locale", locales=["US", "CA-ON"]),
          QualificationConfig(type="approval_rate", values=[98]),
          QualificationConfig(type="approved_hits", comparator="GreaterThan", values=[1000]),
          QualificationConfig(type="masters"), QualificationConfig(type="adult")]
    sb = quals.build_requirements(qs, "sandbox")
    assert [r["QualificationTypeId"] for r in sb] == [
        "00000000000000000071", "000000000000000000L0", "00000000000000000040", "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6",
        "00000000000000000060"]
    assert sb[0]["Comparator"] == "In" and sb[0]["LocaleValues"] == [{"Country": "US"}, {"Country": "CA", "Subdivision": "ON"}]
    assert sb[1] == {"QualificationTypeId": "000000000000000000L0", "Comparator": "GreaterThanOrEqualTo",
                     "IntegerValues": [98], "ActionsGuarded": "DiscoverPreviewAndAccept"}
    assert sb[3]["Comparator"] == "Exists" and "IntegerValues" not in sb[3]
    live = quals.build_requirements(qs, "live")
    assert live[3]["QualificationTypeId"] == "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"
    assert quals.build_requirements(qs, "local")[3]["QualificationTypeId"] == "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6"
    one = quals.build_requirements([QualificationConfig(type="locale", comparator="EqualTo", locales=["US"])], "live")
    assert one[0]["Comparator"] == "EqualTo"


def test_custom_qualification_with_sandbox_id():
    q = QualificationConfig(type="3LIVEQUALID", sandbox_id="3SANDBOXQUALID", comparator="Exists")
    assert quals.build_requirements([q], "live")[0]["QualificationTypeId"] == "3LIVEQUALID"
    assert quals.build_requirements([q], "sandbox")[0]["QualificationTypeId"] == "3SANDBOXQUALID"


@pytest.mark.parametrize("q, message", [
    (QualificationConfig(type="locale"), r"hit.qualifications\[0\].locales: expected country codes"),
    (QualificationConfig(type="locale", locales=["usa"]), r"locales: expected ISO country codes"),
    (QualificationConfig(type="approval_rate", values=[]), r"values: expected at least one integer"),
    (QualificationConfig(type="approval_rate", values=[101]), r"values: expected percentages"),
    (QualificationConfig(type="approval_rate", comparator="AtLeast", values=[9]), r"comparator: expected one of"),
    (QualificationConfig(type="not an id"), r"type: expected locale, approval_rate"),
    (QualificationConfig(type="masters", actions_guarded="Look"), r"actions_guarded: expected"),
])
def test_qualification_errors(q, message):
    with pytest.raises(UserError, match=message):
        quals.build_requirements([q], "sandbox")


# ---------------------------------------------------------------- QuestionFormAnswers

def _qfa_schema():
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "QuestionFormAnswers-2005-10-01.xsd")))


def test_answer_fixtures_are_valid_questionformanswers_and_parse():
    xml = qfa_xml({"assignmentId": "3ASSIGN", **rating_fields({"fluency": 4, "engagingness": 3, "relevance": 5,
                                                               "persona": 1}, simulated=True)})
    assert _qfa_schema().validate(etree.fromstring(xml.encode())), _qfa_schema().error_log
    parsed = answers.parse_answer(xml, 1)
    assert parsed.scores == {0: {"fluency": 4, "engagingness": 3, "relevance": 5, "persona": 1}}
    assert parsed.error is None and parsed.simulated


def test_real_mturk_answer_document_with_selection_identifiers():
    # As MTurk returns it (namespace, XML declaration, whitespace, a selection answer).
    xml = f"""<?xml version="1.0" encoding="ASCII"?>
<QuestionFormAnswers xmlns="{answers.QFA_NS}">
  <Answer><QuestionIdentifier>i0_fluency</QuestionIdentifier><FreeText>5</FreeText></Answer>
  <Answer><QuestionIdentifier>i0_engagingness</QuestionIdentifier><FreeText> 2 </FreeText></Answer>
  <Answer><QuestionIdentifier>i0_relevance</QuestionIdentifier><SelectionIdentifier>3</SelectionIdentifier></Answer>
  <Answer><QuestionIdentifier>i0_persona</QuestionIdentifier><FreeText>4</FreeText></Answer>
</QuestionFormAnswers>"""
    assert _qfa_schema().validate(etree.fromstring(xml.encode()))
    assert answers.parse_answer(xml, 1).scores == {0: {"fluency": 5, "engagingness": 2, "relevance": 3, "persona": 4}}


def test_crowd_form_task_answers_are_flattened():
    import json
    data = [{"i0_fluency": "4", "i0_engagingness": {"2": False, "3": True}, "i0_relevance": 5, "i0_persona": "1"}]
    xml = qfa_xml({"taskAnswers": json.dumps(data)})
    assert _qfa_schema().validate(etree.fromstring(xml.encode()))
    assert answers.parse_answer(xml, 1).scores == {0: {"fluency": 4, "engagingness": 3, "relevance": 5, "persona": 1}}


@pytest.mark.parametrize("fields, error", [
    ({"i0_fluency": "4", "i0_engagingness": "3", "i0_relevance": "5"}, "i0_persona: missing"),
    ({"i0_fluency": "6", "i0_engagingness": "3", "i0_relevance": "5", "i0_persona": "1"}, "i0_fluency: expected an integer 1..5, got 6"),
    ({"i0_fluency": "four", "i0_engagingness": "3", "i0_relevance": "5", "i0_persona": "1"}, "got 'four'"),
    ({"i0_fluency": "", "i0_engagingness": "3", "i0_relevance": "5", "i0_persona": "1"}, "i0_fluency: missing"),
])
def test_invalid_answers_are_reported(fields, error):
    parsed = answers.parse_answer(qfa_xml(fields), 1)
    assert parsed.scores is None and error in parsed.error


def test_unreadable_answers():
    assert "not well-formed" in answers.parse_answer("<QuestionFormAnswers>", 1).error
    assert "expected QuestionFormAnswers" in answers.parse_answer("<Other/>", 1).error
    # Entities are never expanded (answers come from outside).
    xxe = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           f'<QuestionFormAnswers xmlns="{answers.QFA_NS}"><Answer><QuestionIdentifier>i0_fluency</QuestionIdentifier>'
           '<FreeText>&x;</FreeText></Answer></QuestionFormAnswers>')
    parsed = answers.parse_answer(xxe, 1)
    assert parsed.scores is None and "root:" not in (parsed.error or "")


def test_attention_passed():
    items = [{"attention_check": None}, {"attention_check": {"aspects": {"fluency": 2}}}]
    good = {0: {"fluency": 5}, 1: {"fluency": 2}}
    assert answers.attention_passed(good, items) is True
    assert answers.attention_passed({0: {"fluency": 5}, 1: {"fluency": 3}}, items) is False
    assert answers.attention_passed(None, items) is False
    assert answers.attention_passed(good, items[:1]) is None


# ---------------------------------------------------------------- client factory

def test_targets_and_endpoints(monkeypatch):
    assert client.resolve_target() == "sandbox"
    assert client.resolve_target(live=True) == "live"
    assert client.resolve_target(endpoint_url="http://127.0.0.1:9") == "local"
    with pytest.raises(UserError, match="choose one target"):
        client.resolve_target(live=True, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(UserError, match="--endpoint-url: expected an http"):
        client.resolve_target(endpoint_url="127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    sb = client.make_client("sandbox")
    assert sb.meta.endpoint_url == "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
    assert sb.meta.region_name == "us-east-1"
    assert sb.meta.config.retries["mode"] == "standard"
    assert client.make_client("live").meta.endpoint_url == "https://mturk-requester.us-east-1.amazonaws.com"
    local = client.make_client("local", "http://127.0.0.1:8765")
    assert local.meta.endpoint_url == "http://127.0.0.1:8765"
    # Real keys are never sent to a non-Amazon endpoint.
    assert local._request_signer._credentials.access_key == client.DUMMY_CREDENTIALS["aws_access_key_id"]


def test_missing_credentials_is_a_clear_error(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UserError, match="no AWS credentials found"):
        client.make_client("sandbox")


# ---------------------------------------------------------------- an unreachable endpoint, bad credentials

TRANSPORT_CASES = {
    "refused": (lambda u: bce.EndpointConnectionError(
        endpoint_url=u, error="<urllib3.connection.HTTPConnection object>: Failed to establish a new connection:"
                              " [Errno 111] Connection refused"), "Connection refused"),
    "dns": (lambda u: bce.EndpointConnectionError(
        endpoint_url=u, error="Failed to resolve 'nowhere' ([Errno -2] Name or service not known)"),
        "Name or service not known"),
    "connect_timeout": (lambda u: bce.ConnectTimeoutError(endpoint_url=u), "connect timeout"),
    "read_timeout": (lambda u: bce.ReadTimeoutError(endpoint_url=u), "no answer in time (read timeout)"),
    "closed": (lambda u: bce.ConnectionClosedError(endpoint_url=u),
               "the connection was closed before an answer came"),
    "tls": (lambda u: bce.SSLError(endpoint_url=u, error="certificate verify failed"),
            "TLS error: certificate verify failed"),
}


@pytest.mark.parametrize("case", sorted(TRANSPORT_CASES))
def test_transport_errors_become_one_line(case):
    """Whatever botocore raises once its own retries are spent becomes one UserError naming the endpoint,
    the cause and the call; the platform layer does not retry it again."""
    from mturk_eval.platforms.mturk.retry import EndpointUnreachable

    make, cause = TRANSPORT_CASES[case]
    url = "http://127.0.0.1:9"
    c = client.make_client("local", url, max_attempts=0)  # botocore's own retries: not under test here
    calls = []

    def fail(**kwargs):
        calls.append(1)
        raise make(url + "/")

    c.meta.events.register("before-send.mturk", fail)
    plat = MTurkPlatform(c, "local", url, sleep=lambda s: pytest.fail("transport errors are not retried here"))
    for call in (plat.balance, lambda: plat.task_state("3HIT"), lambda: list(plat.list_submissions("3HIT")),
                 lambda: plat.publish(_spec()), lambda: plat.approve("3A"), lambda: plat.bonus("A1", "3A", "0.10",
                                                                                              "r", "t")):
        with pytest.raises(EndpointUnreachable) as err:
            call()
        assert err.value.message.startswith(f"{url}: cannot reach the MTurk endpoint ({cause}; ")
        assert "\n" not in err.value.message and err.value.exit_code == 2
    assert len(calls) == 6  # one request per call: nothing retried on top of botocore
    assert "GetAccountBalance, 1 try); check that the server is running" in _msg(plat.balance)
    assert _msg(lambda: plat.approve("3A")).startswith(f"{url}: cannot reach the MTurk endpoint ({cause};"
                                                       " ApproveAssignment, 1 try)")


def _msg(fn) -> str:
    with pytest.raises(UserError) as err:
        fn()
    return err.value.message


def test_credential_errors_become_one_line():
    from mturk_eval.platforms.mturk import retry

    def no_creds():
        raise bce.NoCredentialsError()

    def partial():
        raise bce.PartialCredentialsError(provider="env", cred_var="aws_secret_access_key")

    assert _msg(lambda: retry.call(no_creds)).startswith("no AWS credentials found: give them the way boto3")
    assert _msg(lambda: retry.call(partial)) == (
        "AWS credentials are not usable (Partial credentials found in env, missing: aws_secret_access_key); fix"
        " them the way boto3 reads them (environment, ~/.aws/credentials, AWS_PROFILE)")


# ---------------------------------------------------------------- platform calls under the Stubber

def test_balance_and_hit_type():
    plat, stub = stubbed()
    stub.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
    reqs = quals.build_requirements([QualificationConfig(type="approval_rate", values=[95])], "sandbox")
    tt = TaskType("t", "d", "k", "0.05", 600, 3600, tuple(reqs))
    stub.add_response("create_hit_type", {"HITTypeId": "3TYPE1"}, {
        "AutoApprovalDelayInSeconds": 3600, "AssignmentDurationInSeconds": 600, "Reward": "0.05", "Title": "t",
        "Keywords": "k", "Description": "d", "QualificationRequirements": reqs})
    assert plat.balance() == Decimal("10000.00")
    assert plat.create_task_type(tt) == "3TYPE1"
    stub.assert_no_pending_responses()


def _spec(n=1):
    return TaskSpec(type_id="3TYPE1", question="<q/>", max_assignments=5, lifetime_s=3600,
                    request_token=f"tok{n}", annotation=f"ann{n}")


def _create_params(spec):
    return {"HITTypeId": spec.type_id, "MaxAssignments": 5, "LifetimeInSeconds": 3600, "Question": ANY,
            "RequesterAnnotation": spec.annotation, "UniqueRequestToken": spec.request_token}


def test_throttling_and_service_fault_are_retried_with_backoff():
    client_ = boto3.client("mturk", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    from botocore.stub import Stubber
    stub = Stubber(client_)
    stub.activate()
    sleeps = []
    plat = MTurkPlatform(client_, "sandbox", sleep=sleeps.append)
    spec = _spec()
    stub.add_client_error("create_hit_with_hit_type", "ThrottlingException", "Rate exceeded", 400,
                          expected_params=_create_params(spec))
    stub.add_client_error("create_hit_with_hit_type", "ServiceFault", "internal", 500,
                          expected_params=_create_params(spec))
    stub.add_response("create_hit_with_hit_type", hit_response(1, "ann1"), _create_params(spec))
    pub = plat.publish(spec)
    assert pub.task_id == hit_id(1) and not pub.recovered and pub.group_id == "3GROUP000000000000001"
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    stub.assert_no_pending_responses()


def test_permanent_request_error_stops_clearly():
    plat, stub = stubbed()
    stub.add_client_error("create_hit_with_hit_type", "RequestError", "Reward too low", 400,
                          modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.InvalidParameterValue"},
                          expected_params=_create_params(_spec()))
    with pytest.raises(UserError, match="CreateHITWithHITType failed: AWS.MechanicalTurk.InvalidParameterValue: Reward too low"):
        plat.publish(_spec())


def test_hit_already_exists_recovers_the_hit_named_in_the_message():
    plat, stub = stubbed()
    spec = _spec()
    msg = f"There is already a HIT which exists with the same UniqueRequestToken: {hit_id(7)}"
    stub.add_client_error("create_hit_with_hit_type", "RequestError", msg, 400,
                          modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists"},
                          expected_params=_create_params(spec))
    stub.add_response("get_hit", hit_response(7, "ann1"), {"HITId": hit_id(7)})
    pub = plat.publish(spec)
    assert pub.task_id == hit_id(7) and pub.recovered
    stub.assert_no_pending_responses()


def test_hit_already_exists_without_id_falls_back_to_annotation():
    plat, stub = stubbed()
    spec = _spec(2)
    stub.add_client_error("create_hit_with_hit_type", "RequestError", "HIT already exists", 400,
                          modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists"},
                          expected_params=_create_params(spec))
    stub.add_response("list_hits", {"HITs": [hit_shape(1, "other")], "NextToken": "p2", "NumResults": 1},
                      {"MaxResults": 100})
    stub.add_response("list_hits", {"HITs": [hit_shape(9, "ann2")], "NumResults": 1},
                      {"MaxResults": 100, "NextToken": "p2"})
    assert plat.publish(spec).task_id == hit_id(9)
    stub.assert_no_pending_responses()


def test_task_state_and_paged_submissions():
    plat, stub = stubbed()
    stub.add_response("get_hit", hit_response(1, status="Reviewable", pending=1, available=0, completed=4),
                      {"HITId": hit_id(1)})
    st = plat.task_state(hit_id(1))
    assert (st.status, st.pending, st.completed) == ("Reviewable", 1, 4)
    ans = qfa_xml(rating_fields({"fluency": 4, "engagingness": 3, "relevance": 5, "persona": 1}))
    statuses = ["Submitted", "Approved", "Rejected"]
    stub.add_response("list_assignments_for_hit",
                      {"Assignments": [assignment("3A1", hit_id(1), "AW1", ans)], "NextToken": "n", "NumResults": 1},
                      {"HITId": hit_id(1), "MaxResults": 100, "AssignmentStatuses": statuses})
    stub.add_response("list_assignments_for_hit",
                      {"Assignments": [assignment("3A2", hit_id(1), "AW2", ans, "Approved")], "NumResults": 1},
                      {"HITId": hit_id(1), "MaxResults": 100, "AssignmentStatuses": statuses, "NextToken": "n"})
    subs = list(plat.list_submissions(hit_id(1)))
    assert [s.assignment_id for s in subs] == ["3A1", "3A2"] and subs[1].status == "Approved"
    assert subs[0].submit_time - subs[0].accept_time == 42
    stub.assert_no_pending_responses()


def test_review_calls():
    plat, stub = stubbed()
    stub.add_response("approve_assignment", {}, {"AssignmentId": "3A1"})
    stub.add_response("reject_assignment", {}, {"AssignmentId": "3A2", "RequesterFeedback": "failed a check"})
    stub.add_response("send_bonus", {}, {"WorkerId": "AW1", "BonusAmount": "0.10", "AssignmentId": "3A1",
                                         "Reason": "thanks", "UniqueRequestToken": "mb-1"})
    stub.add_client_error("send_bonus", "RequestError", "The bonus was already sent (UniqueRequestToken)", 400)
    stub.add_response("create_worker_block", {}, {"WorkerId": "AW2", "Reason": "r"})
    stub.add_response("update_expiration_for_hit", {}, {"HITId": hit_id(1), "ExpireAt": EXPIRE_AT})
    stub.add_response("delete_hit", {}, {"HITId": hit_id(1)})
    plat.approve("3A1")
    plat.reject("3A2", "failed a check")
    assert plat.bonus("AW1", "3A1", "0.10", "thanks", "mb-1") is True
    assert plat.bonus("AW1", "3A1", "0.10", "thanks", "mb-1") is False
    plat.block("AW2", "r")
    plat.expire(hit_id(1))
    plat.delete(hit_id(1))
    stub.assert_no_pending_responses()
    assert plat.preview_url("3G") == "https://workersandbox.mturk.com/mturk/preview?groupId=3G"
    assert MTurkPlatform(None, "live").preview_url("3G") == "https://worker.mturk.com/mturk/preview?groupId=3G"
    assert MTurkPlatform(None, "live").submit_url == "https://www.mturk.com/mturk/externalSubmit"
    assert plat.submit_url == "https://workersandbox.mturk.com/mturk/externalSubmit"


def test_approving_an_already_approved_assignment_is_not_an_error():
    plat, stub = stubbed()
    stub.add_client_error("approve_assignment", "RequestError", "This operation can be called with a status of: Submitted",
                          400, expected_params={"AssignmentId": "3A1"})
    stub.add_response("get_assignment", {"Assignment": {**assignment("3A1", hit_id(1), "AW1", "", "Approved")}},
                      {"AssignmentId": "3A1"})
    plat.approve("3A1")
    stub.add_client_error("approve_assignment", "RequestError", "no such assignment", 400)
    stub.add_response("get_assignment", {"Assignment": {**assignment("3A9", hit_id(1), "AW1", "", "Rejected")}})
    with pytest.raises(UserError, match="ApproveAssignment failed"):
        plat.approve("3A9")
    stub.assert_no_pending_responses()

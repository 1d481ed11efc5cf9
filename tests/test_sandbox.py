"""The local MTurk sandbox's requester API, driven by plain boto3 and by raw wire requests."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import botocore.exceptions
import botocore.parsers
import pytest
import requests
import xmlschema
from lxml import etree

from helpers.sandbox import client, hit_params, html_question, sandbox, sandbox_server  # noqa: F401
from mturk_eval.emulators.mturk.responses import (ANSWERS_NS, EXTERNAL_QUESTION_NS, MAX_QUESTION_BYTES,
                                                TARGET_PREFIX, service_model)

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "docs" / "schemas"


def raw(url: str, op: str, params, headers: dict | None = None, data: bytes | None = None) -> requests.Response:
    h = {"X-Amz-Target": TARGET_PREFIX + op, "Content-Type": "application/x-amz-json-1.1",
         "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/mturk-requester/aws4_request"}
    h.update(headers or {})
    return requests.post(url + "/", data=data if data is not None else json.dumps(params).encode(), headers=h,
                         timeout=10)


def check_shape(shape, value, path="") -> None:
    """Every key of a response belongs to its botocore shape, recursively, with the right JSON type."""
    t = shape.type_name
    if t == "structure":
        assert isinstance(value, dict), path
        for k, v in value.items():
            assert k in shape.members, f"{path}.{k} is not in {shape.name}"
            check_shape(shape.members[k], v, f"{path}.{k}")
    elif t == "list":
        assert isinstance(value, list), path
        for i, v in enumerate(value):
            check_shape(shape.member, v, f"{path}[{i}]")
    elif t == "string":
        assert isinstance(value, str), path
    elif t in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif t == "boolean":
        assert isinstance(value, bool), path
    elif t == "timestamp":
        assert isinstance(value, (int, float)) and value > 1.6e9, f"{path}: epoch seconds, got {value!r}"


def parse_ok(op: str, resp: requests.Response) -> dict:
    """Check the raw response against the model and parse it with botocore's own JSON parser."""
    shape = service_model().operation_model(op).output_shape
    body = resp.json()
    check_shape(shape, body)
    parsed = botocore.parsers.create_parser("json").parse(
        {"body": resp.content, "headers": {k.lower(): v for k, v in resp.headers.items()}, "status_code": resp.status_code}, shape)
    assert parsed["ResponseMetadata"]["RequestId"] == resp.headers["x-amzn-RequestId"]
    return parsed


def accept_and_submit(url: str, hit_id: str, worker: str, answers: dict | None = None,
                      extra_headers: dict | None = None) -> str:
    s = requests.Session()
    r = s.post(url + "/mturk/accept", data={"hitId": hit_id, "workerId": worker}, allow_redirects=False)
    assert r.status_code == 303, r.text
    aid = r.headers["Location"].split("assignmentId=")[1]
    form = {"assignmentId": aid, **(answers or {"i0_fluency": "4", "i0_engagingness": "3", "i0_relevance": "5",
                                                "i0_persona": "2"})}
    r = s.post(url + "/mturk/externalSubmit", data=form, headers=extra_headers or {})
    assert r.status_code == 200, r.text
    return aid


# --------------------------------------------------------------------------------------------------
# shapes and the wire

def test_every_response_is_shape_correct_with_epoch_timestamps_and_request_id(sandbox):
    url = sandbox.url
    r = raw(url, "CreateHIT", hit_params(MaxAssignments=1, RequesterAnnotation="batch-1"))
    assert r.status_code == 200
    hit = parse_ok("CreateHIT", r)["HIT"]
    assert isinstance(r.json()["HIT"]["CreationTime"], (int, float))
    assert hit["HITStatus"] == "Assignable" and hit["NumberOfAssignmentsAvailable"] == 1
    assert hit["RequesterAnnotation"] == "batch-1"
    hid = hit["HITId"]
    aid = accept_and_submit(url, hid, "AWORKER1")
    calls = [
        ("GetHIT", {"HITId": hid}), ("ListHITs", {}), ("ListReviewableHITs", {}),
        ("ListAssignmentsForHIT", {"HITId": hid}), ("GetAssignment", {"AssignmentId": aid}),
        ("GetAccountBalance", {}),
        ("SendBonus", {"WorkerId": "AWORKER1", "BonusAmount": "0.10", "AssignmentId": aid, "Reason": "thanks"}),
        ("ListBonusPayments", {"HITId": hid}),
        ("ApproveAssignment", {"AssignmentId": aid, "RequesterFeedback": "ok"}),
        ("CreateHITType", {"Title": "t", "Description": "d", "Reward": "0.05", "AssignmentDurationInSeconds": 60}),
        ("UpdateExpirationForHIT", {"HITId": hid, "ExpireAt": time.time() - 10}),
        ("CreateWorkerBlock", {"WorkerId": "ABAD1", "Reason": "spam"}), ("ListWorkerBlocks", {}),
        ("CreateQualificationType", {"Name": "q", "Description": "d", "QualificationTypeStatus": "Active"}),
        ("DeleteHIT", {"HITId": hid}),
    ]
    for op, params in calls:
        r = raw(url, op, params)
        assert r.status_code == 200, (op, r.text)
        assert r.headers["Content-Type"] == "application/x-amz-json-1.1"
        parse_ok(op, r)
    a = parse_ok("GetAssignment", raw(url, "GetAssignment", {"AssignmentId": aid}))["Assignment"]
    assert a["AssignmentStatus"] == "Approved" and a["RequesterFeedback"] == "ok"
    assert {"AcceptTime", "SubmitTime", "ApprovalTime", "AutoApprovalTime", "Deadline"} <= set(a)


def test_boto3_unchanged_round_trip(sandbox):
    c = client(sandbox.url)
    assert c.get_account_balance()["AvailableBalance"] == "10000.00"
    hit = c.create_hit(**hit_params())["HIT"]
    got = c.get_hit(HITId=hit["HITId"])["HIT"]
    assert got["HITId"] == hit["HITId"] and got["Reward"] == "0.05" and got["MaxAssignments"] == 3
    assert got["Expiration"].timestamp() == pytest.approx(got["CreationTime"].timestamp() + 3600, abs=1)


@pytest.mark.parametrize("headers,data,status,kind", [
    ({}, b"{not json", 400, "SerializationException"),
    ({}, b"[1, 2]", 400, "SerializationException"),
    ({}, b"\xff\xfe", 400, "SerializationException"),
    ({"X-Amz-Target": TARGET_PREFIX + "LaunchRockets"}, b"{}", 400, "UnknownOperationException"),
    ({"X-Amz-Target": "SomethingElse.GetHIT"}, b"{}", 400, "UnknownOperationException"),
    ({"Content-Type": "text/plain"}, b"{}", 400, "SerializationException"),
    ({"Authorization": ""}, b"{}", 403, "MissingAuthenticationTokenException"),
    ({}, b"{" + b" " * (600 * 1024) + b"}", 413, "RequestEntityTooLargeException"),
])
def test_bad_wire_requests_get_service_errors(sandbox, headers, data, status, kind):
    r = raw(sandbox.url, "GetAccountBalance", None, headers=headers, data=data)
    assert r.status_code == status
    assert r.json()["__type"] == kind
    assert r.headers["x-amzn-RequestId"]


# --------------------------------------------------------------------------------------------------
# parameter and Question validation

@pytest.mark.parametrize("change,needle", [
    ({"Reward": "5.123"}, "regular expression"),
    ({"Reward": "$1"}, "regular expression"),
    ({"Reward": "0.00"}, "minimum is 0.01"),
    ({"LifetimeInSeconds": 5}, "between 30 and 31536000"),
    ({"AssignmentDurationInSeconds": 10}, "between 30"),
    ({"AutoApprovalDelayInSeconds": 2592001}, "between 0 and 2592000"),
    ({"Title": "x" * 129}, "Title is too long"),
    ({"MaxAssignments": 0}, "between 1"),
    ({"UniqueRequestToken": "t" * 65}, "length less than or equal to 64"),
    ({"QualificationRequirements": [{"QualificationTypeId": "00000000000000000071", "Comparator": "EqualTo",
                                     "LocaleValues": [{"Country": "US"}]}] * 11}, "at most 10"),
    ({"QualificationRequirements": [{"QualificationTypeId": "X", "Comparator": "Bigger"}]}, "enum"),
    ({"Question": "not xml at all"}, "not well-formed XML"),
    ({"Question": "<QuestionForm xmlns='urn:x'/>"}, "not supported"),
    ({"Question": html_question(body="<!DOCTYPE html><p>no form here</p>")}, "no <form>"),
    ({"Question": html_question(body="   ")}, "HTMLContent is empty"),
    ({"Question": html_question().replace("<FrameHeight>0</FrameHeight>", "")}, "HTMLContent then FrameHeight"),
    ({"Question": html_question().replace("<FrameHeight>0<", "<FrameHeight>tall<")}, "whole number"),
    ({"Question": html_question(body="<form>" + "x" * MAX_QUESTION_BYTES + "</form>")}, "maximum is 65535"),
    ({"Question": f"<ExternalQuestion xmlns='{EXTERNAL_QUESTION_NS}'><ExternalURL>http://x.org/</ExternalURL>"
                  "<FrameHeight>0</FrameHeight></ExternalQuestion>"}, "https://"),
    ({"Question": "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>"}, "not supported"),
])
def test_invalid_create_hit_is_a_request_error(sandbox, change, needle):
    r = raw(sandbox.url, "CreateHIT", hit_params(**change))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["__type"] == "RequestError" and body["TurkErrorCode"].startswith("AWS.MechanicalTurk.")
    assert needle in body["Message"]
    assert sandbox.store.counts()["hits"] == 0


def test_missing_and_unknown_parameters(sandbox):
    p = hit_params()
    del p["Reward"]
    r = raw(sandbox.url, "CreateHIT", p)
    assert r.status_code == 400 and "Reward" in r.json()["Message"]
    r = raw(sandbox.url, "GetHIT", {"HITId": "ABC", "Colour": "red"})
    assert r.status_code == 400 and "Unknown parameter 'Colour'" in r.json()["Message"]
    r = raw(sandbox.url, "GetHIT", {"HITId": "abc-lower"})
    assert r.status_code == 400 and "regular expression" in r.json()["Message"]
    r = raw(sandbox.url, "GetHIT", {"HITId": "NOSUCHHIT"})
    assert r.status_code == 400 and r.json()["TurkErrorCode"] == "AWS.MechanicalTurk.HITDoesNotExist"


def test_external_question_is_accepted_and_redirects_with_mturk_params(sandbox):
    q = (f"<ExternalQuestion xmlns='{EXTERNAL_QUESTION_NS}'><ExternalURL>https://example.org/task?x=1"
         "</ExternalURL><FrameHeight>400</FrameHeight></ExternalQuestion>")
    hid = client(sandbox.url).create_hit(**hit_params(Question=q))["HIT"]["HITId"]
    r = requests.get(sandbox.url + f"/mturk/task?hitId={hid}&assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE",
                     allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("https://example.org/task?x=1&assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE")


# --------------------------------------------------------------------------------------------------
# behaviours

def test_unique_request_token_names_the_existing_hit(sandbox):
    c = client(sandbox.url)
    first = c.create_hit(**hit_params(UniqueRequestToken="item-0001"))["HIT"]["HITId"]
    with pytest.raises(c.exceptions.RequestError) as ei:
        c.create_hit(**hit_params(UniqueRequestToken="item-0001"))
    err = ei.value.response
    assert err["TurkErrorCode"] == "AWS.MechanicalTurk.HitAlreadyExists"
    assert first in err["Message"]
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    c.create_hit(**hit_params(UniqueRequestToken="item-0002"))
    assert sandbox.store.counts()["hits"] == 2
    # remembered for 24 hours only
    sandbox.store.advance_clock(24 * 3600 + 1)
    c.create_hit(**hit_params(UniqueRequestToken="item-0001"))
    assert sandbox.store.counts()["hits"] == 3


def test_hit_types_are_reused_for_identical_settings(sandbox):
    c = client(sandbox.url)
    settings = dict(Title="T", Description="D", Reward="0.05", AssignmentDurationInSeconds=600,
                    AutoApprovalDelayInSeconds=3600, Keywords="a, b")
    t1 = c.create_hit_type(**settings)["HITTypeId"]
    assert c.create_hit_type(**settings)["HITTypeId"] == t1
    assert c.create_hit_type(**{**settings, "Reward": "0.06"})["HITTypeId"] != t1
    hit = c.create_hit_with_hit_type(HITTypeId=t1, LifetimeInSeconds=600, MaxAssignments=2,
                                     Question=html_question(), UniqueRequestToken="x1")["HIT"]
    assert hit["HITTypeId"] == t1 and hit["Reward"] == "0.05" and hit["Keywords"] == "a, b"
    with pytest.raises(c.exceptions.RequestError) as ei:
        c.create_hit_with_hit_type(HITTypeId=t1, LifetimeInSeconds=600, Question=html_question(),
                                   UniqueRequestToken="x1")
    assert hit["HITId"] in ei.value.response["Message"]
    with pytest.raises(c.exceptions.RequestError, match="HITType NOSUCHTYPE does not exist"):
        c.create_hit_with_hit_type(HITTypeId="NOSUCHTYPE", LifetimeInSeconds=600, Question=html_question())


def test_states_max_assignments_and_one_assignment_per_worker(sandbox):
    c, url = client(sandbox.url), sandbox.url
    hid = c.create_hit(**hit_params(MaxAssignments=2))["HIT"]["HITId"]
    s1 = requests.Session()
    r = s1.post(url + "/mturk/accept", data={"hitId": hid, "workerId": "AW1"}, allow_redirects=False)
    assert r.status_code == 303
    h = c.get_hit(HITId=hid)["HIT"]
    assert (h["HITStatus"], h["NumberOfAssignmentsPending"], h["NumberOfAssignmentsAvailable"]) == ("Assignable", 1, 1)
    s2 = requests.Session()
    assert s2.post(url + "/mturk/accept", data={"hitId": hid, "workerId": "AW2"},
                   allow_redirects=False).status_code == 303
    assert c.get_hit(HITId=hid)["HIT"]["HITStatus"] == "Unassignable"
    # a third worker cannot take it; the first may not take a second assignment
    r = requests.post(url + "/mturk/accept", data={"hitId": hid, "workerId": "AW3"}, allow_redirects=False)
    assert r.status_code == 409 and "no longer available" in r.text
    assert c.list_assignments_for_hit(HITId=hid)["NumResults"] == 0  # accepted is not listed
    for s in (s1, s2):
        page = s.get(url + "/")  # cookie carries the worker id
        assert hid not in page.text
    aid1 = accept_and_submit(url, hid, "AW1")
    r = requests.post(url + "/mturk/accept", data={"hitId": hid, "workerId": "AW1"}, allow_redirects=False)
    assert r.status_code == 409 and "already worked" in r.text
    accept_and_submit(url, hid, "AW2")
    h = c.get_hit(HITId=hid)["HIT"]
    assert h["HITStatus"] == "Reviewable" and h["NumberOfAssignmentsCompleted"] == 0
    assert [x["HITId"] for x in c.list_reviewable_hits()["HITs"]] == [hid]
    # approve, approve twice, reject an approved one, override a rejection
    c.approve_assignment(AssignmentId=aid1)
    with pytest.raises(c.exceptions.RequestError) as ei:
        c.approve_assignment(AssignmentId=aid1)
    assert ei.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.InvalidAssignmentState"
    with pytest.raises(c.exceptions.RequestError):
        c.reject_assignment(AssignmentId=aid1, RequesterFeedback="no")
    aid2 = [a["AssignmentId"] for a in c.list_assignments_for_hit(HITId=hid)["Assignments"] if a["WorkerId"] == "AW2"][0]
    c.reject_assignment(AssignmentId=aid2, RequesterFeedback="failed the check")
    with pytest.raises(c.exceptions.RequestError):
        c.approve_assignment(AssignmentId=aid2)
    c.approve_assignment(AssignmentId=aid2, OverrideRejection=True)
    statuses = sorted(a["AssignmentStatus"] for a in c.list_assignments_for_hit(HITId=hid)["Assignments"])
    assert statuses == ["Approved", "Approved"]
    assert c.get_hit(HITId=hid)["HIT"]["NumberOfAssignmentsCompleted"] == 2
    c.delete_hit(HITId=hid)
    c.delete_hit(HITId=hid)  # deleting twice is harmless
    assert c.get_hit(HITId=hid)["HIT"]["HITStatus"] == "Disposed"
    assert c.list_hits()["NumResults"] == 0


def test_abandoned_assignment_frees_its_slot(sandbox):
    c, url = client(sandbox.url), sandbox.url
    hid = c.create_hit(**hit_params(MaxAssignments=1, AssignmentDurationInSeconds=60))["HIT"]["HITId"]
    r = requests.post(url + "/mturk/accept", data={"hitId": hid, "workerId": "AW1"}, allow_redirects=False)
    aid = r.headers["Location"].split("=")[1]
    assert c.get_hit(HITId=hid)["HIT"]["HITStatus"] == "Unassignable"
    sandbox.store.advance_clock(61)
    assert c.get_hit(HITId=hid)["HIT"]["HITStatus"] == "Assignable"
    r = requests.post(url + "/mturk/externalSubmit", data={"assignmentId": aid, "i0_fluency": "3"})
    assert r.status_code == 409 and "time allotted" in r.text


def test_auto_approval_after_the_delay(sandbox):
    c = client(sandbox.url)
    hid = c.create_hit(**hit_params(MaxAssignments=1, AutoApprovalDelayInSeconds=100))["HIT"]["HITId"]
    aid = accept_and_submit(sandbox.url, hid, "AW1")
    a = c.get_assignment(AssignmentId=aid)["Assignment"]
    assert a["AssignmentStatus"] == "Submitted"
    assert (a["AutoApprovalTime"] - a["SubmitTime"]).total_seconds() == pytest.approx(100)
    sandbox.store.advance_clock(101)
    a = c.get_assignment(AssignmentId=aid)["Assignment"]
    assert a["AssignmentStatus"] == "Approved" and a["ApprovalTime"] == a["AutoApprovalTime"]
    with pytest.raises(c.exceptions.RequestError):
        c.approve_assignment(AssignmentId=aid)


def test_expiry_and_delete_rules(sandbox):
    c, url = client(sandbox.url), sandbox.url
    hid = c.create_hit(**hit_params(MaxAssignments=3))["HIT"]["HITId"]
    with pytest.raises(c.exceptions.RequestError, match="Reviewing, Reviewable"):
        c.delete_hit(HITId=hid)
    aid = accept_and_submit(url, hid, "AW1")
    c.update_expiration_for_hit(HITId=hid, ExpireAt=0)  # a past time expires now
    h = c.get_hit(HITId=hid)["HIT"]
    assert h["HITStatus"] == "Reviewable" and h["NumberOfAssignmentsAvailable"] == 0
    assert hid not in requests.get(url + "/").text
    r = requests.post(url + "/mturk/accept", data={"hitId": hid, "workerId": "AW9"}, allow_redirects=False)
    assert r.status_code == 409
    with pytest.raises(c.exceptions.RequestError, match="neither approved nor rejected"):
        c.delete_hit(HITId=hid)
    c.approve_assignment(AssignmentId=aid)
    # extending brings it back
    c.update_expiration_for_hit(HITId=hid, ExpireAt=time.time() + 3600)
    assert c.get_hit(HITId=hid)["HIT"]["HITStatus"] == "Assignable"
    c.update_expiration_for_hit(HITId=hid, ExpireAt=0)
    c.delete_hit(HITId=hid)
    with pytest.raises(c.exceptions.RequestError, match="deleted"):
        c.update_expiration_for_hit(HITId=hid, ExpireAt=0)
    # lifetime runs out by itself
    hid2 = c.create_hit(**hit_params(LifetimeInSeconds=60))["HIT"]["HITId"]
    sandbox.store.advance_clock(61)
    assert c.get_hit(HITId=hid2)["HIT"]["HITStatus"] == "Reviewable"


def test_pagination_of_hits_and_assignments(sandbox):
    c, url = client(sandbox.url), sandbox.url
    ids = [c.create_hit(**hit_params(MaxAssignments=12))["HIT"]["HITId"] for _ in range(23)]
    seen, token, pages = [], None, 0
    while True:
        kw = {"MaxResults": 10, **({"NextToken": token} if token else {})}
        page = c.list_hits(**kw)
        assert page["NumResults"] == len(page["HITs"])
        seen += [h["HITId"] for h in page["HITs"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert seen == ids and pages == 3
    via_paginator = [h["HITId"] for p in c.get_paginator("list_hits").paginate(PaginationConfig={"PageSize": 7})
                     for h in p["HITs"]]
    assert via_paginator == ids
    for i in range(12):
        accept_and_submit(url, ids[0], f"AW{i}")
    got = [a["AssignmentId"] for p in c.get_paginator("list_assignments_for_hit").paginate(
        HITId=ids[0], PaginationConfig={"PageSize": 5}) for a in p["Assignments"]]
    assert len(got) == 12 == len(set(got))
    assert c.list_assignments_for_hit(HITId=ids[0], AssignmentStatuses=["Approved"])["NumResults"] == 0
    with pytest.raises(c.exceptions.RequestError, match="NextToken"):
        c.list_hits(NextToken=base64.urlsafe_b64encode(b"garbage").decode())
    reviewable = [h["HITId"] for p in c.get_paginator("list_reviewable_hits").paginate() for h in p["HITs"]]
    assert reviewable == [ids[0]]


def test_bonus_block_and_qualification(sandbox):
    c, url = client(sandbox.url), sandbox.url
    hid = c.create_hit(**hit_params())["HIT"]["HITId"]
    aid = accept_and_submit(url, hid, "AW1")
    c.send_bonus(WorkerId="AW1", BonusAmount="0.25", AssignmentId=aid, Reason="good", UniqueRequestToken="b1")
    with pytest.raises(c.exceptions.RequestError, match="already been processed"):
        c.send_bonus(WorkerId="AW1", BonusAmount="0.25", AssignmentId=aid, Reason="good", UniqueRequestToken="b1")
    with pytest.raises(c.exceptions.RequestError, match="not done by worker"):
        c.send_bonus(WorkerId="AW2", BonusAmount="0.25", AssignmentId=aid, Reason="x")
    with pytest.raises(c.exceptions.RequestError, match="greater than 0"):
        c.send_bonus(WorkerId="AW1", BonusAmount="0", AssignmentId=aid, Reason="x")
    pays = c.list_bonus_payments(AssignmentId=aid)["BonusPayments"]
    assert [(p["WorkerId"], p["BonusAmount"]) for p in pays] == [("AW1", "0.25")]
    c.create_worker_block(WorkerId="ABLOCKED", Reason="spam")
    r = requests.post(url + "/mturk/accept", data={"hitId": hid, "workerId": "ABLOCKED"}, allow_redirects=False)
    assert r.status_code == 409 and "blocked" in r.text
    assert [b["WorkerId"] for b in c.list_worker_blocks()["WorkerBlocks"]] == ["ABLOCKED"]
    q = c.create_qualification_type(Name="good raters", Description="d", QualificationTypeStatus="Active",
                                    AutoGranted=True)["QualificationType"]
    assert q["Name"] == "good raters" and q["QualificationTypeStatus"] == "Active"
    with pytest.raises(c.exceptions.RequestError, match="already created"):
        c.create_qualification_type(Name="good raters", Description="d", QualificationTypeStatus="Active")


def test_state_survives_restart(tmp_path):
    state = tmp_path / "state.sqlite"
    with sandbox_server(state) as srv:
        c = client(srv.url)
        hid = c.create_hit(**hit_params(UniqueRequestToken="persist"))["HIT"]["HITId"]
        aid = accept_and_submit(srv.url, hid, "AW1")
    with sandbox_server(state) as srv:
        c = client(srv.url)
        assert c.get_assignment(AssignmentId=aid)["Assignment"]["AssignmentStatus"] == "Submitted"
        with pytest.raises(c.exceptions.RequestError, match=hid):
            c.create_hit(**hit_params(UniqueRequestToken="persist"))


def test_binds_loopback_by_default(sandbox):
    assert sandbox.url.startswith("http://127.0.0.1:")
    assert sandbox.server.server_address[0] == "127.0.0.1"


def test_answer_is_question_form_answers_one_answer_per_field(sandbox):
    c = client(sandbox.url)
    hid = c.create_hit(**hit_params(MaxAssignments=1))["HIT"]["HITId"]
    aid = accept_and_submit(sandbox.url, hid, "AW1", answers={
        "i0_fluency": "5", "i0_engagingness": "4", "i0_relevance": "3", "i0_persona": "2",
        "comment": "<b>&nice</b> ]]>", "mturk_eval_simulated": "1"})
    xml = c.get_assignment(AssignmentId=aid)["Assignment"]["Answer"]
    schema = SCHEMAS / "QuestionFormAnswers-2005-10-01.xsd"
    if schema.exists():
        xmlschema.XMLSchema(str(schema)).validate(xml)
    root = etree.fromstring(xml.encode())
    got = {a.findtext(f"{{{ANSWERS_NS}}}QuestionIdentifier"): a.findtext(f"{{{ANSWERS_NS}}}FreeText")
           for a in root.findall(f"{{{ANSWERS_NS}}}Answer")}
    assert got == {"i0_fluency": "5", "i0_engagingness": "4", "i0_relevance": "3", "i0_persona": "2",
                   "comment": "<b>&nice</b> ]]>", "mturk_eval_simulated": "1"}

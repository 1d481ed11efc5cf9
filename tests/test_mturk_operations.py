"""Contract tests of the local MTurk: every operation of botocore's mturk model through boto3 (and raw
requests whose responses are checked against the model), against a running server, with MTurk's rules
and error shapes, and the worker site's side of each (requirements, messages, qualification tests)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from lxml import etree

from helpers.sandbox import client, hit_params, html_question, parse_ok, raw, sandbox  # noqa: F401
from mturk_eval.emulators.mturk import qualifications as q
from mturk_eval.emulators.mturk.responses import OPERATIONS, service_model

QF = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2017-11-06/QuestionForm.xsd"
AK = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/AnswerKey.xsd"
QFA_XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "schemas" / "QuestionFormAnswers-2005-10-01.xsd")))

TEST_FORM = (f'<QuestionForm xmlns="{QF}"><Question><QuestionIdentifier>capital</QuestionIdentifier>'
             "<IsRequired>true</IsRequired><QuestionContent><Text>Capital of France?</Text></QuestionContent>"
             "<AnswerSpecification><SelectionAnswer><Selections>"
             "<Selection><SelectionIdentifier>paris</SelectionIdentifier><Text>Paris</Text></Selection>"
             "<Selection><SelectionIdentifier>rome</SelectionIdentifier><Text>Rome</Text></Selection>"
             "</Selections></SelectionAnswer></AnswerSpecification></Question></QuestionForm>")
ANSWER_KEY = (f'<AnswerKey xmlns="{AK}"><Question><QuestionIdentifier>capital</QuestionIdentifier><AnswerOption>'
              "<SelectionIdentifier>paris</SelectionIdentifier><AnswerScore>90</AnswerScore></AnswerOption>"
              "</Question></AnswerKey>")


def site(url: str, worker: str) -> requests.Session:
    s = requests.Session()
    s.cookies.set("workerId", worker)
    return s


def accept(url, hit_id, worker):
    return site(url, worker).post(url + "/mturk/accept", data={"hitId": hit_id}, allow_redirects=False)


def work(url, hit_id, worker, answers=None):
    r = accept(url, hit_id, worker)
    assert r.status_code == 303, r.text
    aid = r.headers["Location"].split("assignmentId=")[1]
    r = site(url, worker).post(url + "/mturk/externalSubmit", data={"assignmentId": aid, **(answers or {"x": "1"})})
    assert r.status_code == 200, r.text
    return aid


def profile(url, worker, **kw):
    r = requests.post(url + "/_sandbox/workers", json={"worker_id": worker, **kw}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["worker"]


def ok(url, op, params):
    r = raw(url, op, params)
    assert r.status_code == 200, (op, r.text)
    return parse_ok(op, r)


def refused(url, op, params, code, needle=""):
    r = raw(url, op, params)
    body = r.json()
    assert r.status_code == 400 and body["__type"] == "RequestError", r.text
    assert body["TurkErrorCode"] == f"AWS.MechanicalTurk.{code}", body
    assert needle in body["Message"], body
    return body["Message"]


def test_every_operation_of_the_service_model_is_served():
    assert set(service_model().operation_names) == set(OPERATIONS)


def test_qualification_types_create_get_update_list_delete(sandbox):
    url, c = sandbox.url, client(sandbox.url)
    t = ok(url, "CreateQualificationType", {"Name": "Raters EN", "Description": "English raters", "Keywords": "rate",
                                            "QualificationTypeStatus": "Active", "AutoGranted": True})
    t = t["QualificationType"]
    assert t["AutoGranted"] is True and t["AutoGrantedValue"] == 1 and t["IsRequestable"] is True
    tid = t["QualificationTypeId"]
    assert ok(url, "GetQualificationType", {"QualificationTypeId": tid})["QualificationType"]["Name"] == "Raters EN"
    sys_type = ok(url, "GetQualificationType", {"QualificationTypeId": q.LOCALE})["QualificationType"]
    assert sys_type["Name"] == "Worker_Locale" and sys_type["IsRequestable"] is False
    up = ok(url, "UpdateQualificationType", {"QualificationTypeId": tid, "Description": "new",
                                             "QualificationTypeStatus": "Inactive"})["QualificationType"]
    assert up["Description"] == "new" and up["QualificationTypeStatus"] == "Inactive" and up["Name"] == "Raters EN"
    mine = ok(url, "ListQualificationTypes", {"MustBeRequestable": False, "MustBeOwnedByCaller": True})
    assert [x["QualificationTypeId"] for x in mine["QualificationTypes"]] == [tid] and mine["NumResults"] == 1
    everything = ok(url, "ListQualificationTypes", {"MustBeRequestable": False, "Query": "locale"})
    assert [x["QualificationTypeId"] for x in everything["QualificationTypes"]] == [q.LOCALE]
    names = [x["Name"] for p in c.get_paginator("list_qualification_types").paginate(
        MustBeRequestable=False, PaginationConfig={"PageSize": 3}) for x in p["QualificationTypes"]]
    assert len(names) == len(q.SYSTEM_TYPES) + 1 and "Raters EN" in names
    with pytest.raises(c.exceptions.RequestError, match="cannot be AutoGranted"):
        c.create_qualification_type(Name="t", Description="d", QualificationTypeStatus="Active", AutoGranted=True,
                                    Test=TEST_FORM, TestDurationInSeconds=60)
    with pytest.raises(c.exceptions.RequestError, match="TestDurationInSeconds must also be specified"):
        c.create_qualification_type(Name="t", Description="d", QualificationTypeStatus="Active", Test=TEST_FORM)
    with pytest.raises(c.exceptions.RequestError, match="not in the Test"):
        c.create_qualification_type(Name="t", Description="d", QualificationTypeStatus="Active", Test=TEST_FORM,
                                    TestDurationInSeconds=60, AnswerKey=ANSWER_KEY.replace(">capital<", ">other<"))
    with pytest.raises(c.exceptions.RequestError, match="Amazon's schema"):
        c.create_qualification_type(Name="t", Description="d", QualificationTypeStatus="Active",
                                    Test=TEST_FORM.replace("<Text>Paris</Text>", ""), TestDurationInSeconds=60)
    refused(url, "UpdateQualificationType", {"QualificationTypeId": q.LOCALE, "Description": "x"},
            "QualificationTypeNotOwned")
    ok(url, "DeleteQualificationType", {"QualificationTypeId": tid})
    refused(url, "GetQualificationType", {"QualificationTypeId": tid}, "QualificationTypeDoesNotExist")
    assert sandbox.store.counts()["qualification_types"] == 0


def test_grants_scores_revocations_and_the_workers_messages(sandbox):
    url = sandbox.url
    tid = ok(url, "CreateQualificationType", {"Name": "good", "Description": "d", "QualificationTypeStatus": "Active"}
             )["QualificationType"]["QualificationTypeId"]
    ok(url, "AssociateQualificationWithWorker", {"QualificationTypeId": tid, "WorkerId": "AW1", "IntegerValue": 80})
    ok(url, "AssociateQualificationWithWorker", {"QualificationTypeId": tid, "WorkerId": "AW2",
                                                 "SendNotification": False})
    score = ok(url, "GetQualificationScore", {"QualificationTypeId": tid, "WorkerId": "AW1"})["Qualification"]
    assert (score["IntegerValue"], score["Status"]) == (80, "Granted")
    listed = ok(url, "ListWorkersWithQualificationType", {"QualificationTypeId": tid, "Status": "Granted"})
    assert [(x["WorkerId"], x["IntegerValue"]) for x in listed["Qualifications"]] == [("AW1", 80), ("AW2", 1)]
    ok(url, "DisassociateQualificationFromWorker", {"QualificationTypeId": tid, "WorkerId": "AW1",
                                                    "Reason": "too fast"})
    assert ok(url, "GetQualificationScore", {"QualificationTypeId": tid, "WorkerId": "AW1"}
              )["Qualification"]["Status"] == "Revoked"
    assert [x["WorkerId"] for x in ok(url, "ListWorkersWithQualificationType",
                                      {"QualificationTypeId": tid, "Status": "Revoked"})["Qualifications"]] == ["AW1"]
    refused(url, "DisassociateQualificationFromWorker", {"QualificationTypeId": tid, "WorkerId": "AW1"},
            "QualificationDoesNotExist")
    refused(url, "GetQualificationScore", {"QualificationTypeId": tid, "WorkerId": "AW9"}, "QualificationDoesNotExist")
    sys_score = ok(url, "GetQualificationScore", {"QualificationTypeId": q.LOCALE, "WorkerId": "AW9"})
    assert sys_score["Qualification"]["LocaleValue"] == {"Country": "US"}
    before = sandbox.store.counts()
    refused(url, "AssociateQualificationWithWorker", {"QualificationTypeId": "NOSUCHTYPE1", "WorkerId": "AW1"},
            "QualificationTypeDoesNotExist", "NOSUCHTYPE1")
    refused(url, "AssociateQualificationWithWorker", {"QualificationTypeId": q.PERCENT_APPROVED, "WorkerId": "AW1"},
            "QualificationTypeNotOwned")
    assert sandbox.store.counts() == before
    page = site(url, "AW1").get(url + "/mturk/messages").text
    assert "Qualification granted: good" in page and "Qualification revoked: good" in page and "too fast" in page
    assert "Qualification granted" not in site(url, "AW2").get(url + "/mturk/messages").text


def test_requests_are_granted_tested_accepted_or_rejected(sandbox):
    url = sandbox.url
    manual = ok(url, "CreateQualificationType", {"Name": "manual", "Description": "d",
                                                 "QualificationTypeStatus": "Active"})["QualificationType"]
    auto = ok(url, "CreateQualificationType", {"Name": "auto", "Description": "d", "QualificationTypeStatus": "Active",
                                               "AutoGranted": True, "AutoGrantedValue": 7})["QualificationType"]
    tested = ok(url, "CreateQualificationType", {"Name": "quiz", "Description": "d", "QualificationTypeStatus": "Active",
                                                 "Test": TEST_FORM, "AnswerKey": ANSWER_KEY,
                                                 "TestDurationInSeconds": 600})["QualificationType"]
    by_hand = ok(url, "CreateQualificationType", {"Name": "essay", "Description": "d", "Test": TEST_FORM,
                                                  "QualificationTypeStatus": "Active", "TestDurationInSeconds": 600,
                                                  "RetryDelayInSeconds": 0})["QualificationType"]
    page = site(url, "AW1").get(url + "/mturk/qualifications").text
    assert all(n in page for n in ("manual", "auto", "quiz", "essay"))

    def ask(worker, tid):
        return site(url, worker).post(url + "/mturk/qualifications/request", data={"qualificationTypeId": tid},
                                      allow_redirects=False)

    assert "granted" in ask("AW1", auto["QualificationTypeId"]).text
    assert ok(url, "GetQualificationScore", {"QualificationTypeId": auto["QualificationTypeId"], "WorkerId": "AW1"}
              )["Qualification"]["IntegerValue"] == 7
    r = ask("AW1", tested["QualificationTypeId"])
    assert r.status_code == 303
    test_url = url + r.headers["Location"]
    form = site(url, "AW1").get(test_url).text
    assert "Capital of France?" in form and 'value="paris"' in form
    rid = test_url.split("requestId=")[1]
    bad = site(url, "AW1").post(url + "/mturk/qualification-test", data={"requestId": rid})
    assert bad.status_code == 400 and "needs an answer" in bad.text
    good = site(url, "AW1").post(url + "/mturk/qualification-test", data={"requestId": rid, "capital": "paris"})
    assert good.status_code == 200 and "scored" in good.text
    assert ok(url, "GetQualificationScore", {"QualificationTypeId": tested["QualificationTypeId"], "WorkerId": "AW1"}
              )["Qualification"]["IntegerValue"] == 90
    assert site(url, "AW2").get(test_url).status_code == 409  # another worker's test
    # a test without an answer key, and a plain request: the requester decides
    r = ask("AW2", by_hand["QualificationTypeId"])
    rid2 = r.headers["Location"].split("requestId=")[1]
    site(url, "AW2").post(url + "/mturk/qualification-test", data={"requestId": rid2, "capital": "rome"})
    assert ask("AW3", manual["QualificationTypeId"]).status_code == 200
    assert ask("AW3", manual["QualificationTypeId"]).status_code == 409   # pending already
    pending = ok(url, "ListQualificationRequests", {})["QualificationRequests"]
    assert [(p["WorkerId"], p["QualificationTypeId"]) for p in pending] == [
        ("AW2", by_hand["QualificationTypeId"]), ("AW3", manual["QualificationTypeId"])]
    assert pending[0]["Test"] == TEST_FORM and QFA_XSD.validate(etree.fromstring(pending[0]["Answer"].encode()))
    assert "<SelectionIdentifier>rome</SelectionIdentifier>" in pending[0]["Answer"]
    ok(url, "AcceptQualificationRequest", {"QualificationRequestId": pending[0]["QualificationRequestId"],
                                           "IntegerValue": 40})
    ok(url, "RejectQualificationRequest", {"QualificationRequestId": pending[1]["QualificationRequestId"],
                                           "Reason": "not this time"})
    refused(url, "AcceptQualificationRequest", {"QualificationRequestId": pending[1]["QualificationRequestId"]},
            "InvalidQualificationRequestState")
    refused(url, "AcceptQualificationRequest", {"QualificationRequestId": "NOPE"}, "QualificationRequestDoesNotExist")
    assert ok(url, "ListQualificationRequests", {"QualificationTypeId": manual["QualificationTypeId"]}
              )["NumResults"] == 0
    assert "not this time" in site(url, "AW3").get(url + "/mturk/messages").text
    assert ask("AW3", manual["QualificationTypeId"]).status_code == 409   # retries not enabled


def create_gated_hit(url, tid, **over):
    reqs = [{"QualificationTypeId": tid, "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [50]},
            {"QualificationTypeId": q.LOCALE, "Comparator": "In", "LocaleValues": [{"Country": "GB"},
                                                                                   {"Country": "US", "Subdivision": "CA"}],
             "ActionsGuarded": "PreviewAndAccept"},
            {"QualificationTypeId": q.PERCENT_APPROVED, "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [95],
             "ActionsGuarded": "DiscoverPreviewAndAccept"},
            {"QualificationTypeId": q.NUMBER_APPROVED, "Comparator": "GreaterThan", "IntegerValues": [100]}]
    return ok(url, "CreateHIT", hit_params(QualificationRequirements=reqs, **over))["HIT"]


def test_requirements_are_enforced_on_the_worker_site(sandbox):
    url = sandbox.url
    tid = ok(url, "CreateQualificationType", {"Name": "skill", "Description": "d", "QualificationTypeStatus": "Active"}
             )["QualificationType"]["QualificationTypeId"]
    hit = create_gated_hit(url, tid)
    hid = hit["HITId"]
    profile(url, "ALOWRATE", country="GB", approved=90, rejected=10)      # 90%: not even listed
    profile(url, "ANOLOCALE", country="FR", approved=500)                  # cannot preview
    profile(url, "ANOSKILL", country="US", subdivision="CA", approved=500)  # can preview, not accept
    profile(url, "AQUALIFIED", country="GB", approved=500, rejected=5)
    ok(url, "AssociateQualificationWithWorker", {"QualificationTypeId": tid, "WorkerId": "AQUALIFIED",
                                                 "IntegerValue": 60, "SendNotification": False})
    ok(url, "AssociateQualificationWithWorker", {"QualificationTypeId": tid, "WorkerId": "ANOSKILL",
                                                 "IntegerValue": 10, "SendNotification": False})

    def listed(worker):
        return hid in site(url, worker).get(url + "/").text

    assert [listed(w) for w in ("ALOWRATE", "ANOLOCALE", "ANOSKILL", "AQUALIFIED")] == [False, True, True, True]
    preview = site(url, "ANOLOCALE").get(url + f"/mturk/preview?hitId={hid}")
    assert preview.status_code == 403 and "Worker_Locale In GB, US-CA" in preview.text
    task = site(url, "ANOLOCALE").get(url + f"/mturk/task?hitId={hid}&assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE")
    assert task.status_code == 403
    p = site(url, "ANOSKILL").get(url + f"/mturk/preview?hitId={hid}")
    assert p.status_code == 200 and 'id="accept"' not in p.text and "skill GreaterThanOrEqualTo 50" in p.text
    for worker in ("ALOWRATE", "ANOLOCALE", "ANOSKILL"):
        r = accept(url, hid, worker)
        assert r.status_code == 409 and "do not meet the Qualification requirements" in r.text
    assert sandbox.store.counts()["assignments"] == 0
    assert 'id="accept"' in site(url, "AQUALIFIED").get(url + f"/mturk/preview?hitId={hid}").text
    work(url, hid, "AQUALIFIED")
    assert ok(url, "ListAssignmentsForHIT", {"HITId": hid})["Assignments"][0]["WorkerId"] == "AQUALIFIED"
    # history counts: the approval rate follows approvals and rejections made here
    assert ok(url, "GetQualificationScore", {"QualificationTypeId": q.NUMBER_APPROVED, "WorkerId": "AQUALIFIED"}
              )["Qualification"]["IntegerValue"] == 500
    profiles = requests.get(url + "/_sandbox/workers", timeout=5).json()["workers"]
    assert {p["worker_id"] for p in profiles} == {"ALOWRATE", "ANOLOCALE", "ANOSKILL", "AQUALIFIED"}
    assert requests.post(url + "/_sandbox/workers", json={"worker_id": "AX", "country": "usa"}).status_code == 400
    assert requests.post(url + "/_sandbox/workers", json={"worker_id": "AX", "colour": "red"}).status_code == 400


def test_bad_requirements_are_refused_and_nothing_is_stored(sandbox):
    url = sandbox.url
    before = sandbox.store.counts()
    refused(url, "CreateHIT", hit_params(QualificationRequirements=[
        {"QualificationTypeId": "3NOSUCHQUALTYPE", "Comparator": "Exists"}]), "QualificationTypeDoesNotExist",
        "3NOSUCHQUALTYPE")
    refused(url, "CreateHITType", {"Title": "t", "Description": "d", "Reward": "0.10", "AssignmentDurationInSeconds": 60,
                                   "QualificationRequirements": [{"QualificationTypeId": q.LOCALE,
                                                                  "Comparator": "GreaterThan",
                                                                  "LocaleValues": [{"Country": "US"}]}]},
            "InvalidParameterValue", "LocaleValue can only be used with")
    refused(url, "CreateHIT", hit_params(QualificationRequirements=[
        {"QualificationTypeId": q.PERCENT_APPROVED, "Comparator": "Exists", "IntegerValues": [1]}]),
        "InvalidParameterValue", "must not be present")
    refused(url, "CreateHIT", hit_params(AssignmentReviewPolicy={"PolicyName": "SimplePlurality/2011-09-01"}),
            "InvalidParameterValue", "ScoreMyKnownAnswers")
    assert sandbox.store.counts() == before


def test_notify_workers_reaches_the_worker_site(sandbox):
    url = sandbox.url
    hid = ok(url, "CreateHIT", hit_params())["HIT"]["HITId"]
    aid = work(url, hid, "ADONE")
    ok(url, "ApproveAssignment", {"AssignmentId": aid})
    out = ok(url, "NotifyWorkers", {"Subject": "Round 2 is open", "MessageText": "Dear rater,\nplease <b>come</b> back.",
                                    "WorkerIds": ["ADONE", "ANEVERWORKED"]})
    assert [(f["WorkerId"], f["NotifyWorkersFailureCode"]) for f in out["NotifyWorkersFailureStatuses"]] == [
        ("ANEVERWORKED", "HardFailure")]
    page = site(url, "ADONE").get(url + "/mturk/messages").text
    assert "Round 2 is open" in page and "please &lt;b&gt;come&lt;/b&gt; back." in page
    assert "Messages (1)" in site(url, "ADONE").get(url + "/").text
    assert "Round 2" not in site(url, "ANEVERWORKED").get(url + "/mturk/messages").text
    refused(url, "NotifyWorkers", {"Subject": "s", "MessageText": "m", "WorkerIds": [f"A{i}" for i in range(101)]},
            "InvalidParameterValue", "up to 100")
    refused(url, "NotifyWorkers", {"Subject": "s" * 201, "MessageText": "m", "WorkerIds": ["ADONE"]},
            "InvalidParameterValue", "Subject")
    refused(url, "NotifyWorkers", {"Subject": "s", "MessageText": "m" * 4097, "WorkerIds": ["ADONE"]},
            "InvalidParameterValue", "MessageText")
    assert sandbox.store.counts()["worker_messages"] == 1


def test_additional_assignments_follow_the_ten_assignment_rule(sandbox):
    url = sandbox.url
    small = ok(url, "CreateHIT", hit_params(MaxAssignments=5))["HIT"]["HITId"]
    ok(url, "CreateAdditionalAssignmentsForHIT", {"HITId": small, "NumberOfAdditionalAssignments": 4,
                                                  "UniqueRequestToken": "ext-1"})
    assert ok(url, "GetHIT", {"HITId": small})["HIT"]["MaxAssignments"] == 9
    msg = refused(url, "CreateAdditionalAssignmentsForHIT", {"HITId": small, "NumberOfAdditionalAssignments": 1},
                  "InvalidMaximumAssignmentsIncrease", "fewer than 10 assignments cannot be extended")
    assert "created with 5" in msg
    refused(url, "CreateAdditionalAssignmentsForHIT", {"HITId": small, "NumberOfAdditionalAssignments": 1,
                                                       "UniqueRequestToken": "ext-1"}, "DuplicateRequest")
    assert ok(url, "GetHIT", {"HITId": small})["HIT"]["MaxAssignments"] == 9
    big = ok(url, "CreateHIT", hit_params(MaxAssignments=10))["HIT"]["HITId"]
    ok(url, "CreateAdditionalAssignmentsForHIT", {"HITId": big, "NumberOfAdditionalAssignments": 15})
    assert ok(url, "GetHIT", {"HITId": big})["HIT"]["NumberOfAssignmentsAvailable"] == 25
    refused(url, "CreateAdditionalAssignmentsForHIT", {"HITId": big, "NumberOfAdditionalAssignments": 0},
            "InvalidParameterValue")
    # a full, reviewable HIT becomes assignable again
    one = ok(url, "CreateHIT", hit_params(MaxAssignments=1))["HIT"]["HITId"]
    work(url, one, "AW1")
    assert ok(url, "GetHIT", {"HITId": one})["HIT"]["HITStatus"] == "Reviewable"
    ok(url, "CreateAdditionalAssignmentsForHIT", {"HITId": one, "NumberOfAdditionalAssignments": 1})
    assert ok(url, "GetHIT", {"HITId": one})["HIT"]["HITStatus"] == "Assignable"
    ok(url, "UpdateExpirationForHIT", {"HITId": one, "ExpireAt": time.time() - 5})
    refused(url, "CreateAdditionalAssignmentsForHIT", {"HITId": one, "NumberOfAdditionalAssignments": 1},
            "InvalidHITState", "expired")


def test_hit_types_review_policies_notifications_and_file_uploads(sandbox):
    url = sandbox.url
    tid = ok(url, "CreateQualificationType", {"Name": "k", "Description": "d", "QualificationTypeStatus": "Active"}
             )["QualificationType"]["QualificationTypeId"]
    gated = {"QualificationTypeId": tid, "Comparator": "Exists"}
    policy = {"PolicyName": "ScoreMyKnownAnswers/2011-09-01",
              "Parameters": [{"Key": "AnswerKey", "MapEntries": [{"Key": "q1", "Values": ["a"]}]}]}
    hit = ok(url, "CreateHIT", hit_params(AssignmentReviewPolicy=policy,
                                          HITReviewPolicy={"PolicyName": "SimplePlurality/2011-09-01"}))["HIT"]
    new_type = ok(url, "CreateHITType", {"Title": "Other title", "Description": "d", "Reward": "0.20",
                                         "AssignmentDurationInSeconds": 120, "QualificationRequirements": [gated]})
    ok(url, "UpdateHITTypeOfHIT", {"HITId": hit["HITId"], "HITTypeId": new_type["HITTypeId"]})
    moved = ok(url, "GetHIT", {"HITId": hit["HITId"]})["HIT"]
    assert (moved["Title"], moved["Reward"], moved["HITTypeId"]) == ("Other title", "0.20", new_type["HITTypeId"])
    refused(url, "UpdateHITTypeOfHIT", {"HITId": hit["HITId"], "HITTypeId": "NOSUCHTYPE"}, "HITTypeDoesNotExist")
    listed = ok(url, "ListHITsForQualificationType", {"QualificationTypeId": tid})
    assert [h["HITId"] for h in listed["HITs"]] == [hit["HITId"]]
    report = ok(url, "ListReviewPolicyResultsForHIT", {"HITId": hit["HITId"], "RetrieveResults": True,
                                                       "RetrieveActions": True})
    assert report["AssignmentReviewPolicy"] == policy
    assert report["HITReviewPolicy"]["PolicyName"] == "SimplePlurality/2011-09-01"
    assert report["AssignmentReviewReport"] == {"ReviewResults": [], "ReviewActions": []}
    only_hit = ok(url, "ListReviewPolicyResultsForHIT", {"HITId": hit["HITId"], "PolicyLevels": ["HIT"]})
    assert "AssignmentReviewPolicy" not in only_hit and "HITReviewPolicy" in only_hit
    spec = {"Destination": "me@example.org", "Transport": "Email", "Version": "2006-05-05",
            "EventTypes": ["AssignmentSubmitted"]}
    ok(url, "UpdateNotificationSettings", {"HITTypeId": new_type["HITTypeId"], "Notification": spec, "Active": True})
    ok(url, "UpdateNotificationSettings", {"HITTypeId": new_type["HITTypeId"], "Active": False})
    with sandbox.store.lock:
        assert sandbox.store.notification_settings(new_type["HITTypeId"]) == {"Notification": spec, "Active": False}
    refused(url, "UpdateNotificationSettings", {"HITTypeId": new_type["HITTypeId"],
                                                "Notification": {**spec, "Version": "2017-01-17"}},
            "InvalidParameterValue", "2006-05-05")
    refused(url, "UpdateNotificationSettings", {"HITTypeId": new_type["HITTypeId"],
                                                "Notification": {**spec, "EventTypes": ["Ping"]}},
            "InvalidParameterValue", "Ping")
    refused(url, "UpdateNotificationSettings", {"HITTypeId": new_type["HITTypeId"],
                                                "Notification": {**spec, "Transport": "SQS"}},
            "InvalidParameterValue", "SQS queue URL")
    ok(url, "SendTestEventNotification", {"Notification": {**spec, "EventTypes": ["Ping"]}, "TestEventType": "Ping"})
    assert sandbox.store.counts()["test_events"] == 1
    aid = work(url, ok(url, "CreateHIT", hit_params())["HIT"]["HITId"], "AW1")
    refused(url, "GetFileUploadURL", {"AssignmentId": aid, "QuestionIdentifier": "file"}, "InvalidParameterValue",
            "no file upload answer")


QUESTION_FORM = (f'<QuestionForm xmlns="{QF}"><Overview><Title>Rate the reply</Title><Text>The reply: "hi!"</Text>'
                 "</Overview><Question><QuestionIdentifier>fluency</QuestionIdentifier><IsRequired>true</IsRequired>"
                 "<QuestionContent><Text>How fluent?</Text></QuestionContent><AnswerSpecification><SelectionAnswer>"
                 "<Selections>" + "".join(f"<Selection><SelectionIdentifier>{i}</SelectionIdentifier><Text>{i}</Text>"
                                          "</Selection>" for i in range(1, 6)) +
                 "</Selections></SelectionAnswer></AnswerSpecification></Question><Question><QuestionIdentifier>age"
                 "</QuestionIdentifier><IsRequired>true</IsRequired><QuestionContent><Text>Your age</Text>"
                 "</QuestionContent><AnswerSpecification><FreeTextAnswer><Constraints><IsNumeric minValue='18'/>"
                 "</Constraints></FreeTextAnswer></AnswerSpecification></Question><Question><QuestionIdentifier>why"
                 "</QuestionIdentifier><QuestionContent><Text>Why?</Text></QuestionContent><AnswerSpecification>"
                 "<FreeTextAnswer/></AnswerSpecification></Question></QuestionForm>")


def test_question_form_hits_are_drawn_checked_and_answered_as_mturk_does(sandbox):
    url = sandbox.url
    before = sandbox.store.counts()
    refused(url, "CreateHIT", hit_params(Question=QUESTION_FORM.replace("<Text>How fluent?</Text>", "")),
            "XMLParseError", "does not validate against Amazon's schema")
    refused(url, "CreateHIT", hit_params(Question=QUESTION_FORM.replace("<QuestionIdentifier>why",
                                                                        "<QuestionIdentifier>age")),
            "XMLParseError", "used by more than one Question")
    assert sandbox.store.counts() == before
    hid = ok(url, "CreateHIT", hit_params(Question=QUESTION_FORM))["HIT"]["HITId"]
    preview = site(url, "AW1").get(url + f"/mturk/task?hitId={hid}&assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE").text
    assert "How fluent?" in preview and "disabled" in preview and 'type="number"' in preview
    r = accept(url, hid, "AW1")
    aid = r.headers["Location"].split("assignmentId=")[1]
    s = site(url, "AW1")
    bad = s.post(url + "/mturk/externalSubmit", data={"assignmentId": aid, "fluency": "4", "age": "12"})
    assert bad.status_code == 400 and "at least 18" in bad.text and 'value="12"' in bad.text
    assert ok(url, "ListAssignmentsForHIT", {"HITId": hid})["NumResults"] == 0   # nothing stored
    good = s.post(url + "/mturk/externalSubmit", data={"assignmentId": aid, "fluency": "4", "age": "30", "why": ""})
    assert good.status_code == 200
    answer = ok(url, "ListAssignmentsForHIT", {"HITId": hid})["Assignments"][0]["Answer"]
    root = etree.fromstring(answer.encode())
    assert QFA_XSD.validate(root)
    assert "<QuestionIdentifier>fluency</QuestionIdentifier><SelectionIdentifier>4</SelectionIdentifier>" in answer
    assert "<QuestionIdentifier>age</QuestionIdentifier><FreeText>30</FreeText>" in answer
    assert "why" not in answer   # unanswered optional free text


CROWD_TEMPLATE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script></head><body>
<crowd-form answer-format="flatten-objects"><p>Rate: hi!</p>
<input type="radio" name="fluency" value="1" required> 1 <input type="radio" name="fluency" value="5"> 5
<crowd-input name="comment" label="Comment"></crowd-input></crowd-form></body></html>"""
HELPER_TEMPLATE = """<!DOCTYPE html><html><head><script type='text/javascript'
src='https://s3.amazonaws.com/mturk-public/externalHIT_v1.js'></script></head><body>
<form name='mturk_form' method='post' id='mturk_form' action='https://www.mturk.com/mturk/externalSubmit'>
<input type='hidden' value='' name='assignmentId' id='assignmentId'/><input name='x'>
<input type='submit' id='submitButton' value='Submit'/></form><script>turkSetAssignmentID();</script></body></html>"""


def test_amazons_helper_scripts_are_served_locally(sandbox):
    url = sandbox.url
    for template, local in ((CROWD_TEMPLATE, "/mturk/assets/crowd-html-elements.js"),
                            (HELPER_TEMPLATE, "/mturk/assets/externalHIT_v1.js")):
        hid = ok(url, "CreateHIT", hit_params(Question=html_question(body=template)))["HIT"]["HITId"]
        page = requests.get(url + f"/mturk/task?hitId={hid}&assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE").text
        assert local in page and "amazonaws.com" not in page and "crowd.aws" not in page
        js = requests.get(url + local)
        assert js.status_code == 200 and js.headers["Content-Type"].startswith("application/javascript")
    assert 'action=\'/mturk/externalSubmit\'' in page
    assert requests.get(url + "/mturk/assets/..%2Fmodels.py").status_code == 404
    assert requests.get(url + "/mturk/assets/nothing.js").status_code == 404


def test_sandbox_workers_cli_sets_profiles_on_the_state_file_or_a_running_server(sandbox, tmp_path):
    from click.testing import CliRunner

    from mturk_eval.cli import main

    state = str(tmp_path / "state.sqlite")
    r = CliRunner().invoke(main, ["sandbox", "workers", "add", "AUKRATER1", "--country", "gb", "--approved", "120",
                                  "--rejected", "3", "--masters", "--state", state])
    assert r.exit_code == 0, r.output
    assert "AUKRATER1: locale GB, 120 approved, 3 rejected of 123 submitted, masters" in r.output
    r = CliRunner().invoke(main, ["sandbox", "workers", "list", "--state", state])
    assert r.exit_code == 0 and "AUKRATER1: locale GB" in r.output
    r = CliRunner().invoke(main, ["sandbox", "workers", "add", "AJP1", "--country", "JP", "--endpoint", sandbox.url])
    assert r.exit_code == 0, r.output
    assert ok(sandbox.url, "GetQualificationScore", {"QualificationTypeId": q.LOCALE, "WorkerId": "AJP1"}
              )["Qualification"]["LocaleValue"] == {"Country": "JP"}
    for args, needle in ((["BADID"], "must match ^A[A-Z0-9]+$"), (["AX1", "--country", "GBR"], "ISO 3166"),
                         (["AX1", "--approved", "5", "--submitted", "2"], "at least approved + rejected"),
                         (["AX1", "--endpoint", "http://127.0.0.1:1"], "cannot reach")):
        r = CliRunner().invoke(main, ["sandbox", "workers", "add", *args, "--state", state])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, (args, r.output)
    r = CliRunner().invoke(main, ["sandbox", "workers", "list", "--state", state])
    assert "AX1" not in r.output
    # without --state / --endpoint: the experiment's bundled sandbox (runs/<exp>/sandbox/state.sqlite)
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "qexp"\nruns_dir = "{tmp_path / "runs"}"\n')
    r = CliRunner().invoke(main, ["sandbox", "workers", "list", "--config", str(conf)])
    assert r.exit_code == 2 and "no bundled sandbox yet" in r.output
    r = CliRunner().invoke(main, ["sandbox", "workers", "add", "ABUNDLED1", "--country", "CA", "--config", str(conf)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / "qexp" / "sandbox" / "state.sqlite").exists()
    r = CliRunner().invoke(main, ["sandbox", "workers", "list", "--config", str(conf)])
    assert "ABUNDLED1: locale CA" in r.output


def test_simulated_workers_meet_the_experiments_system_requirements(sandbox):
    from mturk_eval.emulators.simulate import simulate

    reqs = [{"QualificationTypeId": q.LOCALE, "Comparator": "EqualTo", "LocaleValues": [{"Country": "JP"}]},
            {"QualificationTypeId": q.NUMBER_APPROVED, "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [500]}]
    hid = ok(sandbox.url, "CreateHIT", hit_params(QualificationRequirements=reqs, MaxAssignments=2))["HIT"]["HITId"]
    res = simulate(sandbox.url, 2, seed=1, progress=False)
    assert res.submitted == 0 and res.skipped == 2      # US workers with no history are refused
    res = simulate(sandbox.url, 2, seed=2, progress=False, profile=q.profile_meeting(reqs))
    assert res.submitted == 2
    assert ok(sandbox.url, "GetHIT", {"HITId": hid})["HIT"]["HITStatus"] == "Reviewable"


def test_every_operation_answers_through_plain_boto3(sandbox):
    """One scenario calling each of the model's operations by boto3's own method; the server's call
    counter shows every operation answered successfully (GetFileUploadURL answers with its documented error)."""
    url, c = sandbox.url, client(sandbox.url)
    tid = c.create_qualification_type(Name="boto3", Description="d", QualificationTypeStatus="Active",
                                      AutoGranted=True)["QualificationType"]["QualificationTypeId"]
    type_id = c.create_hit_type(Title="t", Description="d", Reward="0.05", AssignmentDurationInSeconds=600,
                                QualificationRequirements=[{"QualificationTypeId": tid, "Comparator": "Exists"}]
                                )["HITTypeId"]
    hid = c.create_hit_with_hit_type(HITTypeId=type_id, LifetimeInSeconds=600, MaxAssignments=2,
                                     Question=html_question())["HIT"]["HITId"]
    other = c.create_hit(**hit_params(MaxAssignments=1))["HIT"]["HITId"]
    c.associate_qualification_with_worker(QualificationTypeId=tid, WorkerId="AB1", IntegerValue=3)
    aid = work(url, hid, "AB1")
    site(url, "AB2").post(url + "/mturk/qualifications/request", data={"qualificationTypeId": tid})
    manual = c.create_qualification_type(Name="manual", Description="d", QualificationTypeStatus="Active"
                                         )["QualificationType"]["QualificationTypeId"]
    site(url, "AB3").post(url + "/mturk/qualifications/request", data={"qualificationTypeId": manual})
    site(url, "AB4").post(url + "/mturk/qualifications/request", data={"qualificationTypeId": manual})
    r1, r2 = (r["QualificationRequestId"] for r in c.list_qualification_requests(QualificationTypeId=manual)
              ["QualificationRequests"])
    spec = {"Destination": "me@example.org", "Transport": "Email", "Version": "2006-05-05",
            "EventTypes": ["AssignmentSubmitted"]}
    c.get_qualification_type(QualificationTypeId=tid)
    c.update_qualification_type(QualificationTypeId=tid, Description="d2")
    c.list_qualification_types(MustBeRequestable=True)
    c.get_qualification_score(QualificationTypeId=tid, WorkerId="AB1")
    c.list_workers_with_qualification_type(QualificationTypeId=tid)
    c.accept_qualification_request(QualificationRequestId=r1, IntegerValue=2)
    c.reject_qualification_request(QualificationRequestId=r2, Reason="no")
    c.list_hits_for_qualification_type(QualificationTypeId=tid)
    c.get_hit(HITId=hid)
    c.list_hits()
    c.list_reviewable_hits()
    c.list_assignments_for_hit(HITId=hid)
    c.get_assignment(AssignmentId=aid)
    c.approve_assignment(AssignmentId=aid)
    aid2 = work(url, other, "AB5")
    c.reject_assignment(AssignmentId=aid2, RequesterFeedback="empty")
    c.send_bonus(WorkerId="AB1", BonusAmount="0.10", AssignmentId=aid, Reason="thanks")
    c.list_bonus_payments(HITId=hid)
    c.notify_workers(Subject="s", MessageText="m", WorkerIds=["AB1"])
    c.create_additional_assignments_for_hit(HITId=hid, NumberOfAdditionalAssignments=1)
    c.update_hit_type_of_hit(HITId=other, HITTypeId=type_id)
    c.list_review_policy_results_for_hit(HITId=hid)
    c.update_notification_settings(HITTypeId=type_id, Notification=spec, Active=True)
    c.send_test_event_notification(Notification=spec, TestEventType="AssignmentSubmitted")
    with pytest.raises(c.exceptions.RequestError, match="no file upload answer"):
        c.get_file_upload_url(AssignmentId=aid, QuestionIdentifier="q")
    c.create_worker_block(WorkerId="ABAD", Reason="spam")
    c.list_worker_blocks()
    c.delete_worker_block(WorkerId="ABAD")
    c.get_account_balance()
    c.disassociate_qualification_from_worker(QualificationTypeId=tid, WorkerId="AB1", Reason="r")
    c.update_expiration_for_hit(HITId=other, ExpireAt=time.time() - 10)
    c.update_hit_review_status(HITId=other)
    c.delete_hit(HITId=other)
    c.delete_qualification_type(QualificationTypeId=manual)
    calls = requests.get(url + "/_sandbox/state", timeout=5).json()["calls"]
    assert set(service_model().operation_names) - set(calls) == {"GetFileUploadURL"}

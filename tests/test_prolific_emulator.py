"""The local Prolific emulator against the contract (../shared/docs/prolific): bodies, enums, errors,
paging, study and submission states, bonuses in two steps, participant groups, faults."""
from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from mturk_eval.emulators.prolific.urls import make_emulator
from mturk_eval.platforms.prolific import contract
from tests.helpers.prolific import EXAMPLES, TOKEN, example

H = {"Authorization": f"Token {TOKEN}"}
STUDY = {
    "name": "Rate replies", "internal_name": "t:main", "description": "d", "reward": 100,
    "external_study_url": f"https://site.example/p/main?PROLIFIC_PID={contract.PID}&STUDY_ID={contract.STUDY_ID}"
                          f"&SESSION_ID={contract.SESSION_ID}",
    "prolific_id_option": "url_parameters", "total_available_places": 3, "estimated_completion_time": 5,
    "maximum_allowed_time": 10, "device_compatibility": ["desktop"],
    "completion_codes": [{"code": "DONE1", "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]}],
}


@pytest.fixture
def api():
    app = make_emulator()
    c = Client(app)
    c.backend = app.backend
    yield c
    app.backend.close()


def _study(api, **over) -> dict:
    r = api.post("/api/v1/studies/", json={**STUDY, **over}, headers=H)
    assert r.status_code == 201, r.json
    return r.json


def _publish(api, **over) -> dict:
    s = _study(api, **over)
    r = api.post(f"/api/v1/studies/{s['id']}/transition/", json={"action": "PUBLISH"}, headers=H)
    assert r.status_code == 200 and r.json["status"] == "ACTIVE"
    return s


def _take(api, study_id: str, pid: str, code: str | None = "DONE1") -> str:
    r = api.get(f"/_prolific/studies/{study_id}/take?PROLIFIC_PID={pid}")
    assert r.status_code == 302, r.data
    sid = r.headers["Location"].split("SESSION_ID=")[1]
    assert f"PROLIFIC_PID={pid}" in r.headers["Location"] and f"STUDY_ID={study_id}" in r.headers["Location"]
    if code:
        done = api.get(f"/submissions/complete?cc={code}")
        assert done.status_code == 200 and b"AWAITING REVIEW" in done.data
    return sid


def test_every_cli_docs_example_is_a_valid_create_body(api):
    project = api.get("/api/v1/workspaces/", headers=H).json["results"][0]["projects"][0]["id"]
    with api.backend.transaction():
        for gid in ("64514609c0265e1da4a74127", "64660e2e0ce5307750bf5c99", "619e049f7648a4e1f8f3645b"):
            api.backend.db.execute("INSERT INTO groups (id, name, description, workspace_id) VALUES (?, 'g', '', 'w')",
                                   (gid,))
    files = sorted((EXAMPLES / "cli-docs-examples").glob("*.json"))
    assert len(files) == 12
    for f in files:
        body = json.loads(f.read_text())
        if "project" in body:
            body["project"] = project
        r = api.post("/api/v1/studies/", json=body, headers=H)
        assert r.status_code == 201, (f.name, r.json)
        assert r.json["status"] == "UNPUBLISHED" and r.json["total_available_places"] == body["total_available_places"]


@pytest.mark.parametrize("change, detail", [
    ({"bogus": 1}, "bogus"),
    ({"reward": "100"}, "reward"),
    ({"reward": 1.5}, "reward"),
    ({"prolific_id_option": "cookie"}, "prolific_id_option"),
    ({"device_compatibility": ["watch"]}, "device_compatibility"),
    ({"filters": [{"filter_id": "no-such-filter", "selected_values": ["1"]}]}, "filter_id"),
    ({"filters": [{"filter_id": "age", "selected_values": ["1"]}]}, "range"),
    ({"completion_codes": [{"code": "A", "code_type": "FINISHED", "actions": []}]}, "code_type"),
    ({"completion_codes": [{"code": "A", "code_type": "COMPLETED", "actions": [{"action": "PAY_TWICE"}]}]}, "action"),
    ({"completion_codes": [{"code": "A", "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}],
                            "extra": 1}]}, "extra"),
    ({"submissions_config": {"max_submissions": 1}}, "max_submissions"),
    ({"maximum_allowed_time": 2}, "maximum_allowed_time"),
])
def test_bad_create_bodies_are_refused_with_the_nested_error_body(api, change, detail):
    r = api.post("/api/v1/studies/", json={**STUDY, **change}, headers=H)
    assert r.status_code == 400
    err = r.json["error"]
    assert err["status"] == 400 and err["title"] == "Bad Request" and detail in json.dumps(err["detail"])
    assert api.get("/api/v1/studies/", headers=H).json["results"] == []


def test_required_fields_and_auth(api):
    body = dict(STUDY)
    del body["reward"]
    assert api.post("/api/v1/studies/", json=body, headers=H).json["error"]["detail"] == {
        "reward": ["This field is required."]}
    assert api.get("/api/v1/users/me/").status_code == 401
    assert api.get("/api/v1/users/me/", headers={"Authorization": "Bearer " + TOKEN}).status_code == 401
    assert api.get("/api/v1/users/me/", headers={"Authorization": "Token short"}).json["error"]["detail"] == \
        "Invalid token."
    # Both path forms (the contract: "the API accepts both"), and a wrong method.
    assert api.get("/api/v1/users/me", headers=H).status_code == 200
    assert api.put("/api/v1/users/me/", headers=H).status_code == 405
    assert api.get("/api/v1/nothing/", headers=H).status_code == 404


def test_study_states_places_and_stop_is_final(api):
    s = _study(api)
    assert api.delete(f"/api/v1/studies/{s['id']}/", headers=H).status_code == 204
    s = _publish(api)
    sid = s["id"]
    assert api.delete(f"/api/v1/studies/{sid}/", headers=H).status_code == 400
    tr = lambda a: api.post(f"/api/v1/studies/{sid}/transition/", json={"action": a}, headers=H)  # noqa: E731
    assert tr("PUBLISH").status_code == 400
    assert tr("PAUSE").json["status"] == "PAUSED"
    assert tr("START").json["status"] == "ACTIVE"
    patch = lambda n: api.patch(f"/api/v1/studies/{sid}/", json={"total_available_places": n}, headers=H)  # noqa
    assert "only be increased" in json.dumps(patch(2).json)
    assert patch(4).json["total_available_places"] == 4
    assert api.patch(f"/api/v1/studies/{sid}/", json={"reward": 5}, headers=H).status_code == 400
    assert tr("STOP").json["status"] == "COMPLETED"
    assert "final" in json.dumps(tr("START").json)
    kinds = [c["kind"] for c in api.backend.charges()]
    assert kinds == ["publish", "places", "refund"]


def test_participant_flow_counts_timeouts_returns_and_review(api):
    s = _publish(api)
    sid = s["id"]
    a = _take(api, sid, "a" * 24)
    b = _take(api, sid, "b" * 24, code=None)
    c = _take(api, sid, "c" * 24, code=None)
    assert api.get(f"/_prolific/studies/{sid}/take?PROLIFIC_PID={'d' * 24}").status_code == 409  # full
    assert api.post(f"/_prolific/submissions/{b}/return").json["status"] == "RETURNED"
    api.backend.advance_clock(11 * 60)  # past maximum_allowed_time (10 min)
    counts = api.get(f"/api/v1/studies/{sid}/submissions/counts/", headers=H).json
    assert set(counts) == set(contract.COUNT_KEYS) | {"TOTAL"}
    assert (counts["AWAITING REVIEW"], counts["RETURNED"], counts["TIMED-OUT"], counts["TOTAL"]) == (1, 1, 1, 3)
    assert api.get(f"/api/v1/submissions/{c}/", headers=H).json["status"] == "TIMED-OUT"
    sub = api.get(f"/api/v1/submissions/{a}/", headers=H).json
    assert sub["entered_code"] == "DONE1" and sub["participant"] == "a" * 24
    short = "Too short."
    r = api.post(f"/api/v1/submissions/{a}/transition/", json={"action": "REJECT", "message": short,
                                                                "rejection_category": "LOW_EFFORT"}, headers=H)
    assert r.status_code == 400 and "100" in json.dumps(r.json)
    r = api.post(f"/api/v1/submissions/{a}/transition/", json={"action": "REJECT", "message": "x" * 100,
                                                                "rejection_category": "LAZY"}, headers=H)
    assert r.status_code == 400
    for _ in range(2):  # documented idempotent: the repeat is ignored
        r = api.post(f"/api/v1/submissions/{a}/transition/", json={"action": "APPROVE"}, headers=H)
        assert r.status_code == 200 and r.json["status"] == "APPROVED"
    # Full, then a return: auto-paused (documented); START refills the two freed places.
    assert api.get(f"/api/v1/studies/{sid}/", headers=H).json["status"] == "PAUSED"
    assert api.post(f"/api/v1/studies/{sid}/transition/", json={"action": "START"}, headers=H).json["status"] == "ACTIVE"
    _take(api, sid, "d" * 24)


def test_bulk_approve_and_bonus_amounts_match_the_contract_examples(api):
    s = _publish(api, total_available_places=2)
    subs = [_take(api, s["id"], p * 24) for p in "ab"]
    r = api.post("/api/v1/submissions/bulk-approve/", json={"submission_ids": subs}, headers=H)
    assert r.status_code == 200 and r.json == example("bulk-approve-submissions.json")["response_body"]
    assert api.get(f"/api/v1/studies/{s['id']}/", headers=H).json["status"] == "COMPLETED"
    ex = example("create-bonus-payments.json")
    csv = "\n".join(f"{p * 24},4.25" for p in "ab")
    r = api.post("/api/v1/submissions/bonus-payments/", json={"study_id": s["id"], "csv_bonuses": csv}, headers=H)
    assert r.status_code == ex["response_status"]
    assert {k: r.json[k] for k in ("amount", "fees", "vat", "total_amount")} == \
        {k: ex["response"][k] for k in ("amount", "fees", "vat", "total_amount")}
    bad = api.post("/api/v1/submissions/bonus-payments/", json={"study_id": s["id"], "csv_bonuses": "f" * 24 + ",1"},
                   headers=H)
    assert bad.status_code == 400 and "f" * 24 in json.dumps(bad.json)
    bulk = r.json["id"]
    assert api.get(f"/api/v1/submissions/{subs[0]}/", headers=H).json["bonus_payments"] == []  # set up, not paid
    pay = api.post(f"/api/v1/bulk-bonus-payments/{bulk}/pay/", json={}, headers=H)
    assert pay.status_code == 202 and bulk in pay.json
    assert api.get(f"/api/v1/submissions/{subs[0]}/", headers=H).json["bonus_payments"] == [425]
    api.post(f"/api/v1/bulk-bonus-payments/{bulk}/pay/", headers=H)  # not idempotent, as documented
    assert api.get(f"/api/v1/submissions/{subs[0]}/", headers=H).json["bonus_payments"] == [425, 425]


def test_paging_both_styles(api):
    s = _publish(api, total_available_places=5)
    for p in "abcde":
        _take(api, s["id"], p * 24)
    first = api.get(f"/api/v1/studies/{s['id']}/submissions/?limit=2", headers=H).json
    assert first["meta"]["count"] == 5 and len(first["results"]) == 2
    seen, url = [], first["_links"]["self"]["href"]
    while url:
        page = api.get(url.replace("http://localhost", ""), headers=H).json
        seen += [x["id"] for x in page["results"]]
        url = page["_links"]["next"]["href"]
    assert len(set(seen)) == 5
    numbered = api.get(f"/api/v1/submissions/?study={s['id']}&status=awaiting_review&page=2&page_size=2", headers=H).json
    assert len(numbered["results"]) == 2 and numbered["_links"]["previous"]["href"] and numbered["meta"]["count"] == 5
    assert api.get(f"/api/v1/submissions/?study={s['id']}&page=9", headers=H).status_code == 404


def test_participant_groups_block_later_studies(api):
    ws = api.get("/api/v1/workspaces/", headers=H).json["results"][0]["id"]
    g = api.post("/api/v1/participant-groups/", json={"name": "blocked", "workspace_id": ws}, headers=H)
    assert g.status_code == 201
    gid = g.json["id"]
    r = api.post(f"/api/v1/participant-groups/{gid}/participants/", json={"participant_ids": ["a" * 24]}, headers=H)
    assert [m["participant_id"] for m in r.json["results"]] == ["a" * 24]
    api.post(f"/api/v1/participant-groups/{gid}/participants/", json={"participant_ids": ["a" * 24]}, headers=H)
    assert api.get(f"/api/v1/participant-groups/{gid}/", headers=H).json["participant_count"] == 1
    s = _publish(api, filters=[{"filter_id": contract.GROUP_BLOCKLIST, "selected_values": [gid]}])
    assert api.get(f"/_prolific/studies/{s['id']}/take?PROLIFIC_PID={'a' * 24}").status_code == 409
    _take(api, s["id"], "b" * 24)
    assert [x["name"] for x in api.get(f"/api/v1/participant-groups/?workspace_id={ws}", headers=H).json["results"]] \
        == ["blocked"]


def test_cost_calculator_and_faults(api):
    r = api.post("/api/v1/study-cost-calculator/", json=example("calculate-study-cost.json")["request"], headers=H)
    assert r.json == {"total_cost": 666.67}
    api.application.faults.configure(__import__("mturk_eval.emulators.faults", fromlist=["FaultConfig"]).FaultConfig(
        throttle_rate=1.0))
    r = api.get("/api/v1/users/me/", headers=H)
    assert r.status_code == 429 and r.json["error"]["status"] == 429

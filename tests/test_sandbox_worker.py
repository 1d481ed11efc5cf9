"""The sandbox's worker site (list, preview, accept, task page, externalSubmit) and simulated workers."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from click.testing import CliRunner
from lxml import etree, html as lxml_html

from helpers.sandbox import client, hit_params, html_question, sandbox, sandbox_subprocess  # noqa: F401
from mturk_eval.errors import UserError
from mturk_eval.emulators.mturk.responses import ANSWERS_NS
from mturk_eval.emulators.simulate import RatingModel, make_workers, rate_item, simulate


def answers(xml: str) -> dict[str, str]:
    root = etree.fromstring(xml.encode())
    return {a.findtext(f"{{{ANSWERS_NS}}}QuestionIdentifier"): a.findtext(f"{{{ANSWERS_NS}}}FreeText")
            for a in root.findall(f"{{{ANSWERS_NS}}}Answer")}


def test_list_preview_accept_work_submit(sandbox):
    c, url = client(sandbox.url), sandbox.url
    hid = c.create_hit(**hit_params(Title="Rate <b>this</b>", MaxAssignments=2))["HIT"]["HITId"]
    s = requests.Session()
    index = s.get(url + "/", params={"workerId": "AWORKERONE"})
    assert index.status_code == 200 and "Rate &lt;b&gt;this&lt;/b&gt;" in index.text  # escaped
    assert s.cookies["workerId"] == "AWORKERONE"
    doc = lxml_html.document_fromstring(index.text)
    assert doc.xpath("//tr[@data-hit-id]/@data-hit-id") == [hid]
    # preview: the task frame has ASSIGNMENT_ID_NOT_AVAILABLE and no worker; submitting is impossible
    prev = s.get(url + "/mturk/preview", params={"hitId": hid})
    frame = lxml_html.document_fromstring(prev.text).xpath("//iframe[@id='task']/@src")[0]
    q = parse_qs(urlparse(frame).query)
    assert q["assignmentId"] == ["ASSIGNMENT_ID_NOT_AVAILABLE"] and "workerId" not in q
    task = s.get(url + frame)
    assert task.status_code == 200 and 'name="i0_fluency"' in task.text
    r = s.post(url + "/mturk/externalSubmit", data={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "i0_fluency": "1"})
    assert r.status_code == 400 and "preview" in r.text
    # by group id, as MTurk's preview links
    group = c.get_hit(HITId=hid)["HIT"]["HITGroupId"]
    assert hid in s.get(url + "/mturk/preview", params={"groupId": group}).text
    # accept -> work page whose frame carries the four MTurk parameters
    r = s.post(url + "/mturk/accept", data={"hitId": hid}, allow_redirects=False)
    assert r.status_code == 303
    work = s.get(url + r.headers["Location"])
    frame = lxml_html.document_fromstring(work.text).xpath("//iframe[@id='task']/@src")[0]
    q = {k: v[0] for k, v in parse_qs(urlparse(frame).query).items()}
    assert set(q) == {"assignmentId", "hitId", "workerId", "turkSubmitTo"}
    assert q["hitId"] == hid and q["workerId"] == "AWORKERONE" and q["turkSubmitTo"] == url
    aid = q["assignmentId"]
    form = {"assignmentId": aid, "i0_fluency": "5", "i0_engagingness": "4", "i0_relevance": "3",
            "i0_persona": "2", "multi": ["a", "b"]}
    r = s.post(q["turkSubmitTo"] + "/mturk/externalSubmit", data=form)
    assert r.status_code == 200 and "submitted" in r.text
    r = s.post(url + "/mturk/externalSubmit", data=form)
    assert r.status_code == 409 and "already been submitted" in r.text
    a = c.get_assignment(AssignmentId=aid)["Assignment"]
    assert a["WorkerId"] == "AWORKERONE" and a["AssignmentStatus"] == "Submitted"
    assert answers(a["Answer"]) == {"i0_fluency": "5", "i0_engagingness": "4", "i0_relevance": "3",
                                    "i0_persona": "2", "multi": "a|b"}
    assert hid not in s.get(url + "/").text  # done by this worker
    assert hid in requests.get(url + "/", params={"workerId": "AOTHER"}).text


@pytest.mark.parametrize("path,params,status", [
    ("/mturk/preview", {"hitId": "NOSUCH"}, 404),
    ("/mturk/preview", {}, 400),
    ("/mturk/work", {"assignmentId": "NOSUCH"}, 404),
    ("/mturk/task", {"hitId": "NOSUCH", "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"}, 404),
    ("/no/such/page", {}, 404),
])
def test_worker_site_bad_requests(sandbox, path, params, status):
    assert requests.get(sandbox.url + path, params=params).status_code == status


def test_bad_worker_id_gets_a_fresh_one(sandbox):
    r = requests.get(sandbox.url + "/", params={"workerId": "<script>"})
    assert r.status_code == 200 and "<script>" not in r.text
    assert r.cookies["workerId"].startswith("A")


def test_task_of_another_hit_is_refused(sandbox):
    c, url = client(sandbox.url), sandbox.url
    h1 = c.create_hit(**hit_params())["HIT"]["HITId"]
    h2 = c.create_hit(**hit_params())["HIT"]["HITId"]
    r = requests.post(url + "/mturk/accept", data={"hitId": h1, "workerId": "AW1"}, allow_redirects=False)
    aid = parse_qs(urlparse(r.headers["Location"]).query)["assignmentId"][0]
    assert requests.get(url + "/mturk/task", params={"hitId": h2, "assignmentId": aid}).status_code == 404


# --------------------------------------------------------------------------------------------------
# simulated workers

def _items_of(n_slots: int, attention_slot: int | None = None):
    def items_of(hit_id):
        out = []
        for k in range(n_slots):
            att = {"aspects": {"relevance": 1, "persona": 2}} if k == attention_slot else None
            out.append({"item_id": f"x{k}", "method": "prompt_tuning", "attention_check": att, "slot": k,
                        "persona": ["i like cats."], "utterance": "do you have pets?",
                        "response": "yes, i have two cats."})
        return out
    return items_of


def test_simulated_workers_fill_every_hit_marked_simulated(sandbox):
    c, url = client(sandbox.url), sandbox.url
    hids = [c.create_hit(**hit_params(MaxAssignments=3, Question=html_question(2)))["HIT"]["HITId"]
            for _ in range(4)]
    res = simulate(url, workers=5, model=RatingModel(careless_share=0.0), seed=1, items_of=_items_of(2),
                   progress=False)
    assert res.submitted == 12  # 4 HITs x 3 assignments; the other workers found nothing left
    for hid in hids:
        asg = c.list_assignments_for_hit(HITId=hid)["Assignments"]
        assert len(asg) == 3 and len({a["WorkerId"] for a in asg}) == 3
        for a in asg:
            got = answers(a["Answer"])
            assert got["mturk_eval_simulated"] == "1"
            assert {k for k in got if k != "mturk_eval_simulated"} == {
                f"i{k}_{x}" for k in range(2) for x in ("fluency", "engagingness", "relevance", "persona")}
            assert all(v in "12345" for k, v in got.items())
            work = (a["SubmitTime"] - a["AcceptTime"]).total_seconds()
            assert 5 < work < 600  # the simulated work time, not the instant the simulator took
    assert c.get_hit(HITId=hids[0])["HIT"]["HITStatus"] == "Reviewable"
    assert sum(res.by_worker.values()) == 12


def test_work_spreads_over_all_workers(sandbox):
    """A crowd works in parallel: with more workers than assignments per HIT, every worker gets work,
    not just the first MaxAssignments of them (who would otherwise take every HIT)."""
    c, url = client(sandbox.url), sandbox.url
    for _ in range(16):
        c.create_hit(**hit_params(MaxAssignments=3, Question=html_question(1)))
    res = simulate(url, workers=8, model=RatingModel(careless_share=0.0), seed=4, items_of=_items_of(1),
                   progress=False)
    assert res.submitted == 48
    assert len(res.by_worker) == 8 and min(res.by_worker.values()) >= 3  # 6 each on average
    assert max(res.by_worker.values()) <= 9


def test_careful_workers_pass_attention_checks_careless_mostly_fail(sandbox):
    c, url = client(sandbox.url), sandbox.url
    for _ in range(10):
        c.create_hit(**hit_params(MaxAssignments=10, Question=html_question(2)))
    careful = simulate(url, workers=4, model=RatingModel(careless_share=0.0), seed=2,
                       items_of=_items_of(2, attention_slot=1), progress=False)
    assert careful.attention_checks == 40 and careful.attention_passed == 40
    careless = simulate(url, workers=4, model=RatingModel(careless_share=1.0), seed=3,
                        items_of=_items_of(2, attention_slot=1), progress=False)
    assert careless.attention_checks == 40 and careless.attention_passed < 12  # chance: 1/5 * 2/5


def test_rating_model_follows_the_text_not_the_method():
    """More in tests/test_simulate_model.py."""
    model = RatingModel(careless_share=0.0, noise_sd=0.5, worker_bias_sd=0.0)
    w = make_workers(1, model, seed=0)[0]
    persona = ["i like cats.", "i work as a baker."]
    on = {"method": "finetune_none", "persona": persona, "utterance": "hi!", "response": "i bake bread for my cats."}
    off = {"method": "prompt_tuning", "persona": persona, "utterance": "hi!", "response": "the weather is nice."}
    good = [rate_item(w, model, on, "persona") for _ in range(400)]
    bad = [rate_item(w, model, off, "persona") for _ in range(400)]
    assert sum(good) / 400 > sum(bad) / 400 + 0.5
    assert set(good) <= {1, 2, 3, 4, 5}
    assert [x.careless for x in make_workers(10, RatingModel(careless_share=0.3), 5)].count(True) == 3


@pytest.mark.parametrize("kw,needle", [
    ({"careless_share": 1.5}, "careless_share"),
    ({"noise_sd": -1}, "noise_sd"),
    ({"work_time_median_s": 0}, "work_time_median_s"),
])
def test_bad_rating_models(kw, needle):
    with pytest.raises(UserError, match=needle):
        RatingModel(**kw)


def test_simulate_bad_inputs(tmp_path):
    from mturk_eval.cli import main

    with pytest.raises(UserError, match="workers"):
        simulate("http://127.0.0.1:1", workers=0)
    r = CliRunner().invoke(main, ["sandbox", "simulate", "--endpoint", "http://127.0.0.1:1", "--no-progress"])
    assert r.exit_code == 2 and "cannot reach" in r.output
    bad = tmp_path / "q.json"
    for text, needle in [("{", "not valid JSON"), ("[]", "expected an object"),
                         ('{"prompt_tuning": {"fluency": 9}}', "from 1 to 5"), ('{"x": 3}', "expected an object")]:
        bad.write_text(text)
        r = CliRunner().invoke(main, ["sandbox", "simulate", "--quality", str(bad)])
        assert r.exit_code == 2 and needle in r.output, r.output


def test_serve_and_simulate_through_the_cli(tmp_path):
    """`sandbox serve` in a child process keeps its state on disk; `sandbox simulate` works against it."""
    from mturk_eval.cli import main

    state = tmp_path / "sandbox.sqlite"
    with sandbox_subprocess(state) as url:
        c = client(url)
        hid = c.create_hit(**hit_params(MaxAssignments=2))["HIT"]["HITId"]
        quality = tmp_path / "q.json"
        quality.write_text(json.dumps({"prompt_tuning": {"fluency": 5}}))
        r = CliRunner().invoke(main, ["sandbox", "simulate", "--endpoint", url, "--workers", "3", "--no-progress",
                                      "--quality", str(quality), "--careless-share", "0"])
        assert r.exit_code == 0, r.output
        assert "2 simulated assignments submitted by 3 workers" in r.output
        assert "assumed from" in r.output and "not a finding" in r.output
    with sandbox_subprocess(state) as url:
        assert client(url).get_hit(HITId=hid)["HIT"]["HITStatus"] == "Reviewable"

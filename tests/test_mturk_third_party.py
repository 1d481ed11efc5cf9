"""A batch made the way third-party MTurk tools make it, run on the local MTurk end to end.

A qualification type, a HIT type with qualification requirements, HITs from an HTMLQuestion template
with ``crowd-form`` (Amazon's crowd HTML elements script, served by the local stand-in), a worker who
lacks the qualification refused, one who holds it rating; the answers read back through
ListAssignmentsForHIT (one ``taskAnswers`` answer, as on MTurk) and the batch results CSV. Then a real
browser (Playwright + Debian's chromium) submits a crowd-form HIT through the worker site.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from lxml import etree

from helpers.browser import launch, sync_api
from helpers.sandbox import client, html_question, sandbox  # noqa: F401
from mturk_eval.analysis.batch_csv import BATCH_FIXED_COLUMNS, read_batch_csv
from mturk_eval.emulators.mturk import qualifications as q
from mturk_eval.platforms.mturk.answers import parse_fields

QFA_XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "schemas" / "QuestionFormAnswers-2005-10-01.xsd")))

# The shape of the crowd-form templates in MTurk's template gallery and third-party tools.
TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Rate a reply</title>
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script></head>
<body>
<crowd-form${format}>
  <crowd-instructions link-text="View instructions"><short-summary>Rate how fluent the reply is.</short-summary>
  </crowd-instructions>
  <p class="reply">${reply}</p>
  <fieldset><legend>Fluency</legend>
    <label><input type="radio" name="fluency" value="1" required> 1</label>
    <label><input type="radio" name="fluency" value="3"> 3</label>
    <label><input type="radio" name="fluency" value="5"> 5</label>
  </fieldset>
  <crowd-input name="comment" label="Anything to add?"></crowd-input>
</crowd-form>
</body></html>"""


# The sentiment template of MTurk's gallery: crowd-classifier.
CLASSIFIER = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form><crowd-classifier name="sentiment" categories="['Positive', 'Negative', 'Neutral']"
  header="What sentiment does this text convey?" required>
  <classification-target>The reply was rude.</classification-target>
  <full-instructions header="Sentiment Analysis Instructions"><p>Choose one.</p></full-instructions>
  <short-instructions>Choose the sentiment.</short-instructions>
</crowd-classifier>
<crowd-radio-group><crowd-radio-button name="polite" value="polite">Polite</crowd-radio-button>
<crowd-radio-button name="rude" value="rude">Rude</crowd-radio-button></crowd-radio-group>
<crowd-checkbox name="offensive">Offensive</crowd-checkbox></crowd-form>"""


@pytest.fixture
def page():
    """A page of Debian's chromium through Playwright (skipped where either is missing)."""
    pw = sync_api()
    with pw.sync_playwright() as p:
        browser = launch(p)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def make_batch(url: str, replies: list[str], formats: list[str] | None = None) -> tuple[object, str, str, list[str]]:
    c = client(url)
    tid = c.create_qualification_type(
        Name="Passed the rating screener", Description="Raters who passed our screener",
        QualificationTypeStatus="Active")["QualificationType"]["QualificationTypeId"]
    hit_type = c.create_hit_type(
        Title="Rate a chatbot reply", Description="Read a reply and rate it", Reward="0.10", Keywords="rating, chat",
        AssignmentDurationInSeconds=600, AutoApprovalDelayInSeconds=86400,
        QualificationRequirements=[
            {"QualificationTypeId": tid, "Comparator": "Exists", "ActionsGuarded": "Accept"},
            {"QualificationTypeId": q.LOCALE, "Comparator": "In", "LocaleValues": [{"Country": "US"}, {"Country": "GB"}]},
            {"QualificationTypeId": q.PERCENT_APPROVED, "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [95]},
        ])["HITTypeId"]
    hits = [c.create_hit_with_hit_type(
        HITTypeId=hit_type, LifetimeInSeconds=3600, MaxAssignments=2, RequesterAnnotation=f"item-{i}",
        UniqueRequestToken=f"batch1-item-{i}",
        Question=html_question(body=TEMPLATE.replace("${reply}", reply).replace("${format}", fmt)))["HIT"]["HITId"]
        for i, (reply, fmt) in enumerate(zip(replies, formats or [""] * len(replies)))]
    return c, tid, hit_type, hits


def worker(url: str, wid: str) -> requests.Session:
    s = requests.Session()
    s.cookies.set("workerId", wid)
    return s


def test_a_third_party_batch_runs_end_to_end(sandbox, tmp_path):
    url = sandbox.url
    c, tid, hit_type, hits = make_batch(url, ["Hello there!", "I like cats."])
    assert [h["HITTypeId"] for h in c.list_hits()["HITs"]] == [hit_type, hit_type]
    # The worker without the qualification sees the HIT, cannot accept it, and nothing is stored.
    lacking = worker(url, "ANOSCREENER")
    assert hits[0] in lacking.get(url + "/").text
    r = lacking.post(url + "/mturk/accept", data={"hitId": hits[0]}, allow_redirects=False)
    assert r.status_code == 409 and "Passed the rating screener Exists" in r.text
    assert sandbox.store.counts()["assignments"] == 0
    # The qualified worker's page loads the local crowd elements and posts taskAnswers, as crowd-form does.
    c.associate_qualification_with_worker(QualificationTypeId=tid, WorkerId="ARATER1", IntegerValue=1,
                                          SendNotification=False)
    rater = worker(url, "ARATER1")
    expected = {}
    for i, hid in enumerate(hits):
        r = rater.post(url + "/mturk/accept", data={"hitId": hid}, allow_redirects=False)
        assert r.status_code == 303
        aid = r.headers["Location"].split("assignmentId=")[1]
        page = rater.get(url + f"/mturk/task?hitId={hid}&assignmentId={aid}&turkSubmitTo={url}").text
        assert "/mturk/assets/crowd-html-elements.js" in page and "assets.crowd.aws" not in page
        answers = {"fluency": {"1": False, "3": i == 0, "5": i == 1}, "comment": f"reply {i}"}
        expected[hid] = answers
        r = rater.post(url + "/mturk/externalSubmit", data={"assignmentId": aid,
                                                            "taskAnswers": json.dumps([answers])})
        assert r.status_code == 200
    # Read back as every MTurk tool does: ListAssignmentsForHIT, one Answer "taskAnswers" holding JSON.
    for hid in hits:
        (a,) = c.list_assignments_for_hit(HITId=hid)["Assignments"]
        root = etree.fromstring(a["Answer"].encode())
        assert QFA_XSD.validate(root)
        ns = {"a": root.nsmap[None]}
        assert root.xpath("//a:QuestionIdentifier/text()", namespaces=ns) == ["taskAnswers"]
        assert json.loads(root.xpath("//a:FreeText/text()", namespaces=ns)[0]) == [expected[hid]]
        assert parse_fields(a["Answer"])["fluency"] in ("3", "5")   # the toolkit's own reader agrees
    # ...and the batch results CSV, in the requester website's layout.
    csv_path = tmp_path / "Batch_results.csv"
    resp = requests.get(url + "/_sandbox/batch-results.csv", params={"hitTypeId": hit_type}, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
    csv_path.write_bytes(resp.content)
    batch = read_batch_csv(csv_path)
    assert batch.columns[:27] == list(BATCH_FIXED_COLUMNS) and batch.answer_columns == ["Answer.taskAnswers"]
    assert [(row["HITId"], row["WorkerId"], row["Reward"], row["Title"]) for row in batch.rows] == [
        (hid, "ARATER1", "$0.10", "Rate a chatbot reply") for hid in hits]
    assert [json.loads(row["Answer.taskAnswers"]) for row in batch.rows] == [[expected[h]] for h in hits]
    assert batch.rows[0]["RequesterAnnotation"] == "item-0"
    assert requests.get(url + "/_sandbox/batch-results.csv", params={"hitTypeId": "NOSUCHTYPE"}).text.count("\n") == 1


@pytest.mark.browser
def test_a_browser_submits_a_crowd_form_hit(sandbox, page):
    url = sandbox.url
    c, tid, hit_type, hits = make_batch(url, ["Hello <b>there</b>!", "Cats!"], ["", ' answer-format="flatten-objects"'])
    hits.append(c.create_hit_with_hit_type(HITTypeId=hit_type, LifetimeInSeconds=3600, MaxAssignments=1,
                                           Question=html_question(body=CLASSIFIER))["HIT"]["HITId"])
    c.associate_qualification_with_worker(QualificationTypeId=tid, WorkerId="ABROWSER1", IntegerValue=1,
                                          SendNotification=False)
    page.goto(url + "/?workerId=ABROWSER1")
    page.goto(url + f"/mturk/preview?hitId={hits[0]}")
    frame = page.wait_for_selector("iframe#task").content_frame()
    frame.wait_for_selector("form.crowd-form button.crowd-submit")
    assert frame.is_disabled("button.crowd-submit")                 # preview: no submitting
    page.click("#accept")
    page.wait_for_url("**/mturk/work?*")
    frame = page.wait_for_selector("iframe#task").content_frame()
    frame.wait_for_selector("crowd-input input")
    frame.click("button.crowd-submit")                               # nothing chosen: refused
    assert sandbox.store.counts()["assignments"] == 1
    assert c.list_assignments_for_hit(HITId=hits[0])["NumResults"] == 0
    frame.check("input[name=fluency][value='5']")
    frame.fill("crowd-input input", "reads well")
    frame.click("button.crowd-submit")
    page.frame(name="task").wait_for_selector("#submitted")
    page.goto(url + f"/mturk/preview?hitId={hits[1]}")                # answer-format="flatten-objects"
    page.click("#accept")
    page.wait_for_url("**/mturk/work?*")
    frame = page.wait_for_selector("iframe#task").content_frame()
    frame.wait_for_selector("crowd-input input")
    frame.check("input[name=fluency][value='3']")
    frame.click("button.crowd-submit")
    page.frame(name="task").wait_for_selector("#submitted")
    page.goto(url + f"/mturk/preview?hitId={hits[2]}")                # crowd-classifier
    page.click("#accept")
    page.wait_for_url("**/mturk/work?*")
    frame = page.wait_for_selector("iframe#task").content_frame()
    frame.wait_for_selector("crowd-classifier input[value=Negative]")
    frame.check("crowd-classifier input[value=Negative]")
    frame.check("crowd-radio-button[name=rude] input")
    frame.check("crowd-checkbox[name=offensive] input")
    frame.click("button.crowd-submit")
    page.frame(name="task").wait_for_selector("#submitted")

    def task_answers(hid):
        (a,) = c.list_assignments_for_hit(HITId=hid)["Assignments"]
        answer = etree.fromstring(a["Answer"].encode())
        return json.loads(answer.xpath("//a:FreeText/text()", namespaces={"a": answer.nsmap[None]})[0])

    assert task_answers(hits[0]) == [{"fluency": {"1": False, "3": False, "5": True}, "comment": "reads well"}]
    assert task_answers(hits[1]) == [{"fluency.1": False, "fluency.3": True, "fluency.5": False, "comment": ""}]
    assert task_answers(hits[2]) == [{"sentiment": {"label": "Negative"}, "polite": {"polite": False},
                                      "rude": {"rude": True}, "offensive": {"on": True}}]


# Amazon's HTMLQuestion example as requesters copied it: the helper script, a form posting to MTurk.
HELPER_TEMPLATE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script type='text/javascript' src='https://s3.amazonaws.com/mturk-public/externalHIT_v1.js'></script></head>
<body><form name='mturk_form' method='post' id='mturk_form' action='https://www.mturk.com/mturk/externalSubmit'>
<input type='hidden' value='' name='assignmentId' id='assignmentId'/>
<p>What is the sentiment of "I love it"?</p><input type='text' name='sentiment' id='sentiment'>
<p><input type='submit' id='submitButton' value='Submit' /></p></form>
<script language='Javascript'>turkSetAssignmentID();</script></body></html>"""


@pytest.mark.browser
def test_a_browser_submits_an_html_question_that_uses_amazons_helper_script(sandbox, page):
    c = client(sandbox.url)
    hid = c.create_hit(Title="Sentiment", Description="d", Reward="0.05", AssignmentDurationInSeconds=600,
                       LifetimeInSeconds=3600, MaxAssignments=1,
                       Question=html_question(body=HELPER_TEMPLATE))["HIT"]["HITId"]
    page.goto(sandbox.url + "/?workerId=AHELPER1")
    page.goto(sandbox.url + f"/mturk/preview?hitId={hid}")
    frame = page.wait_for_selector("iframe#task").content_frame()
    button = frame.wait_for_selector("#submitButton")
    assert button.is_disabled() and "ACCEPT" in button.get_attribute("value")
    page.click("#accept")
    page.wait_for_url("**/mturk/work?*")
    frame = page.wait_for_selector("iframe#task").content_frame()
    frame.wait_for_selector("#sentiment")
    assert frame.get_attribute("#mturk_form", "action").endswith("/mturk/externalSubmit")
    assert frame.input_value("#assignmentId") not in ("", "ASSIGNMENT_ID_NOT_AVAILABLE")
    frame.fill("#sentiment", "positive")
    frame.click("#submitButton")
    page.frame(name="task").wait_for_selector("#submitted")
    (a,) = c.list_assignments_for_hit(HITId=hid)["Assignments"]
    assert parse_fields(a["Answer"]) == {"sentiment": "positive"} and a["WorkerId"] == "AHELPER1"


QF = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2017-11-06/QuestionForm.xsd"
SURVEY = (f'<QuestionForm xmlns="{QF}"><Overview><Title>About the reply</Title><FormattedContent><![CDATA['
          "<p>The reply: <b>I like cats.</b></p>]]></FormattedContent></Overview>"
          "<Question><QuestionIdentifier>fluency</QuestionIdentifier><DisplayName>Fluency</DisplayName>"
          "<IsRequired>true</IsRequired><QuestionContent><Text>How fluent is it?</Text></QuestionContent>"
          "<AnswerSpecification><SelectionAnswer><StyleSuggestion>radiobutton</StyleSuggestion><Selections>"
          + "".join(f"<Selection><SelectionIdentifier>f{i}</SelectionIdentifier><Text>{i}</Text></Selection>"
                    for i in range(1, 6)) +
          "</Selections></SelectionAnswer></AnswerSpecification></Question>"
          "<Question><QuestionIdentifier>age</QuestionIdentifier><DisplayName>Age</DisplayName><IsRequired>true"
          "</IsRequired><QuestionContent><Text>Your age</Text></QuestionContent><AnswerSpecification><FreeTextAnswer>"
          "<Constraints><IsNumeric minValue='18' maxValue='99'/></Constraints></FreeTextAnswer></AnswerSpecification>"
          "</Question></QuestionForm>")


@pytest.mark.browser
def test_a_browser_answers_a_question_form_hit(sandbox, page):
    c = client(sandbox.url)
    hid = c.create_hit(Title="Survey", Description="d", Reward="0.05", AssignmentDurationInSeconds=600,
                       LifetimeInSeconds=3600, MaxAssignments=1, Question=SURVEY)["HIT"]["HITId"]
    page.goto(sandbox.url + "/?workerId=AFORM1")
    page.goto(sandbox.url + f"/mturk/preview?hitId={hid}")
    frame = page.wait_for_selector("iframe#task").content_frame()
    assert frame.wait_for_selector("#submitButton").is_disabled()
    assert frame.inner_text(".qf-formatted b") == "I like cats."
    page.click("#accept")
    page.wait_for_url("**/mturk/work?*")
    frame = page.wait_for_selector("iframe#task").content_frame()
    frame.fill("input[name=age]", "12")                           # the browser checks IsNumeric's bounds
    assert frame.evaluate("document.querySelector('input[name=age]').validity.rangeUnderflow")
    frame.fill("input[name=age]", "34")
    frame.click("#submitButton")                                  # no fluency: the server refuses
    frame = page.frame(name="task")
    frame.wait_for_selector("#qf-errors")
    assert "needs an answer" in frame.inner_text("[data-question-id=fluency]")
    assert frame.input_value("input[name=age]") == "34"           # what was given is kept
    assert c.list_assignments_for_hit(HITId=hid)["NumResults"] == 0
    frame.check("input[name=fluency][value=f4]")
    frame.click("#submitButton")
    page.frame(name="task").wait_for_selector("#submitted")
    (a,) = c.list_assignments_for_hit(HITId=hid)["Assignments"]
    assert ("<Answer><QuestionIdentifier>fluency</QuestionIdentifier><SelectionIdentifier>f4</SelectionIdentifier>"
            "</Answer><Answer><QuestionIdentifier>age</QuestionIdentifier><FreeText>34</FreeText></Answer>") in a["Answer"]


def test_the_toolkits_own_study_with_system_requirements_is_rated_by_simulated_workers(tmp_path, sandbox):
    """publish with [[hit.qualifications]] (Japanese raters with 500 approved HITs): unknown workers are
    refused, and `sandbox simulate`'s workers get a profile meeting the experiment's requirements."""
    from helpers.mturk import make_cfg, write_responses
    from mturk_eval.actions import publish
    from mturk_eval.cli.sandbox import _profile_for
    from mturk_eval.config import QualificationConfig
    from mturk_eval.emulators.simulate import simulate

    cfg = make_cfg(tmp_path, language="ja", assignments_per_hit=2, qualifications=[
        QualificationConfig(type="locale", comparator="EqualTo", locales=["JP"]),
        QualificationConfig(type="approved_hits", comparator="GreaterThanOrEqualTo", values=[500])])
    publish.publish(cfg, write_responses(tmp_path / "r.jsonl", 2), target="local", endpoint_url=sandbox.url,
                    echo=lambda s: None, progress=False)
    assert simulate(sandbox.url, 2, seed=3, progress=False).submitted == 0
    profile = _profile_for(cfg)
    assert (profile["country"], profile["approved"]) == ("JP", 501)
    assert simulate(sandbox.url, 2, seed=4, progress=False, profile=profile).submitted == 4

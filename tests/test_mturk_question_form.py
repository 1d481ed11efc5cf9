"""The local MTurk's QuestionForm: Amazon's schema, MTurk's own rules, the worker's form, answers, answer keys."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from lxml import html as lxml_html

from mturk_eval.emulators.mturk import question_form as qf

NS17 = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2017-11-06/QuestionForm.xsd"
NS05 = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionForm.xsd"
AK = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/AnswerKey.xsd"
QFA_XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "schemas" / "QuestionFormAnswers-2005-10-01.xsd")))


def free(qid, extra="", required=True, constraints=""):
    return (f"<Question><QuestionIdentifier>{qid}</QuestionIdentifier><IsRequired>{str(required).lower()}"
            f"</IsRequired><QuestionContent><Text>{qid}?</Text></QuestionContent><AnswerSpecification>"
            f"<FreeTextAnswer>{constraints}{extra}</FreeTextAnswer></AnswerSpecification></Question>")


def select(qid, ids=("a", "b", "c"), style="radiobutton", counts="", other=""):
    sels = "".join(f"<Selection><SelectionIdentifier>{i}</SelectionIdentifier><Text>Option {i}</Text></Selection>"
                   for i in ids)
    return (f"<Question><QuestionIdentifier>{qid}</QuestionIdentifier><IsRequired>true</IsRequired>"
            f"<QuestionContent><Text>{qid}?</Text></QuestionContent><AnswerSpecification><SelectionAnswer>"
            f"{counts}<StyleSuggestion>{style}</StyleSuggestion><Selections>{sels}{other}</Selections>"
            "</SelectionAnswer></AnswerSpecification></Question>")


def form(*questions, ns=NS17, overview="<Overview><Title>Rate</Title><FormattedContent><![CDATA[<p>Read <b>this</b>"
         " <a href='https://example.org/x'>guide</a>.</p>]]></FormattedContent></Overview>"):
    return f'<QuestionForm xmlns="{ns}">{overview}{"".join(questions)}</QuestionForm>'


SURVEY = form(free("comment", required=False, extra="<NumberOfLinesSuggestion>3</NumberOfLinesSuggestion>"),
              free("age", constraints='<Constraints><IsNumeric minValue="18" maxValue="99"/></Constraints>'),
              select("fluency", ids=("1", "2", "3", "4", "5")),
              select("topics", style="checkbox", counts="<MinSelectionCount>1</MinSelectionCount>"
                     "<MaxSelectionCount>2</MaxSelectionCount>"),
              select("colour", style="dropdown", other="<OtherSelection/>"))


def test_both_schema_versions_parse_and_keep_document_order():
    for ns in (NS05, NS17):
        f = qf.parse_question_form(form(free("x"), select("y"), ns=ns))
        assert [k for k, _ in f.parts] == ["overview", "question", "question"]
        assert [q.identifier for q in f.questions] == ["x", "y"]
    assert qf.parse_question_form(SURVEY).questions[3].html_style == "checkbox"
    assert qf.parse_question_form(SURVEY).questions[4].html_style == "select"


@pytest.mark.parametrize("doc,needle", [
    (form(free("x")).replace("<Text>x?</Text>", "<Bogus/>"), "does not validate against Amazon's schema"),
    (form(free("x")).replace("<IsRequired>true</IsRequired>", "<IsRequired>maybe</IsRequired>"), "schema"),
    (form(free("x"), free("x")), "used by more than one Question"),
    (form(select("y", ids=("a", "a"))), "used twice"),
    (form(free("x"), overview=""), ""),  # a valid form without overview (control)
    (f'<QuestionForm xmlns="{NS17}"></QuestionForm>', "schema"),
    (form(free("x")).replace("<FreeTextAnswer>", "<FreeTextAnswer><Constraints><AnswerFormatRegex regex='[a-'/>"
                             "</Constraints>"), "not a valid regular expression"),
    (form(free("x"), overview="<Overview><FormattedContent><![CDATA[<script>alert(1)</script>]]>"
                              "</FormattedContent></Overview>"), "<script>"),
    (form(free("x"), overview="<Overview><FormattedContent><![CDATA[<p onclick='x()'>hi</p>]]>"
                              "</FormattedContent></Overview>"), "onclick"),
    (form(free("x"), overview="<Overview><FormattedContent><![CDATA[<a href='javascript:x()'>hi</a>]]>"
                              "</FormattedContent></Overview>"), "http(s) URL"),
    (form(free("x"), overview="<Overview><FormattedContent><![CDATA[<p>unclosed]]></FormattedContent></Overview>"),
     "not well-formed XHTML"),
    (form(select("y", counts="<MinSelectionCount>3</MinSelectionCount><MaxSelectionCount>2</MaxSelectionCount>")),
     "above MaxSelectionCount"),
    (form(free("x")).replace("<FreeTextAnswer></FreeTextAnswer>", "<FileUploadAnswer><MaxFileSizeInBytes>9"
                             "</MaxFileSizeInBytes><MinFileSizeInBytes>1</MinFileSizeInBytes></FileUploadAnswer>"),
     "schema"),  # not in the 2017-11-06 schema
    (form(free("x"), ns=NS05).replace("<FreeTextAnswer></FreeTextAnswer>", "<FileUploadAnswer><MaxFileSizeInBytes>"
                                      "9</MaxFileSizeInBytes><MinFileSizeInBytes>1</MinFileSizeInBytes>"
                                      "</FileUploadAnswer>"), "FileUploadAnswer is no longer supported"),
    ("<QuestionForm xmlns='urn:x'/>", "is not a QuestionForm"),
    ("<QuestionForm", "not well-formed XML"),
])
def test_malformed_question_forms_are_refused_with_a_reason(doc, needle):
    if not needle:
        qf.parse_question_form(doc)
        return
    with pytest.raises(qf.QuestionFormError) as exc:
        qf.parse_question_form(doc)
    assert needle in str(exc.value)


def test_rendered_form_has_every_answer_type_and_escapes():
    f = qf.parse_question_form(SURVEY.replace("<Text>age?</Text>", "<Text>&lt;script&gt;x&lt;/script&gt;</Text>"))
    page = qf.render_form(f, title="t", assignment_id="A1", submit_to="/mturk/externalSubmit", preview=False)
    doc = lxml_html.document_fromstring(page)
    assert doc.xpath("//form/@action") == ["/mturk/externalSubmit"]
    assert doc.xpath("//input[@name='assignmentId']/@value") == ["A1"]
    assert doc.xpath("//textarea[@name='comment']/@rows") == ["3"]
    assert doc.xpath("//input[@name='age']/@type") == ["number"]
    assert doc.xpath("//input[@name='age']/@min") == ["18"]
    assert len(doc.xpath("//input[@type='radio'][@name='fluency']")) == 5
    assert len(doc.xpath("//input[@type='checkbox'][@name='topics']")) == 3
    assert doc.xpath("//select[@name='colour']/option/@value")[-1] == qf.OTHER_SELECTION
    assert doc.xpath("//div[@class='qf-formatted']//b/text()") == ["this"]
    assert not doc.xpath("//script")
    assert "&lt;script&gt;" in page
    preview = qf.render_form(f, title="t", assignment_id="ASSIGNMENT_ID_NOT_AVAILABLE", submit_to="/x", preview=True)
    assert lxml_html.document_fromstring(preview).xpath("//input[@id='submitButton']/@disabled")


def test_answers_are_question_form_answers_exactly_as_mturk_writes_them():
    f = qf.parse_question_form(SURVEY)
    xml, errors = qf.answers_from_form(f, {"comment": ["fine <ok> & good"], "age": ["42"], "fluency": ["4"],
                                           "topics": ["a", "c"], "colour": [qf.OTHER_SELECTION],
                                           qf.other_field("colour"): ["teal"]})
    assert errors == {}
    root = etree.fromstring(xml.encode())
    assert QFA_XSD.validate(root), QFA_XSD.error_log
    ns = {"a": qf.ANSWERS_NS}
    answers = root.xpath("//a:Answer", namespaces=ns)
    got = {a.findtext("a:QuestionIdentifier", namespaces=ns): a for a in answers}
    assert list(got) == ["comment", "age", "fluency", "topics", "colour"]
    assert got["comment"].findtext("a:FreeText", namespaces=ns) == "fine <ok> & good"
    assert got["fluency"].xpath("a:SelectionIdentifier/text()", namespaces=ns) == ["4"]
    assert got["topics"].xpath("a:SelectionIdentifier/text()", namespaces=ns) == ["a", "c"]
    assert got["colour"].findtext("a:OtherSelectionText", namespaces=ns) == "teal"
    assert qf.read_answers(xml)["topics"] == ["a", "c"]


@pytest.mark.parametrize("submitted,question,needle", [
    ({"fluency": ["4"], "topics": ["a"], "colour": ["a"]}, "age", "needs an answer"),
    ({"age": ["17"]}, "age", "at least 18"),
    ({"age": ["1e3"]}, "age", "must be a number"),
    ({"age": ["30"], "fluency": ["9"]}, "fluency", "not one of the choices"),
    ({"age": ["30"], "fluency": ["1", "2"]}, "fluency", "at most 1"),
    ({"age": ["30"], "topics": ["a", "b", "c"]}, "topics", "at most 2"),
    ({"age": ["30"], "topics": []}, "topics", "needs an answer"),
    ({"age": ["30"], "colour": [qf.OTHER_SELECTION]}, "colour", "Other: "),
])
def test_answers_breaking_the_answer_specification_are_refused(submitted, question, needle):
    xml, errors = qf.answers_from_form(qf.parse_question_form(SURVEY), submitted)
    assert xml is None and needle in errors[question]


def test_length_and_regex_constraints():
    f = qf.parse_question_form(form(free("code", constraints="<Constraints><Length minLength='2' maxLength='4'/>"
                                         "<AnswerFormatRegex regex='^[a-z]+$' errorText='lower case only'/>"
                                         "</Constraints>")))
    assert qf.answers_from_form(f, {"code": ["a"]})[1]["code"].startswith("The answer must be at least 2")
    assert qf.answers_from_form(f, {"code": ["abcde"]})[1]["code"].startswith("The answer must be at most 4")
    assert qf.answers_from_form(f, {"code": ["AB"]})[1]["code"] == "lower case only"
    assert qf.answers_from_form(f, {"code": ["ab"]})[1] == {}


def answer_key(*questions, mapping=""):
    body = "".join(f"<Question><QuestionIdentifier>{q}</QuestionIdentifier>" + "".join(
        f"<AnswerOption>{''.join(f'<SelectionIdentifier>{s}</SelectionIdentifier>' for s in sel)}"
        f"<AnswerScore>{score}</AnswerScore></AnswerOption>" for sel, score in opts) + "</Question>"
                   for q, opts in questions)
    return f'<AnswerKey xmlns="{AK}">{body}{mapping}</AnswerKey>'


def test_answer_keys_score_tests_and_map_values():
    test = qf.parse_question_form(form(select("q1"), select("q2"), select("q3", style="checkbox",
                                       counts="<MaxSelectionCount>3</MaxSelectionCount>")))
    key_xml = answer_key(("q1", [(["a"], 10)]), ("q2", [(["b"], 10)]), ("q3", [(["a", "c"], 20)]))
    key = qf.parse_answer_key(key_xml, test)
    xml, _ = qf.answers_from_form(test, {"q1": ["a"], "q2": ["c"], "q3": ["c", "a"]})
    assert qf.score(key, xml) == 30
    pct = qf.parse_answer_key(key_xml.replace("</AnswerKey>", "<QualificationValueMapping><PercentageMapping>"
                                              "<MaximumSummedScore>40</MaximumSummedScore></PercentageMapping>"
                                              "</QualificationValueMapping></AnswerKey>"), test)
    assert qf.score(pct, xml) == 75
    rng = qf.parse_answer_key(key_xml.replace("</AnswerKey>", "<QualificationValueMapping><RangeMapping>"
                                              "<SummedScoreRange><InclusiveLowerBound>0</InclusiveLowerBound>"
                                              "<InclusiveUpperBound>20</InclusiveUpperBound><QualificationValue>1"
                                              "</QualificationValue></SummedScoreRange><OutOfRangeQualificationValue>"
                                              "9</OutOfRangeQualificationValue></RangeMapping>"
                                              "</QualificationValueMapping></AnswerKey>"), test)
    assert qf.score(rng, xml) == 9
    with pytest.raises(qf.QuestionFormError, match="not in the Test"):
        qf.parse_answer_key(answer_key(("nope", [(["a"], 1)])), test)
    with pytest.raises(qf.QuestionFormError, match="does not offer"):
        qf.parse_answer_key(answer_key(("q1", [(["z"], 1)])), test)
    with pytest.raises(qf.QuestionFormError, match="schema"):
        qf.parse_answer_key(f'<AnswerKey xmlns="{AK}"><Question/></AnswerKey>', test)


def test_known_amazon_urls_are_rewritten_and_nothing_else():
    from mturk_eval.emulators.mturk.crowd_elements import rewrite_known_urls

    page = ("<script src='https://s3.amazonaws.com/mturk-public/externalHIT_v1.js'></script>"
            "<script src=\"//assets.crowd.aws/crowd-html-elements.js\"></script>"
            "<script src='http://assets.crowd.aws/crowd-html-elements-without-ce-polyfill.js'></script>"
            "<form action='https://workersandbox.mturk.com/mturk/externalSubmit'></form>"
            "<form action='https://www.mturk.com/mturk/externalSubmit'></form>"
            "<img src='https://s3.amazonaws.com/my-bucket/cat.png'><a href='https://www.mturk.com/'>MTurk</a>")
    out = rewrite_known_urls(page)
    assert out.count("/mturk/assets/externalHIT_v1.js") == 1
    assert out.count("/mturk/assets/crowd-html-elements.js") == 2
    assert out.count("action='/mturk/externalSubmit'") == 2
    assert "https://s3.amazonaws.com/my-bucket/cat.png" in out and "href='https://www.mturk.com/'" in out

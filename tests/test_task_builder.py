"""The HIT builder: responses validation, templates, HTMLQuestion schema and size, attention checks, plans."""
from __future__ import annotations

import json

import pytest
from lxml import etree
from lxml import html as lxml_html

from mturk_eval.tasks import builder as hits
from mturk_eval.config import ASPECTS
from mturk_eval.errors import UserError
from helpers.mturk import SCHEMAS, make_cfg, response_row, write_responses

SUBMIT = "https://workersandbox.mturk.com/mturk/externalSubmit"


def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def _html_of(xml: str) -> str:
    root = etree.fromstring(xml.encode("utf-8"))
    return root.find(f"{{{hits.HTMLQUESTION_NS}}}HTMLContent").text


# ---------------------------------------------------------------- responses.jsonl validation

def test_load_responses_reads_any_file_of_the_schema(tmp_path):
    minimal = {k: response_row(0)[k] for k in hits.REQUIRED_KEYS}
    p = write_responses(tmp_path / "r.jsonl", rows=[minimal, response_row(1)])
    rows = hits.load_responses(p)
    assert [r["item_id"] for r in rows] == [minimal["item_id"], response_row(1)["item_id"]]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("response"), ":2: response: required key missing"),
    (lambda r: r.update(item_id="bad id!"), ":2: item_id: expected"),
    (lambda r: r.update(item_id=response_row(0)["item_id"]), "already used on line 1"),
    (lambda r: r.update(persona="i like cats"), ":2: persona: expected a non-empty list"),
    (lambda r: r.update(persona=[]), ":2: persona: expected a non-empty list"),
    (lambda r: r.update(method=""), ":2: method: expected a non-empty string"),
    (lambda r: r.update(response=3), ":2: response: expected a string"),
    (lambda r: r.update(persona_id=7), ":2: persona_id: expected a string or null"),
    (lambda r: r.update(attention_check={"aspects": {}}), ":2: attention_check: reserved"),
    (lambda r: r.update(eval_set="banana"), ":2: eval_set: expected persona or general, got 'banana'"),
    (lambda r: r.update(eval_set="Persona"), ":2: eval_set: expected persona or general, got 'Persona'"),
])
def test_load_responses_errors_name_file_line_and_field(tmp_path, mutate, message):
    bad = response_row(1)
    mutate(bad)
    p = write_responses(tmp_path / "r.jsonl", rows=[response_row(0), bad])
    with pytest.raises(UserError) as e:
        hits.load_responses(p)
    assert message in e.value.message and str(p) in e.value.message


def test_load_responses_not_json_and_empty(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(response_row(0)) + "\n{oops\n")
    with pytest.raises(UserError, match=r"r\.jsonl:2: not valid JSON"):
        hits.load_responses(p)
    p.write_text("\n")
    with pytest.raises(UserError, match="no responses"):
        hits.load_responses(p)


# ---------------------------------------------------------------- the question document

@pytest.mark.parametrize("language", ["en", "ja"])
def test_question_is_valid_htmlquestion_with_the_architecture_field_names(tmp_path, language):
    cfg = make_cfg(tmp_path, language=language, items_per_hit=3)
    items = [response_row(i) for i in range(3)]
    xml = hits.build_question(items, cfg, SUBMIT)
    doc = etree.fromstring(xml.encode("utf-8"))
    schema = _schema("HTMLQuestion.xsd")
    assert schema.validate(doc), schema.error_log
    assert len(xml.encode("utf-8")) <= hits.MAX_QUESTION_BYTES
    page = lxml_html.fromstring(_html_of(xml))
    form = page.get_element_by_id("mturk_form")
    assert form.get("method") == "post" and form.get("action") == SUBMIT
    hidden = form.xpath(".//input[@name='assignmentId']")
    assert len(hidden) == 1 and hidden[0].get("type") == "hidden"
    for k in range(3):
        for aspect in ASPECTS:
            radios = form.xpath(f".//input[@name='i{k}_{aspect}']")
            assert [r.get("value") for r in radios] == ["1", "2", "3", "4", "5"]
            assert all(r.get("type") == "radio" and r.get("required") is not None for r in radios)
    assert form.xpath(".//button[@type='submit']")
    text = page.text_content()
    for it in items:
        assert it["response"] in text and it["utterance"] in text
    # The page posts to turkSubmitTo and refuses to submit in preview (assignmentId not available).
    assert "turkSubmitTo" in _html_of(xml) and "/mturk/externalSubmit" in _html_of(xml)
    assert "ASSIGNMENT_ID_NOT_AVAILABLE" in _html_of(xml)


def test_schema_rejects_a_wrong_document():
    schema = _schema("HTMLQuestion.xsd")
    bad = etree.fromstring(f'<HTMLQuestion xmlns="{hits.HTMLQUESTION_NS}"><FrameHeight>0</FrameHeight></HTMLQuestion>'.encode())
    assert not schema.validate(bad)


def test_japanese_template_is_japanese(tmp_path):
    xml = hits.build_question([response_row(0)], make_cfg(tmp_path, language="ja"), SUBMIT)
    assert 'lang="ja"' in xml and "ペルソナ考慮" in xml


def test_autoescaping_text_cannot_inject_markup(tmp_path):
    evil = response_row(0, response='<script>alert("x")</script><img src=x onerror=alert(1)>]]>',
                        utterance="<b>hi</b>", persona=["<iframe src=//evil>"])
    xml = hits.build_question([evil], make_cfg(tmp_path), SUBMIT)
    assert _schema("HTMLQuestion.xsd").validate(etree.fromstring(xml.encode()))
    html = _html_of(xml)
    assert "<script>alert" not in html and "<img src=x" not in html and "<iframe" not in html
    assert "&lt;script&gt;alert" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    page = lxml_html.fromstring(html)
    assert not page.xpath("//img") and not page.xpath("//iframe") and len(page.xpath("//script")) == 1
    assert evil["response"] in page.text_content()


def test_cdata_terminator_in_a_custom_template_is_split(tmp_path):
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "rating_en.html").write_text("<!DOCTYPE html><p>a]]>b</p>{% for i in items %}{{ i.response }}{% endfor %}")
    cfg = make_cfg(tmp_path, template_dir=str(tpl))
    xml = hits.build_question([response_row(0)], cfg, SUBMIT)
    assert _html_of(xml).startswith("<!DOCTYPE html><p>a]]>b</p>")


def test_template_dir_overrides_and_errors(tmp_path):
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "rating_en.html").write_text('{% extends "rating_base.html" %}{% set t = {} %}')
    with pytest.raises(UserError, match="undefined"):
        hits.build_question([response_row(0)], make_cfg(tmp_path, template_dir=str(tpl)), SUBMIT)
    (tpl / "rating_en.html").write_text("{% for %}")
    with pytest.raises(UserError, match="template syntax error"):
        hits.build_question([response_row(0)], make_cfg(tmp_path, template_dir=str(tpl)), SUBMIT)
    with pytest.raises(UserError, match="rating_de.html: template not found"):
        hits.render_html([response_row(0)], "de", SUBMIT)
    # A folder that is not there is an error, not a silent fall-back to the built-in template.
    with pytest.raises(UserError, match=r"^hit\.template_dir: .*nope: folder not found$"):
        hits.build_question([response_row(0)], make_cfg(tmp_path, template_dir=str(tmp_path / "nope")), SUBMIT)


def test_64kb_limit_is_refused_with_advice(tmp_path):
    cfg = make_cfg(tmp_path, items_per_hit=40)
    items = [response_row(i, response="x" * 1500) for i in range(40)]
    with pytest.raises(UserError, match=r"over MTurk's 65535-byte limit; lower hit.items_per_hit \(now 40\)"):
        hits.build_question(items, cfg, SUBMIT)
    assert len(hits.build_question(items[:5], make_cfg(tmp_path, items_per_hit=5), SUBMIT).encode()) < 65535


# ---------------------------------------------------------------- attention checks and plans

def test_attention_checks_rate_kinds_and_expected_answers():
    items = [response_row(i) for i in range(18)]
    checks = hits.make_attention_checks(items, 0.1, seed=1, language="en", batch="main")
    assert len(checks) == 2  # 2 / (18 + 2) = 10% of all items
    garbled, off = checks
    assert garbled["attention_check"]["aspects"] == {"fluency": 2} and garbled["attention_check"]["kind"] == "garbled"
    assert off["attention_check"]["aspects"] == {"relevance": 2}
    assert off["response"] in hits._OFF_TOPIC["en"]
    for c in checks:
        assert c["method"] == hits.ATTENTION_METHOD and hits.ITEM_ID_RE.fullmatch(c["item_id"])
        src = next(i for i in items if i["item_id"] == c["attention_check"]["source"])
        assert c["persona"] == src["persona"] and c["utterance"] == src["utterance"]
    assert hits.make_attention_checks(items, 0.0, 1, "en", "main") == []
    assert hits.make_attention_checks(items, 0.1, 1, "en", "main") == checks  # seeded


def test_attention_ids_stay_distinct_with_long_batch_labels_and_source_ids():
    """Ids used to be cut to 200 characters: long labels or source ids merged every check into one item."""
    long_ids = [response_row(i, item_id=f"{'x' * 180}.{i:04d}") for i in range(40)]
    checks = hits.make_attention_checks(long_ids, 0.2, 1, "en", "b" * 40 + ".0")
    assert len(checks) == 10 and len({c["item_id"] for c in checks}) == 10
    assert all(hits.ITEM_ID_RE.fullmatch(c["item_id"]) for c in checks)
    assert {c["attention_check"]["source"] for c in checks} <= {i["item_id"] for i in long_ids}
    with pytest.raises(UserError, match=r"--batch: expected 1-40 characters of \[A-Za-z0-9_.-\], got 'a b'"):
        hits.check_batch("a b")
    hits.check_batch("round-2_v1.0")


def test_annotations_keep_hit_key_and_token_whole_for_long_experiment_names():
    items = [response_row(i) for i in range(4)]
    kw = dict(target="sandbox", batch="b" * 40, seed=3, items_per_hit=1, max_assignments=5, reward="0.05")
    plan = hits.plan_hits(items, experiment="e" * 300, **kw)
    anns = [h["annotation"] for h in plan]
    assert len(set(anns)) == 4 and all(len(a) <= 255 for a in anns)
    assert all(a.endswith(f":{h['hit_key']}:{h['request_token']}") for a, h in zip(anns, plan))
    other = hits.plan_hits(items, experiment="e" * 299 + "f", **kw)
    assert not set(anns) & {h["annotation"] for h in other}
    assert hits.plan_hits(items, experiment="exp1", **kw)[0]["annotation"].startswith("mturk-eval:exp1:bbb")


def test_attention_check_is_not_marked_in_the_page(tmp_path):
    items = [response_row(i) for i in range(3)]
    check = hits.make_attention_checks(items, 0.5, 1, "en", "main")[0]
    html = _html_of(hits.build_question([check], make_cfg(tmp_path), SUBMIT))
    assert "attention" not in html.lower() and check["item_id"] not in html


def test_plan_hits_is_deterministic_and_covers_each_item_once():
    items = [response_row(i) for i in range(10)]
    kw = dict(experiment="exp1", target="sandbox", batch="main", seed=3, items_per_hit=3, max_assignments=5,
              reward="0.05")
    plan = hits.plan_hits(items, **kw)
    assert plan == hits.plan_hits(items, **kw)
    assert [len(h["item_ids"]) for h in plan] == [3, 3, 3, 1]
    assert sorted(i for h in plan for i in h["item_ids"]) == sorted(i["item_id"] for i in items)
    tokens = [h["request_token"] for h in plan]
    assert len(set(tokens)) == 4 and all(1 <= len(t) <= 64 for t in tokens)
    other = hits.plan_hits(items, **{**kw, "target": "live"})
    assert not set(tokens) & {h["request_token"] for h in other}
    assert all(len(h["annotation"]) <= 255 for h in plan)


def test_attention_checks_never_share_a_hit_with_their_source_item():
    """Seen beside its source item (same persona and utterance, a broken reply) a check gives itself away;
    with 10 items per HIT that happened to 11% of checks before plans kept them apart."""
    items = [response_row(i) for i in range(100)]
    checks = hits.make_attention_checks(items, 0.1, 0, "en", "main.0")
    source = {c["item_id"]: c["attention_check"]["source"] for c in checks}
    for seed in range(30):
        kw = dict(experiment="e", target="sandbox", batch="main", seed=seed, items_per_hit=10, max_assignments=3,
                  reward="0.05")
        plan = hits.plan_hits(items + checks, **kw)
        assert plan == hits.plan_hits(items + checks, **kw)  # still deterministic
        assert [len(h["item_ids"]) for h in plan] == [10] * 11 + [1]
        assert sorted(i for h in plan for i in h["item_ids"]) == sorted(i["item_id"] for i in items + checks)
        assert not [i for h in plan for i in h["item_ids"] if source.get(i) in h["item_ids"]], seed


def test_control_characters_cannot_break_the_xml(tmp_path):
    odd = response_row(0, response="a\x00b\x07c\x1fd\ufffe", utterance="tab\tand\nnewline")
    xml = hits.build_question([odd], make_cfg(tmp_path), SUBMIT)
    assert _schema("HTMLQuestion.xsd").validate(etree.fromstring(xml.encode("utf-8")))
    html = _html_of(xml)
    assert "a\ufffdb\ufffdc\ufffdd\ufffd" in html and "tab\tand\nnewline" in html

"""MTurk's QuestionForm on the local MTurk: validation, the worker's web form, answers, answer keys.

A QuestionForm (namespaces 2005-10-01 and 2017-11-06) is a HIT's or a qualification test's questions.
MTurk checks it against Amazon's schema and renders it as a web form; the worker's answers come back as
a QuestionFormAnswers document (``FreeText`` for free-text questions, one ``SelectionIdentifier`` per
chosen option and ``OtherSelectionText`` for selection questions). An AnswerKey scores a qualification
test's answers and maps the summed score to the qualification's value.

- :func:`parse_question_form` validates a document against Amazon's XSD (``schemas/``) and MTurk's own
  rules (unique identifiers, no retired FileUploadAnswer / Application, FormattedContent in MTurk's XHTML
  subset), raising :class:`QuestionFormError` with the message MTurk's ``XMLParseError`` carries.
- :func:`render_form` turns it into the HTML page the worker fills in (free text, numbers, radio
  buttons, checkboxes, lists, an "other" text box), :func:`answers_from_form` checks a submission against
  the answer specification and writes the QuestionFormAnswers document.
- :func:`parse_answer_key` and :func:`score` grade a qualification test.

lxml does the schema validation; the rendering is hand-written because no library renders QuestionForm.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import jinja2
from lxml import etree
from markupsafe import Markup

SCHEMA_BASE = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas"
QUESTION_FORM_NS = {f"{SCHEMA_BASE}/2005-10-01/QuestionForm.xsd": "2005-10-01",
                    f"{SCHEMA_BASE}/2017-11-06/QuestionForm.xsd": "2017-11-06"}
ANSWER_KEY_NS = f"{SCHEMA_BASE}/2005-10-01/AnswerKey.xsd"
ANSWERS_NS = f"{SCHEMA_BASE}/2005-10-01/QuestionFormAnswers.xsd"
SCHEMA_DIR = Path(__file__).parent / "schemas"
XS = "http://www.w3.org/2001/XMLSchema"
OTHER_SELECTION = "__other__"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

# MTurk's XHTML subset for FormattedContent (FormattedContentXHTMLSubset.xsd): these elements only, no
# scripts, styles, forms or event attributes.
FORMATTED_TAGS = {
    "a", "b", "big", "blockquote", "br", "center", "cite", "code", "col", "colgroup", "dd", "del", "div", "dl",
    "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "map", "area", "ol",
    "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul", "caption"}
FORMATTED_ATTRS = {
    "href", "src", "alt", "title", "width", "height", "align", "valign", "border", "cellpadding", "cellspacing",
    "colspan", "rowspan", "color", "size", "face", "lang", "dir", "name", "shape", "coords", "usemap", "type",
    "start", "summary", "abbr", "scope", "headers", "span", "cite", "datetime", "noshade", "nowrap", "clear"}
_URL_ATTRS = {"href", "src", "cite", "usemap"}

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True, undefined=jinja2.StrictUndefined)


class QuestionFormError(ValueError):
    """A QuestionForm or AnswerKey MTurk refuses (the message of its ``AWS.MechanicalTurk.XMLParseError``)."""


# --------------------------------------------------------------------------------------------------
# Schemas

@lru_cache(maxsize=None)
def _schema(version: str) -> etree.XMLSchema:
    """Amazon's QuestionForm schema; 2017-11-06 is 2005-10-01 without FileUploadAnswer and Application."""
    doc = etree.parse(str(SCHEMA_DIR / "QuestionForm-2005-10-01.xsd"), _PARSER)
    if version == "2017-11-06":
        root = doc.getroot()
        old = f"{SCHEMA_BASE}/2005-10-01/QuestionForm.xsd"
        new = f"{SCHEMA_BASE}/2017-11-06/QuestionForm.xsd"
        for el in root.xpath("//xs:element[@name='FileUploadAnswer' or @name='Application']", namespaces={"xs": XS}):
            el.getparent().remove(el)
        text = etree.tostring(root, encoding="unicode").replace(old, new)
        return etree.XMLSchema(etree.fromstring(text, _PARSER))
    return etree.XMLSchema(doc)


@lru_cache(maxsize=1)
def _answer_key_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "AnswerKey-2005-10-01.xsd"), _PARSER))


def _parse_xml(text: str, what: str) -> etree._Element:
    try:
        return etree.fromstring(text.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise QuestionFormError(f"The {what} is not well-formed XML: {exc}") from None


def _schema_errors(schema: etree.XMLSchema, root: etree._Element, what: str) -> None:
    if not schema.validate(root):
        err = schema.error_log.last_error
        raise QuestionFormError(f"The {what} does not validate against Amazon's schema: line {err.line}:"
                                f" {err.message}")


# --------------------------------------------------------------------------------------------------
# The document

@dataclass
class ContentBlock:
    """One piece of Overview / QuestionContent: kind is title, text, list, formatted, binary."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    html: str = ""          # formatted: sanitised XHTML
    url: str = ""           # binary: DataURL
    mime: str = ""          # binary: image | audio | video


@dataclass
class FreeTextSpec:
    is_numeric: bool = False
    min_value: int | None = None
    max_value: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    regexes: list[tuple[str, str, str]] = field(default_factory=list)  # (regex, errorText, flags)
    default_text: str = ""
    lines: int = 1


@dataclass
class Selection:
    identifier: str
    content: ContentBlock


@dataclass
class FormQuestion:
    identifier: str
    display_name: str
    required: bool
    content: list[ContentBlock]
    kind: str                                   # free_text | selection
    free_text: FreeTextSpec | None = None
    selections: list[Selection] = field(default_factory=list)
    min_selections: int = 1
    max_selections: int = 1
    style: str = "radiobutton"
    other: FreeTextSpec | None = None

    @property
    def html_style(self) -> str:
        """How the selection is drawn: radio, checkbox, select, multiselect."""
        if self.style in ("dropdown", "combobox"):
            return "select"
        if self.style in ("list", "multichooser"):
            return "multiselect" if self.max_selections > 1 else "select"
        if self.style == "checkbox" or self.max_selections > 1:
            return "checkbox"
        return "radio"


@dataclass
class QuestionForm:
    """A parsed, validated QuestionForm: overviews and questions in document order."""

    version: str
    parts: list[tuple[str, Any]]                # ("overview", [ContentBlock]) | ("question", FormQuestion)

    @property
    def questions(self) -> list[FormQuestion]:
        return [q for kind, q in self.parts if kind == "question"]


def is_question_form(root: etree._Element) -> bool:
    return isinstance(root.tag, str) and etree.QName(root).localname == "QuestionForm" \
        and etree.QName(root).namespace in QUESTION_FORM_NS


def _local(el) -> str:
    return etree.QName(el).localname


def _kids(el) -> list:
    return [c for c in el if isinstance(c.tag, str)]


def _child(el, name: str):
    return next((c for c in _kids(el) if _local(c) == name), None)


def _text(el, name: str, default: str = "") -> str:
    c = _child(el, name)
    return (c.text or "") if c is not None else default


def sanitise_formatted(xhtml: str, where: str) -> str:
    """FormattedContent checked against MTurk's XHTML subset; the (re-serialised) safe HTML."""
    try:
        frag = etree.fromstring(f"<div>{xhtml}</div>".encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise QuestionFormError(f"{where}: FormattedContent is not well-formed XHTML: {exc}") from None
    for el in frag.iter():
        if not isinstance(el.tag, str):
            raise QuestionFormError(f"{where}: FormattedContent may not contain comments or processing"
                                    " instructions.")
        name = etree.QName(el).localname.lower()
        if name not in FORMATTED_TAGS:
            raise QuestionFormError(f"{where}: FormattedContent contains the element <{name}>, which is not"
                                    " in MTurk's XHTML subset.")
        for attr, value in el.attrib.items():
            a = etree.QName(attr).localname.lower()
            if a not in FORMATTED_ATTRS:
                raise QuestionFormError(f"{where}: FormattedContent contains the attribute {a!r} on <{name}>,"
                                        " which is not allowed (no event handlers, styles or scripts).")
            if a in _URL_ATTRS and not re.match(r"^(https?://|mailto:|#)", value.strip(), re.I):
                raise QuestionFormError(f"{where}: FormattedContent {a}={value[:60]!r} must be an http(s) URL.")
    inner = (frag.text and _escape(frag.text) or "") + "".join(
        etree.tostring(c, encoding="unicode", method="html") for c in frag)
    return inner


def _escape(s: str) -> str:
    return str(Markup.escape(s))


def _content(el, where: str) -> list[ContentBlock]:
    out = []
    for c in _kids(el):
        name = _local(c)
        if name == "Title":
            out.append(ContentBlock("title", text=c.text or ""))
        elif name == "Text":
            out.append(ContentBlock("text", text=c.text or ""))
        elif name == "List":
            out.append(ContentBlock("list", items=[li.text or "" for li in _kids(c)]))
        elif name == "FormattedContent":
            out.append(ContentBlock("formatted", html=sanitise_formatted(c.text or "", where)))
        elif name in ("Binary", "EmbeddedBinary"):
            mime = _child(c, "MimeType") if name == "Binary" else _child(c, "EmbeddedMimeType")
            out.append(ContentBlock("binary", text=_text(c, "AltText"), url=_text(c, "DataURL").strip(),
                                    mime=_text(mime, "Type") if mime is not None else ""))
        elif name == "Application":
            raise QuestionFormError(f"{where}: the Application element (Flash, Java applets) is no longer"
                                    " supported by MTurk (since 2017-12-12).")
    return out


def _free_text_spec(el) -> FreeTextSpec:
    spec = FreeTextSpec()
    cons = _child(el, "Constraints")
    if cons is not None:
        num = _child(cons, "IsNumeric")
        if num is not None:
            spec.is_numeric = True
            spec.min_value = int(num.get("minValue")) if num.get("minValue") is not None else None
            spec.max_value = int(num.get("maxValue")) if num.get("maxValue") is not None else None
        length = _child(cons, "Length")
        if length is not None:
            spec.min_length = int(length.get("minLength")) if length.get("minLength") is not None else None
            spec.max_length = int(length.get("maxLength")) if length.get("maxLength") is not None else None
        for rx in (c for c in _kids(cons) if _local(c) == "AnswerFormatRegex"):
            spec.regexes.append((rx.get("regex"), rx.get("errorText") or "", rx.get("flags") or ""))
    spec.default_text = _text(el, "DefaultText")
    lines = _child(el, "NumberOfLinesSuggestion")
    spec.lines = int(lines.text) if lines is not None else 1
    return spec


def _compile(regex: str, flags: str, where: str) -> re.Pattern:
    f = re.I if "i" in flags else 0
    try:
        return re.compile(regex, f)
    except re.error as exc:
        raise QuestionFormError(f"{where}: AnswerFormatRegex {regex!r} is not a valid regular expression"
                                f" ({exc}).") from None


def parse_question_form(xml: str | etree._Element) -> QuestionForm:
    """A QuestionForm validated as MTurk validates it (schema, then its own rules)."""
    root = _parse_xml(xml, "QuestionForm") if isinstance(xml, str) else xml
    ns = etree.QName(root).namespace
    if _local(root) != "QuestionForm" or ns not in QUESTION_FORM_NS:
        raise QuestionFormError(f"The root element {_local(root)!r} (namespace {ns!r}) is not a QuestionForm"
                                " of the 2005-10-01 or 2017-11-06 schema.")
    version = QUESTION_FORM_NS[ns]
    _schema_errors(_schema(version), root, "QuestionForm")
    parts: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for el in _kids(root):
        if _local(el) == "Overview":
            parts.append(("overview", _content(el, "Overview")))
            continue
        qid = _text(el, "QuestionIdentifier")
        where = f"Question {qid!r}"
        if not qid.strip():
            raise QuestionFormError("A Question has an empty QuestionIdentifier.")
        if qid in seen:
            raise QuestionFormError(f"The QuestionIdentifier {qid!r} is used by more than one Question.")
        seen.add(qid)
        required = _text(el, "IsRequired", "false").strip() in ("true", "1")
        content = _content(_child(el, "QuestionContent"), where)
        spec_el = _kids(_child(el, "AnswerSpecification"))[0]
        q = FormQuestion(qid, _text(el, "DisplayName"), required, content, "free_text")
        if _local(spec_el) == "FileUploadAnswer":
            raise QuestionFormError(f"{where}: FileUploadAnswer is no longer supported by MTurk (since"
                                    " 2017-12-12); ask workers to upload files to your own storage instead.")
        if _local(spec_el) == "FreeTextAnswer":
            q.free_text = _free_text_spec(spec_el)
            for rx, _, flags in q.free_text.regexes:
                _compile(rx, flags, where)
            ft = q.free_text
            if ft.min_value is not None and ft.max_value is not None and ft.min_value > ft.max_value:
                raise QuestionFormError(f"{where}: IsNumeric minValue {ft.min_value} is above maxValue"
                                        f" {ft.max_value}.")
        else:
            q.kind = "selection"
            mins, maxs = _child(spec_el, "MinSelectionCount"), _child(spec_el, "MaxSelectionCount")
            q.max_selections = int(maxs.text) if maxs is not None else 1
            q.min_selections = int(mins.text) if mins is not None else (1 if required else 0)
            q.style = _text(spec_el, "StyleSuggestion", "radiobutton").strip() or "radiobutton"
            sels = _child(spec_el, "Selections")
            ids: set[str] = set()
            for s in _kids(sels):
                if _local(s) == "OtherSelection":
                    q.other = _free_text_spec(s)
                    continue
                sid = _text(s, "SelectionIdentifier")
                if sid in ids or sid == OTHER_SELECTION:
                    raise QuestionFormError(f"{where}: the SelectionIdentifier {sid!r} is used twice.")
                ids.add(sid)
                block = _content(s, where)
                q.selections.append(Selection(sid, block[0] if block else ContentBlock("text")))
            if q.min_selections > q.max_selections:
                raise QuestionFormError(f"{where}: MinSelectionCount {q.min_selections} is above"
                                        f" MaxSelectionCount {q.max_selections}.")
            if q.min_selections > len(q.selections) + (1 if q.other else 0):
                raise QuestionFormError(f"{where}: MinSelectionCount {q.min_selections} is more than the"
                                        f" {len(q.selections)} selections offered.")
        parts.append(("question", q))
    if not seen:
        raise QuestionFormError("The QuestionForm has no Question.")
    return QuestionForm(version, parts)


# --------------------------------------------------------------------------------------------------
# The worker's page

def render_form(form: QuestionForm, *, title: str, assignment_id: str, submit_to: str, preview: bool,
                values: Mapping[str, list[str]] | None = None, errors: Mapping[str, str] | None = None,
                hidden: Mapping[str, str] | None = None) -> str:
    """The HTML page MTurk draws for a QuestionForm; posts to ``submit_to`` with ``assignmentId``.

    ``values`` (field -> submitted values) and ``errors`` (question id -> message) redraw a refused
    submission with what the worker typed.
    """
    return TEMPLATES.get_template("question_form.html").render(
        form=form, title=title, assignment_id=assignment_id, submit_to=submit_to, preview=preview,
        values=dict(values or {}), errors=dict(errors or {}), hidden=dict(hidden or {}),
        other=OTHER_SELECTION, Markup=Markup)


def other_field(qid: str) -> str:
    """The form field holding a selection question's "other" text."""
    return f"{qid}{OTHER_SELECTION}"


def _check_free_text(value: str, spec: FreeTextSpec, required: bool) -> str | None:
    if value == "":
        return "This question needs an answer." if required else None
    if spec.is_numeric:
        if not re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", value.strip()):
            return "The answer must be a number."
        n = float(value)
        if spec.min_value is not None and n < spec.min_value:
            return f"The answer must be at least {spec.min_value}."
        if spec.max_value is not None and n > spec.max_value:
            return f"The answer must be at most {spec.max_value}."
    if spec.min_length is not None and len(value) < spec.min_length:
        return f"The answer must be at least {spec.min_length} characters long."
    if spec.max_length is not None and len(value) > spec.max_length:
        return f"The answer must be at most {spec.max_length} characters long."
    for rx, error_text, flags in spec.regexes:
        if not _compile(rx, flags, "answer").search(value):
            return error_text or f"The answer must match {rx}."
    return None


def answers_from_form(form: QuestionForm, submitted: Mapping[str, list[str]]) -> tuple[str | None, dict[str, str]]:
    """(QuestionFormAnswers XML, {}) for a valid submission, else (None, {question id: what is wrong})."""
    errors: dict[str, str] = {}
    answers: list[tuple[str, str, Any]] = []
    for q in form.questions:
        got = [v for v in submitted.get(q.identifier, [])]
        if q.kind == "free_text":
            value = got[0] if got else ""
            problem = _check_free_text(value, q.free_text or FreeTextSpec(), q.required)
            if problem:
                errors[q.identifier] = problem
            elif value != "":
                answers.append((q.identifier, "free", value))
            continue
        known = {s.identifier for s in q.selections}
        chosen = [v for v in dict.fromkeys(got) if v in known or (q.other and v == OTHER_SELECTION)]
        if len(chosen) != len(dict.fromkeys(got)):
            errors[q.identifier] = "An answer is not one of the choices offered."
            continue
        other_text = (submitted.get(other_field(q.identifier)) or [""])[0]
        if q.other and other_text and OTHER_SELECTION not in chosen and q.max_selections == 1 and not chosen:
            chosen = [OTHER_SELECTION]
        if len(chosen) < q.min_selections:
            errors[q.identifier] = ("This question needs an answer." if q.min_selections == 1 else
                                    f"Choose at least {q.min_selections} options.")
            continue
        if len(chosen) > q.max_selections:
            errors[q.identifier] = f"Choose at most {q.max_selections} option{'s' * (q.max_selections > 1)}."
            continue
        if OTHER_SELECTION in chosen:
            problem = _check_free_text(other_text, q.other or FreeTextSpec(), True)
            if problem:
                errors[q.identifier] = f"Other: {problem}"
                continue
        answers.append((q.identifier, "selection", ([c for c in chosen if c != OTHER_SELECTION],
                                                    other_text if OTHER_SELECTION in chosen else None)))
    if errors:
        return None, errors
    return answers_xml(answers), {}


def answers_xml(answers: list[tuple[str, str, Any]]) -> str:
    """QuestionFormAnswers: ("id", "free", text) -> FreeText; ("id", "selection", (ids, other)) ->
    SelectionIdentifier* OtherSelectionText?. Built with lxml, so always escaped."""
    root = etree.Element(f"{{{ANSWERS_NS}}}QuestionFormAnswers", nsmap={None: ANSWERS_NS})
    for qid, kind, value in answers:
        ans = etree.SubElement(root, f"{{{ANSWERS_NS}}}Answer")
        etree.SubElement(ans, f"{{{ANSWERS_NS}}}QuestionIdentifier").text = qid
        if kind == "free":
            etree.SubElement(ans, f"{{{ANSWERS_NS}}}FreeText").text = value
        else:
            ids, other = value
            for sid in ids:
                etree.SubElement(ans, f"{{{ANSWERS_NS}}}SelectionIdentifier").text = sid
            if other is not None:
                etree.SubElement(ans, f"{{{ANSWERS_NS}}}OtherSelectionText").text = other
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True).decode("utf-8")


def read_answers(xml: str) -> dict[str, list[str] | str]:
    """Question id -> FreeText (str) or the chosen SelectionIdentifiers (list) of a QuestionFormAnswers."""
    root = _parse_xml(xml, "QuestionFormAnswers")
    out: dict[str, list[str] | str] = {}
    for ans in _kids(root):
        qid = _text(ans, "QuestionIdentifier")
        free = _child(ans, "FreeText")
        out[qid] = (free.text or "") if free is not None else [c.text or "" for c in _kids(ans)
                                                               if _local(c) == "SelectionIdentifier"]
    return out


# --------------------------------------------------------------------------------------------------
# Answer keys (qualification tests)

@dataclass
class AnswerKey:
    questions: dict[str, tuple[list[tuple[frozenset[str], int]], int]]   # qid -> (options, default score)
    mapping: tuple[str, Any] | None                                      # (kind, params)


def parse_answer_key(xml: str, test: QuestionForm) -> AnswerKey:
    """An AnswerKey validated against Amazon's schema and against the test it scores."""
    root = _parse_xml(xml, "AnswerKey")
    if _local(root) != "AnswerKey" or etree.QName(root).namespace != ANSWER_KEY_NS:
        raise QuestionFormError(f"The AnswerKey root element must be AnswerKey in the namespace {ANSWER_KEY_NS}.")
    _schema_errors(_answer_key_schema(), root, "AnswerKey")
    by_id = {q.identifier: q for q in test.questions}
    questions: dict[str, tuple[list[tuple[frozenset[str], int]], int]] = {}
    mapping = None
    for el in _kids(root):
        if _local(el) == "QualificationValueMapping":
            m = _kids(el)[0]
            kind = _local(m)
            if kind == "PercentageMapping":
                mapping = (kind, int(_text(m, "MaximumSummedScore")))
                if mapping[1] <= 0:
                    raise QuestionFormError("MaximumSummedScore must be greater than 0.")
            elif kind == "ScaleMapping":
                mapping = (kind, float(_text(m, "SummedScoreMultiplier")))
            else:
                ranges = [(int(_text(r, "InclusiveLowerBound")), int(_text(r, "InclusiveUpperBound")),
                           int(_text(r, "QualificationValue"))) for r in _kids(m) if _local(r) == "SummedScoreRange"]
                mapping = (kind, (ranges, int(_text(m, "OutOfRangeQualificationValue"))))
            continue
        qid = _text(el, "QuestionIdentifier")
        q = by_id.get(qid)
        if q is None:
            raise QuestionFormError(f"The AnswerKey names the question {qid!r}, which is not in the Test.")
        if q.kind != "selection":
            raise QuestionFormError(f"The AnswerKey scores the question {qid!r}, which is not a SelectionAnswer"
                                    " question (only selections can be scored).")
        known = {s.identifier for s in q.selections}
        options = []
        for opt in (c for c in _kids(el) if _local(c) == "AnswerOption"):
            ids = frozenset(c.text or "" for c in _kids(opt) if _local(c) == "SelectionIdentifier")
            unknown = sorted(ids - known)
            if unknown:
                raise QuestionFormError(f"The AnswerKey names the selection {unknown[0]!r} of question {qid!r},"
                                        " which the Test does not offer.")
            options.append((ids, int(_text(opt, "AnswerScore"))))
        questions[qid] = (options, int(_text(el, "DefaultScore", "0") or 0))
    return AnswerKey(questions, mapping)


def score(key: AnswerKey, answers_xml_text: str) -> int:
    """The qualification value a test's answers earn: summed AnswerScores, then the value mapping."""
    answers = read_answers(answers_xml_text)
    total = 0
    for qid, (options, default) in key.questions.items():
        got = answers.get(qid)
        chosen = frozenset(got) if isinstance(got, list) else frozenset()
        total += next((s for ids, s in options if ids == chosen), default)
    if key.mapping is None:
        return total
    kind, params = key.mapping
    if kind == "PercentageMapping":
        return int(math.floor(100 * total / params))
    if kind == "ScaleMapping":
        return int(math.floor(total * params))
    ranges, out_of_range = params
    return next((value for lo, hi, value in ranges if lo <= total <= hi), out_of_range)

"""QualificationRequirements on the local MTurk: MTurk's validation rules, comparators, locales, ActionsGuarded."""
from __future__ import annotations

import pytest

from mturk_eval.emulators.mturk import qualifications as q
from mturk_eval.emulators.mturk.models import SandboxError


def req(tid="CUSTOM1", comp="GreaterThanOrEqualTo", ints=None, locs=None, guard=None, **kw):
    r = {"QualificationTypeId": tid, "Comparator": comp, **kw}
    if ints is not None:
        r["IntegerValues"] = ints
    if locs is not None:
        r["LocaleValues"] = locs
    if guard:
        r["ActionsGuarded"] = guard
    return r


@pytest.mark.parametrize("comp,ints,value,met", [
    ("LessThan", [5], 4, True), ("LessThan", [5], 5, False),
    ("LessThanOrEqualTo", [5], 5, True), ("GreaterThan", [5], 5, False),
    ("GreaterThanOrEqualTo", [95], 95, True), ("GreaterThanOrEqualTo", [95], 94, False),
    ("EqualTo", [3], 3, True), ("NotEqualTo", [3], 3, False), ("NotEqualTo", [3], 4, True),
    ("In", [1, 2, 3], 2, True), ("In", [1, 2, 3], 4, False), ("NotIn", [1, 2], 3, True),
    ("Exists", None, 0, True), ("DoesNotExist", None, 0, False),
])
def test_integer_comparators(comp, ints, value, met):
    assert q.requirement_met(req(comp=comp, ints=ints), {"IntegerValue": value}) is met


@pytest.mark.parametrize("comp", ["GreaterThan", "NotEqualTo", "NotIn", "Exists", "EqualTo"])
def test_without_the_qualification_only_does_not_exist_is_met(comp):
    assert q.requirement_met(req(comp=comp, ints=None if comp == "Exists" else [1]), None) is False
    assert q.requirement_met(req(comp="DoesNotExist"), None) is True


def test_locales_with_and_without_subdivision():
    us_ca = {"LocaleValue": {"Country": "US", "Subdivision": "CA"}}
    assert q.requirement_met(req(q.LOCALE, "EqualTo", locs=[{"Country": "US"}]), us_ca)
    assert not q.requirement_met(req(q.LOCALE, "EqualTo", locs=[{"Country": "US", "Subdivision": "WA"}]), us_ca)
    assert q.requirement_met(req(q.LOCALE, "In", locs=[{"Country": "GB"}, {"Country": "US", "Subdivision": "CA"}]),
                             us_ca)
    assert q.requirement_met(req(q.LOCALE, "NotIn", locs=[{"Country": "GB"}, {"Country": "JP"}]), us_ca)
    assert not q.requirement_met(req(q.LOCALE, "NotEqualTo", locs=[{"Country": "US"}]), us_ca)


def test_actions_guarded_orders_discover_preview_accept():
    values = {"CUSTOM1": {"IntegerValue": 1}}
    ok = req(ints=[1], guard="DiscoverPreviewAndAccept")
    assert q.requirement_access([ok], values) == q.Access(True, True, True, [])
    a = q.requirement_access([req(ints=[5])], values)                       # default: Accept
    assert (a.discover, a.preview, a.accept) == (True, True, False) and a.unmet == ["CUSTOM1 GreaterThanOrEqualTo 5"]
    a = q.requirement_access([req(ints=[5], guard="PreviewAndAccept")], values)
    assert (a.discover, a.preview, a.accept) == (True, False, False)
    a = q.requirement_access([req(ints=[5], RequiredToPreview=True)], values)  # deprecated form
    assert (a.discover, a.preview, a.accept) == (True, False, False)
    a = q.requirement_access([ok, req(ints=[5], guard="DiscoverPreviewAndAccept")], values)
    assert (a.discover, a.preview, a.accept) == (False, False, False)


@pytest.mark.parametrize("r,needle", [
    (req("NOSUCHTYPE", ints=[1]), "does not exist"),
    (req(comp="Exists", ints=[1]), "must not be present with the Exists"),
    (req(q.LOCALE, "EqualTo", ints=[1]), "cannot be used with the Worker_Locale"),
    (req(q.LOCALE, "GreaterThan", locs=[{"Country": "US"}]), "only be used with the EqualTo"),
    (req(q.LOCALE, "EqualTo", locs=[{"Country": "usa"}]), "ISO 3166"),
    (req(q.PERCENT_APPROVED, "GreaterThan", locs=[{"Country": "US"}]), "only be used with the Worker_Locale"),
    (req(q.PERCENT_APPROVED, "GreaterThan"), "needs IntegerValues"),
    (req(q.PERCENT_APPROVED, "GreaterThan", ints=[1, 2]), "exactly one value"),
    (req(q.NUMBER_APPROVED, "In", ints=list(range(16))), "at most 15"),
    (req(q.NUMBER_APPROVED, "In", ints=[1], locs=[{"Country": "US"}]), "not both"),
])
def test_requirement_validation_names_the_rule(r, needle):
    with pytest.raises(SandboxError) as exc:
        q.validate_requirement(r, 0, lambda tid: tid == "CUSTOM1")
    assert needle in exc.value.message and exc.value.message.startswith("QualificationRequirements[0]")


def test_profile_meeting_the_experiments_requirements():
    prof = q.profile_meeting([req(q.LOCALE, "In", locs=[{"Country": "JP"}]),
                              req(q.NUMBER_APPROVED, "GreaterThanOrEqualTo", ints=[500]),
                              req(q.MASTERS_SANDBOX, "Exists")])
    assert (prof["country"], prof["approved"], prof["masters"]) == ("JP", 501, True)

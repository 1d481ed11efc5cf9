"""Loading ratings: long-format CSV/JSONL, the MTurk batch CSV mapping, and every kind of bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.analysis import make_rows, responses_for
from mturk_eval.analysis.batch_csv import write_batch_csv
from mturk_eval.analysis.ratings import (
    ratings_from_batch,
    ratings_from_records,
    read_ratings,
    read_responses,
    write_ratings_csv,
)
from mturk_eval.analysis.batch_csv import read_batch_csv
from mturk_eval.config import ASPECTS
from mturk_eval.errors import UserError
from mturk_eval.io import write_jsonl

HEADER = "item_id,eval_set,method,model,worker_id,aspect,score"


def _csv(tmp_path, body: str, header: str = HEADER):
    p = tmp_path / "r.csv"
    p.write_text(header + "\n" + body, encoding="utf-8")
    return p


def test_csv_and_jsonl_give_the_same_ratings(tmp_path):
    rows = make_rows(n_prompts=3)
    write_ratings_csv(tmp_path / "r.csv", rows)
    write_jsonl(tmp_path / "r.jsonl", rows)
    a, b = read_ratings(tmp_path / "r.csv"), read_ratings(tmp_path / "r.jsonl")
    assert len(a) == len(b) == len(rows)
    for f in ("item", "worker", "assignment", "aspect", "score", "simulated", "work_time_s"):
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f
    assert a.item_ids == b.item_ids and a.methods == b.methods
    assert a.lines[:2].tolist() == [2, 3] and b.lines[:2].tolist() == [1, 2]


def test_aspect_names_are_case_insensitive_and_optional_columns_default(tmp_path):
    r = read_ratings(_csv(tmp_path, "i1,persona,prompt_tuning,m,AW1,Fluency,4\n"))
    assert r.aspect.tolist() == [0] and r.score.tolist() == [4]
    assert r.attention_passed.tolist() == [-1] and not r.simulated.any() and np.isnan(r.work_time_s[0])


@pytest.mark.parametrize(
    "body, message",
    [
        ("i1,persona,prompt_tuning,m,AW1,fluency,6\n", r"r.csv:2: score: expected an integer from 1 to 5, got '6'"),
        ("i1,persona,prompt_tuning,m,AW1,fluency,4\ni1,persona,prompt_tuning,m,AW1,relevance,0\n",
         r"r.csv:3: score: expected an integer from 1 to 5, got '0'"),
        ("i1,persona,prompt_tuning,m,AW1,fluency,3.5\n", r"r.csv:2: score: expected an integer from 1 to 5, got '3.5'"),
        ("i1,persona,prompt_tuning,m,AW1,fluency,good\n", r"r.csv:2: score: expected an integer from 1 to 5, got 'good'"),
        ("i1,persona,prompt_tuning,m,AW1,fluency,\n", r"r.csv:2: score: expected an integer from 1 to 5, got ''"),
        ("i1,persona,prompt_tuning,m,AW1,fluenc,4\n", r"r.csv:2: aspect: expected one of fluency, engagingness, relevance, persona, got 'fluenc'"),
        ("i1,persona,prompt_tuning,m,,fluency,4\n", r"r.csv:2: worker_id: expected a value, got an empty cell"),
        ("i1,persona,prompt_tuning,m,AW1,fluency,4\ni2,persona,prompt_tuning,m,  ,fluency,4\n",
         r"r.csv:3: worker_id: expected a value, got an empty cell"),
        ("i1,,prompt_tuning,m,AW1,fluency,4\n", r"r.csv:2: eval_set: expected a value, got an empty cell"),
        ("i1,persona,prompt_tuning,m,AW1,fluency,4\ni1,general,prompt_tuning,m,AW2,fluency,4\n",
         r"r.csv:3: eval_set: expected 'persona' for item 'i1' as on line 2, got 'general'"),
        ("i1,persona,prompt_tuning,m,AW1,fluency,4,extra\n", r"r.csv:2: row: expected 7 cells as in the header, got 8"),
    ],
)
def test_bad_long_format_csv(tmp_path, body, message):
    with pytest.raises(UserError, match="/" + message.replace("(", r"\(").replace(")", r"\)")):
        read_ratings(_csv(tmp_path, body))


def test_missing_column_and_bad_flag(tmp_path):
    p = _csv(tmp_path, "i1,persona,prompt_tuning,m,AW1,4\n", header="item_id,eval_set,method,model,worker_id,score")
    with pytest.raises(UserError, match=r"r.csv:1: aspect: expected the columns .* missing aspect"):
        read_ratings(p)
    p = _csv(tmp_path, "i1,persona,prompt_tuning,m,AW1,fluency,4,maybe\n", header=HEADER + ",simulated")
    with pytest.raises(UserError, match=r"r.csv:2: simulated: expected 0, 1 or empty, got 'maybe'"):
        read_ratings(p)
    p = _csv(tmp_path, "i1,persona,prompt_tuning,m,AW1,fluency,4,-3\n", header=HEADER + ",work_time_s")
    with pytest.raises(UserError, match=r"r.csv:2: work_time_s: expected a number >= 0"):
        read_ratings(p)
    with pytest.raises(UserError, match=r"r.csv:1: header: expected the columns"):
        read_ratings(_csv(tmp_path, "", header=""))


def test_bad_jsonl(tmp_path):
    p = tmp_path / "r.jsonl"
    good = {"item_id": "i1", "eval_set": "persona", "method": "m", "model": "x", "worker_id": "AW1",
            "aspect": "fluency", "score": 4}
    p.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "score": True}) + "\n")
    with pytest.raises(UserError, match=r"r.jsonl:3: score: expected an integer from 1 to 5, got True"):
        read_ratings(p)
    p.write_text(json.dumps(good) + "\n" + json.dumps({k: v for k, v in good.items() if k != "aspect"}) + "\n")
    with pytest.raises(UserError, match=r"r.jsonl:2: aspect: expected a value, got no such key"):
        read_ratings(p)
    p.write_text(json.dumps({**good, "worker_id": ["AW1"]}) + "\n")
    with pytest.raises(UserError, match=r"r.jsonl:1: worker_id: expected a string"):
        read_ratings(p)
    p.write_text("{not json\n")
    with pytest.raises(UserError, match=r"r.jsonl:1: not valid JSON"):
        read_ratings(p)
    p.write_text("")
    with pytest.raises(UserError, match=r"expected at least one rating row, got none"):
        read_ratings(p)


def test_read_responses_checks(tmp_path):
    p = tmp_path / "resp.jsonl"
    row = {"item_id": "a", "eval_set": "persona", "method": "m", "model": "x", "response": "hi"}
    write_jsonl(p, [row, row])
    with pytest.raises(UserError, match=r"resp.jsonl:2: item_id: expected a unique id, got 'a' again"):
        read_responses(p)
    write_jsonl(p, [{k: v for k, v in row.items() if k != "model"}])
    with pytest.raises(UserError, match=r"resp.jsonl:1: model: expected a value"):
        read_responses(p)
    write_jsonl(p, [row, {**row, "item_id": "b", "eval_set": "banana"}])
    with pytest.raises(UserError, match=r"resp.jsonl:2: eval_set: expected persona or general, got 'banana'"):
        read_responses(p)


# --------------------------------------------------------------------------------------------------
# MTurk batch results CSV


def _batch_rows(rows, items_per_hit=2, with_fields=False, task_answers=False):
    """Group long-format rows back into assignments of ``items_per_hit`` items (as the website would)."""
    by_assignment: dict[tuple, dict] = {}
    for r in rows:
        by_assignment.setdefault((r["worker_id"], r["item_id"]), {})[r["aspect"]] = r["score"]
    items = sorted({r["item_id"] for r in rows})
    meta = {r["item_id"]: r for r in rows}
    out = []
    workers = sorted({r["worker_id"] for r in rows})
    for w in workers:
        mine = [i for i in items if (w, i) in by_assignment]
        for h in range(0, len(mine), items_per_hit):
            chunk = mine[h:h + items_per_hit]
            row = {"HITId": f"H{h}", "AssignmentId": f"A{w}{h}", "WorkerId": w, "AssignmentStatus": "Approved",
                   "Reward": "$0.10", "WorkTimeInSeconds": "40"}
            answers = {}
            for k, iid in enumerate(chunk):
                row[f"Input.i{k}_item_id"] = iid
                if with_fields:
                    for f in ("eval_set", "method", "model", "persona_id"):
                        row[f"Input.i{k}_{f}"] = meta[iid][f]
                for a in ASPECTS:
                    answers[f"i{k}_{a}"] = str(by_assignment[(w, iid)][a])
            if task_answers:
                row["Answer.taskAnswers"] = json.dumps([{k: {v: True, "1" if v != "1" else "2": False}
                                                         for k, v in answers.items()}])
            else:
                row.update({f"Answer.{k}": v for k, v in answers.items()})
            out.append(row)
    return out


@pytest.mark.parametrize("task_answers", [False, True])
@pytest.mark.parametrize("with_fields", [False, True])
def test_batch_csv_maps_to_the_same_ratings(tmp_path, task_answers, with_fields):
    rows = make_rows(n_prompts=3, seed=5)
    write_jsonl(tmp_path / "resp.jsonl", responses_for(rows))
    write_batch_csv(tmp_path / "b.csv", _batch_rows(rows, with_fields=with_fields, task_answers=task_answers))
    responses = None if with_fields else read_responses(tmp_path / "resp.jsonl")
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"), responses)
    got = sorted((r.item_ids[i], r.worker_ids[w], ASPECTS[a], int(s))
                 for i, w, a, s in zip(r.item, r.worker, r.aspect, r.score))
    want = sorted((x["item_id"], x["worker_id"], x["aspect"], x["score"]) for x in rows)
    assert got == want
    assert np.all(r.reward == 0.10) and np.all(r.work_time_s == 40)


def test_batch_csv_single_item_answers_and_rejections(tmp_path):
    rows = [
        {"HITId": "H1", "AssignmentId": "A1", "WorkerId": "AW1", "AssignmentStatus": "Approved",
         "Input.item_id": "x", "Input.eval_set": "general", "Input.method": "m", "Input.model": "tiny",
         **{f"Answer.{a}": "4" for a in ASPECTS}},
        {"HITId": "H1", "AssignmentId": "A2", "WorkerId": "AW2", "AssignmentStatus": "Rejected",
         "Input.item_id": "x", "Input.eval_set": "general", "Input.method": "m", "Input.model": "tiny",
         **{f"Answer.{a}": "2" for a in ASPECTS}},
        {"HITId": "H1", "AssignmentId": "A3", "WorkerId": "AW3", "AssignmentStatus": "Submitted", "Reject": "spam",
         "Input.item_id": "x", "Input.eval_set": "general", "Input.method": "m", "Input.model": "tiny",
         **{f"Answer.{a}": "1" for a in ASPECTS}, "Answer.mturk_eval_simulated": "1"},
    ]
    write_batch_csv(tmp_path / "b.csv", rows)
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"))
    status = [r.statuses[s] for s in r.status]
    assert status == ["Approved"] * 4 + ["Rejected"] * 8
    assert r.simulated.tolist() == [False] * 8 + [True] * 4


def test_batch_csv_attention_checks(tmp_path):
    check = json.dumps({"aspects": {"fluency": 2}, "kind": "garbled"})
    base = {"HITId": "H1", "AssignmentStatus": "Approved", "Input.i0_item_id": "x", "Input.i0_eval_set": "persona",
            "Input.i0_method": "m", "Input.i0_model": "t", "Input.i1_item_id": "attn.0",
            "Input.i1_eval_set": "persona", "Input.i1_method": "attention_check", "Input.i1_model": "attention_check",
            "Input.i1_attention_check": check}
    rows = [
        {**base, "AssignmentId": "A1", "WorkerId": "AW1", **{f"Answer.i0_{a}": "4" for a in ASPECTS},
         **{f"Answer.i1_{a}": "1" for a in ASPECTS}},
        {**base, "AssignmentId": "A2", "WorkerId": "AW2", **{f"Answer.i0_{a}": "4" for a in ASPECTS},
         **{f"Answer.i1_{a}": "5" for a in ASPECTS}},
    ]
    write_batch_csv(tmp_path / "b.csv", rows)
    r = ratings_from_batch(read_batch_csv(tmp_path / "b.csv"))
    assert r.attention_check.tolist() == ([False] * 4 + [True] * 4) * 2
    assert r.attention_passed.tolist() == [1] * 8 + [0] * 8


@pytest.mark.parametrize(
    "row, message",
    [
        ({"Input.item_id": "nope"}, r"b.csv:2: Input.eval_set: expected the item's eval_set .* \(no --responses file"),
        ({"Input.item_id": "x", "Input.eval_set": "e", "Input.method": "m", "Input.model": "t", "Answer.fluency": "9"},
         r"b.csv:2: score: expected an integer from 1 to 5, got '9'"),
        ({"Input.item_id": "x", "Input.eval_set": "e", "Input.method": "m", "Input.model": "t", "Answer.fluency": ""},
         r"b.csv:2: Answer.fluency: expected a score from 1 to 5, got an empty answer"),
        ({"Input.other": "x"}, r"b.csv:1: Input.item_id: expected Input.item_id or Input.i0_item_id"),
        ({"Input.item_id": "x", "Answer.taskAnswers": "[{oops"}, r"b.csv:2: Answer.taskAnswers: expected a JSON array"),
    ],
)
def test_batch_csv_bad_input(tmp_path, row, message):
    full = {"HITId": "H", "AssignmentId": "A", "WorkerId": "AW1", "AssignmentStatus": "Approved",
            **{f"Answer.{a}": "3" for a in ASPECTS if f"Answer.{a}" not in row}, **row}
    if "Answer.taskAnswers" in row:
        full = {k: v for k, v in full.items() if not k.startswith("Answer.") or k == "Answer.taskAnswers"}
    write_batch_csv(tmp_path / "b.csv", [full])
    with pytest.raises(UserError, match=message):
        ratings_from_batch(read_batch_csv(tmp_path / "b.csv"))


def test_batch_csv_missing_answer_column(tmp_path):
    write_batch_csv(tmp_path / "b.csv", [{"HITId": "H", "AssignmentId": "A", "WorkerId": "AW1",
                                          "AssignmentStatus": "Approved", "Input.item_id": "x",
                                          "Answer.fluency": "3"}])
    with pytest.raises(UserError, match=r"b.csv:1: Answer.engagingness: expected an answer column for every aspect"):
        ratings_from_batch(read_batch_csv(tmp_path / "b.csv"))


def test_records_from_ledger_shape():
    # Ledger.ratings() rows carry None for attention_passed when there was no check.
    rows = [{"item_id": "i", "eval_set": "persona", "method": "m", "model": "t", "persona_id": None,
             "worker_id": "AW1", "assignment_id": "A1", "aspect": a, "score": 3, "attention_check": 0,
             "attention_passed": None, "simulated": 0, "work_time_s": 12.5, "status": "Submitted"} for a in ASPECTS]
    r = ratings_from_records(rows, "ledger")
    assert r.attention_passed.tolist() == [-1] * 4 and r.work_time_s.tolist() == [12.5] * 4


def test_factorize_by_hash_matches_dict_and_detects_collisions():
    from mturk_eval.analysis.ratings import _factorize, _factorize_dict, _factorize_hash

    values = [f"A{i % 70_000}x" for i in range(120_000)]
    lines = np.arange(len(values))
    codes, vocab = _factorize(values, "s", "assignment_id", lines)
    dcodes, dvocab = _factorize_dict(values)
    assert np.array_equal(codes, dcodes) and vocab == dvocab

    class Same:
        def __init__(self, v):
            self.v = v

        def __hash__(self):
            return 7

        def __eq__(self, other):
            return self.v == other.v

    assert _factorize_hash([Same(1), Same(2), Same(1)]) is None


def test_small_pages_switches_numpys_huge_pages_off_and_back():
    from mturk_eval.analysis.ratings import small_pages

    mod = pytest.importorskip("numpy._core.multiarray")
    if not hasattr(mod, "_get_madvise_hugepage"):
        pytest.skip("this numpy has no huge-page switch")
    before = mod._get_madvise_hugepage()
    with small_pages():
        assert mod._get_madvise_hugepage() is False
        with small_pages():
            assert mod._get_madvise_hugepage() is False
        assert mod._get_madvise_hugepage() is False
    assert mod._get_madvise_hugepage() is before


def test_kept_memory_reuses_freed_arrays_and_then_gives_memory_back(monkeypatch):
    """Inside kept_memory an array of 32 MB freed and allocated again reuses the same pages (no page
    faults); afterwards glibc maps and unmaps each one again (thousands of faults); without glibc it does
    nothing."""
    import resource

    from mturk_eval.analysis import ratings as ratings_mod
    from mturk_eval.analysis.ratings import kept_memory, small_pages

    if ratings_mod._glibc() is None:
        pytest.skip("glibc's malloc only")

    def faults_of_a_fresh_array() -> int:
        a = np.ones(4_000_000)
        del a
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        b = np.ones(4_000_000)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del b
        return faults

    with small_pages():                       # ordinary pages, as the report has them
        with kept_memory():
            inside = faults_of_a_fresh_array()
        after = faults_of_a_fresh_array()
    assert inside < 500 < 4000 < after        # 32 MB = 7,813 pages
    monkeypatch.setattr(ratings_mod, "_glibc", lambda: None)
    with kept_memory():
        pass

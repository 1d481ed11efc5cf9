"""Test helpers for the HIT builder and MTurk workflow: configs, responses files, botocore Stubber
platforms, QuestionFormAnswers documents and an in-memory platform for concurrency/crash tests."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator
from xml.sax.saxutils import escape

import boto3
from botocore.stub import ANY, Stubber

from mturk_eval.config import ASPECTS, ExperimentConfig, HITConfig
from mturk_eval.platforms.mturk.answers import QFA_NS
from mturk_eval.platforms.mturk.mturk_platform import MTurkPlatform
from mturk_eval.platforms.crowd_platform import CrowdPlatform, Published, Submission, TaskSpec, TaskState, TaskType

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.timezone.utc)


def make_cfg(tmp_path: Path, language: str = "en", **hit: Any) -> ExperimentConfig:
    hit.setdefault("publish_concurrency", 1)
    hit.setdefault("publish_rate", 1000.0)
    return ExperimentConfig(name="exp1", language=language, runs_dir=str(tmp_path / "runs"), hit=HITConfig(**hit))


def response_row(i: int, **over: Any) -> dict[str, Any]:
    row = {
        "item_id": f"persona.p1.p1-{i:04d}.prompt_tuning.smollm2-135m", "persona_id": "p1",
        "persona": ["i like cats.", "i am a nurse."], "eval_set": "persona", "pair_id": f"p1-{i:04d}",
        "method": "prompt_tuning", "model": "smollm2-135m", "utterance": f"do you have pets? ({i})",
        "response": f"yes, two cats. ({i})", "reference": "i have a dog.",
        "generation": {"strategy": "greedy", "max_new_tokens": 40},
    }
    row.update(over)
    return row


def write_responses(path: Path, n: int = 3, rows: list[dict] | None = None) -> Path:
    rows = rows if rows is not None else [response_row(i) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def mturk_client():
    return boto3.client("mturk", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y",
                        endpoint_url="https://mturk-requester-sandbox.us-east-1.amazonaws.com")


def stubbed(target: str = "sandbox") -> tuple[MTurkPlatform, Stubber]:
    """An MTurk platform whose client is under a botocore Stubber (parameters checked against the
    service model); retries do not sleep."""
    client = mturk_client()
    stub = Stubber(client)
    stub.activate()
    return MTurkPlatform(client, target, sleep=lambda s: None), stub


def hit_id(n: int) -> str:
    return f"3HIT{n:016d}"


def hit_response(n: int, annotation: str = "a", status: str = "Assignable", pending: int = 0,
                 available: int = 5, completed: int = 0) -> dict:
    return {"HIT": hit_shape(n, annotation, status, pending, available, completed)}


def hit_shape(n: int, annotation: str = "a", status: str = "Assignable", pending: int = 0, available: int = 5,
              completed: int = 0) -> dict:
    return {"HITId": hit_id(n), "HITTypeId": "3TYPE0000000000000001", "HITGroupId": "3GROUP000000000000001",
            "CreationTime": NOW, "HITStatus": status, "MaxAssignments": 5, "Reward": "0.05",
            "Expiration": NOW + dt.timedelta(days=3), "RequesterAnnotation": annotation,
            "NumberOfAssignmentsPending": pending, "NumberOfAssignmentsAvailable": available,
            "NumberOfAssignmentsCompleted": completed}


def qfa_xml(fields: dict[str, str]) -> str:
    """A QuestionFormAnswers document as MTurk builds it from a submitted form."""
    answers = "".join(
        f"<Answer><QuestionIdentifier>{escape(k)}</QuestionIdentifier><FreeText>{escape(v)}</FreeText></Answer>"
        for k, v in fields.items())
    return f'<?xml version="1.0" encoding="ASCII"?><QuestionFormAnswers xmlns="{QFA_NS}">{answers}</QuestionFormAnswers>'


def rating_fields(scores: dict[str, int] | list[dict[str, int]], simulated: bool = False) -> dict[str, str]:
    slots = scores if isinstance(scores, list) else [scores]
    fields = {}
    for k, s in enumerate(slots):
        for a in ASPECTS:
            fields[f"i{k}_{a}"] = str(s[a])
    if simulated:
        fields["mturk_eval_simulated"] = "1"
    return fields


def assignment(aid: str, hid: str, worker: str, answer: str, status: str = "Submitted") -> dict:
    return {"AssignmentId": aid, "WorkerId": worker, "HITId": hid, "AssignmentStatus": status,
            "AcceptTime": NOW, "SubmitTime": NOW + dt.timedelta(seconds=42), "Answer": answer}


class FakeMTurk(CrowdPlatform):
    """An in-memory platform with MTurk's exactly-once token rule, for concurrency and crash tests
    (where the order of calls is not fixed, so a Stubber's queue cannot be used)."""

    name = "fake"

    def __init__(self, crash_after: int | None = None, crash_before_return: bool = True):
        self.lock = threading.Lock()
        self.by_token: dict[str, str] = {}
        self.hits: dict[str, TaskSpec] = {}
        self.create_calls = 0
        self.created = 0
        self.active = 0
        self.max_active = 0
        self.crash_after = crash_after
        self.crash_before_return = crash_before_return
        self.ids = itertools.count(1)
        self.delay = 0.0

    def balance(self) -> Decimal | None:
        return Decimal("10000.00")

    def create_task_type(self, settings: TaskType) -> str:
        return "3TYPEFAKE"

    def publish(self, spec: TaskSpec) -> Published:
        import time
        with self.lock:
            self.create_calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            with self.lock:
                if spec.request_token in self.by_token:
                    return Published(self.by_token[spec.request_token], "3TYPEFAKE", "3GROUPFAKE", recovered=True)
                hid = hit_id(next(self.ids))
                self.by_token[spec.request_token] = hid
                self.hits[hid] = spec
                self.created += 1
                if self.crash_after is not None and self.created >= self.crash_after:
                    raise Crash(f"killed after creating {hid}")
            return Published(hid, "3TYPEFAKE", "3GROUPFAKE")
        finally:
            with self.lock:
                self.active -= 1

    def find_by_annotation(self, annotations: set[str]) -> dict[str, Published]:
        return {s.annotation: Published(h, "3TYPEFAKE", "3GROUPFAKE", recovered=True)
                for h, s in self.hits.items() if s.annotation in annotations}

    def task_state(self, task_id: str) -> TaskState:
        return TaskState(task_id, "Assignable", 0, 5, 0, None)

    def list_submissions(self, task_id: str) -> Iterator[Submission]:
        return iter(())

    def approve(self, assignment_id, feedback=None): ...
    def reject(self, assignment_id, feedback): ...
    def bonus(self, worker_id, assignment_id, amount, reason, request_token): return True
    def block(self, worker_id, reason): ...
    def expire(self, task_id): ...
    def delete(self, task_id): ...
    def preview_url(self, group_id): return f"https://workersandbox.mturk.com/mturk/preview?groupId={group_id}"


class Crash(BaseException):
    """Stands for the process dying (SIGKILL) in the middle of a run: nothing catches it."""


__all__ = ["ANY", "Crash", "FakeMTurk", "SCHEMAS", "assignment", "hit_id", "hit_response", "hit_shape", "make_cfg",
           "qfa_xml", "rating_fields", "response_row", "stubbed", "write_responses"]

"""Test helpers for the local MTurk sandbox: a server on a free loopback port, boto3 clients, questions."""
from __future__ import annotations

import contextlib
import html
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from botocore.config import Config

from mturk_eval.emulators.faults import FaultConfig
from mturk_eval.emulators.mturk.responses import HTML_QUESTION_NS
from mturk_eval.emulators.server import RunningServer, start_server

ASPECTS = ("fluency", "engagingness", "relevance", "persona")


@contextlib.contextmanager
def sandbox_server(state: str | Path = ":memory:", faults: FaultConfig | None = None,
                   **kw) -> Iterator[RunningServer]:
    """A sandbox in a thread on 127.0.0.1:<free port>, stopped afterwards."""
    srv = start_server(state, faults=faults, **kw)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sandbox() -> Iterator[RunningServer]:
    with sandbox_server() as srv:
        yield srv


def client(url: str, max_attempts: int = 1, **config):
    """boto3's own mturk client pointed at the sandbox, dummy credentials, no retries by default."""
    return boto3.client(
        "mturk", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts}, **config))


def task_html(n_items: int = 1, text: str = "hello") -> str:
    """A minimal rating form like the HIT builder's: radio groups i{k}_{aspect}, values 1..5, required."""
    groups = []
    for k in range(n_items):
        for a in ASPECTS:
            radios = "".join(
                f'<label><input type="radio" name="i{k}_{a}" value="{v}" required>{v}</label>' for v in range(1, 6))
            groups.append(f"<fieldset><legend>{a}</legend>{radios}</fieldset>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head><body>"
        f"<p class='response'>{html.escape(text)}</p>"
        "<form id='mturk_form' method='post' action='/mturk/externalSubmit'>"
        "<input type='hidden' name='assignmentId' id='assignmentId' value=''>"
        + "".join(groups) +
        "<input type='submit' id='submitButton' value='Submit'></form>"
        "<script>const p=new URLSearchParams(location.search);"
        "document.getElementById('assignmentId').value=p.get('assignmentId');"
        "const f=document.getElementById('mturk_form');"
        "if(p.get('turkSubmitTo')) f.action=p.get('turkSubmitTo')+'/mturk/externalSubmit';"
        "if(p.get('assignmentId')==='ASSIGNMENT_ID_NOT_AVAILABLE')"
        " document.getElementById('submitButton').disabled=true;</script>"
        "</body></html>")


def html_question(n_items: int = 1, text: str = "hello", body: str | None = None) -> str:
    content = body if body is not None else task_html(n_items, text)
    return (f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}"><HTMLContent><![CDATA[{content}]]></HTMLContent>'
            "<FrameHeight>0</FrameHeight></HTMLQuestion>")


def hit_params(**over) -> dict:
    p = dict(Title="Rate a reply", Description="Rate a chatbot's reply", Reward="0.05",
             AssignmentDurationInSeconds=600, LifetimeInSeconds=3600, AutoApprovalDelayInSeconds=3600,
             MaxAssignments=3, Question=html_question())
    p.update(over)
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def sandbox_subprocess(state: Path, *args: str) -> Iterator[str]:
    """``mturk-eval sandbox serve`` in a child process; yields its URL once it answers."""
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mturk_eval", "sandbox", "serve", "--port", str(port), "--state", str(state),
         "--quiet", *args], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise RuntimeError(f"sandbox did not start: {out}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

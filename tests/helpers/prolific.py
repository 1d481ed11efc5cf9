"""Test helpers for Prolific: the emulator on a free loopback port, the rating site beside it, an
experiment config and responses in a temporary folder."""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import requests

from mturk_eval.config import parse_config
from mturk_eval.emulators.prolific.urls import ProlificEmulator
from mturk_eval.emulators.faults import FaultConfig
from mturk_eval.emulators.server import RunningServer, start_server
from mturk_eval.site.serving import settings_from_config, start_site
from tests.helpers.site import make_items

TOKEN = "test-token-" + "a" * 30


def _contract_dir() -> Path:
    """../shared/docs/prolific beside the checkout or one of its parents (a worktree sits deeper)."""
    for d in Path(__file__).resolve().parents[2:]:
        cand = d.parent / "shared" / "docs" / "prolific"
        if cand.is_dir():
            return cand
    return Path(__file__).resolve().parents[3] / "shared" / "docs" / "prolific"


CONTRACT = _contract_dir()
EXAMPLES = CONTRACT / "examples"


@dataclass
class Emulator:
    """The one local emulator server (MTurk and Prolific), seen from the Prolific side."""

    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api(self) -> str:
        return self.url + "/api/v1/"

    @property
    def app(self) -> ProlificEmulator:
        return self.server.app.prolific

    @property
    def backend(self):
        return self.app.backend

    def faults(self, **kw) -> None:
        self.server.set_faults(FaultConfig(**kw))

    def state(self) -> dict:
        return requests.get(self.url + "/_prolific/state", timeout=10).json()


@contextlib.contextmanager
def emulator(state: str | Path = ":memory:", faults: FaultConfig | None = None) -> Iterator[Emulator]:
    srv = start_server(state, faults=faults)
    try:
        yield Emulator(srv)
    finally:
        srv.stop()


CONFIG = """
[experiment]
name = "pro"
runs_dir = "{runs}"
[hit]
assignments_per_hit = {k}
items_per_hit = {per_task}
attention_check_rate = {attention}
[prolific]
reward = "{reward}"
estimated_completion_time = 5
maximum_allowed_time = 20
{extra}
"""


def write_config(tmp: Path, *, k: int = 2, per_task: int = 2, attention: float = 0.0, reward: str = "1.00",
                 extra: str = "") -> Path:
    p = tmp / "exp.toml"
    p.write_text(CONFIG.format(runs=str(tmp / "runs"), k=k, per_task=per_task, attention=attention, reward=reward,
                               extra=extra))
    return p


def load(tmp: Path, **kw):
    p = write_config(tmp, **kw)
    return parse_config(p.read_text(), str(p), base_dir=tmp)


def write_responses(tmp: Path, n: int = 4) -> Path:
    p = tmp / "responses.jsonl"
    p.write_text("".join(json.dumps(it) + "\n" for it in make_items(n)))
    return p


@contextlib.contextmanager
def site_for(cfg) -> Iterator[Any]:
    site = start_site(settings_from_config(cfg))
    try:
        yield site
    finally:
        site.stop()


def example(name: str) -> dict:
    data = json.loads((EXAMPLES / name).read_text())
    data.pop("_source", None)
    return data

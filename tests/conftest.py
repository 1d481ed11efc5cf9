"""Shared test fixtures. Area-specific helpers live in tests/helpers/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _shared_data() -> Path | None:
    env = os.environ.get("MTURK_EVAL_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    cand = REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $MTURK_EVAL_DATA); tests using it are skipped where it is absent."""
    d = _shared_data()
    if d is None:
        pytest.skip("../shared/data is not available")
    return d


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def use_platform(monkeypatch):
    """The one place tests pick the platform every verb gets: ``use_platform(plat)`` makes the registry
    (mturk_eval.platforms.registry.make_platform, which the CLI and the actions both call) hand out
    ``plat``; ``use_platform(factory)`` calls ``factory(name, **settings)`` instead. Returns the list of
    (platform name, settings) asked for, for tests that check what a verb asked for."""
    from mturk_eval.platforms import registry
    from mturk_eval.platforms.crowd_platform import CrowdPlatform

    asked: list[tuple[str | None, dict]] = []

    def use(plat):
        def make(cfg, name=None, *, concurrency=4, **settings):
            asked.append((name or cfg.platform.name, settings))
            return plat if isinstance(plat, CrowdPlatform) else plat(name or cfg.platform.name, **settings)

        monkeypatch.setattr(registry, "make_platform", make)
        return asked

    return use


@pytest.fixture(autouse=True)
def _stop_bundled_sandboxes(request):
    """A test that ran ``publish --sandbox`` leaves no background server behind (each records itself in
    ``runs/<exp>/sandbox/server.json`` under the test's tmp_path)."""
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp is None:
        return
    from mturk_eval.emulators.background import stop_sandbox

    for record in tmp.glob("**/sandbox/server.json"):
        stop_sandbox(record.parent.parent)

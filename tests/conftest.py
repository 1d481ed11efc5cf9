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

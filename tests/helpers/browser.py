"""A real browser for the tests: Debian's chromium through Playwright (``playwright install`` cannot
download here), skipped where either is missing."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox"]   # the tests run as root


def sync_api():
    """``playwright.sync_api``, or the test is skipped (no Playwright, or no Debian chromium)."""
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system-deps)")
    return pw


def launch(p, args: list[str] = ARGS):
    """Debian's chromium from a running ``sync_playwright()`` ``p``."""
    return p.chromium.launch(executable_path=CHROMIUM, args=args)


def radio_names(target) -> list[str]:
    """The radio groups of the rating form on ``target`` (a page or a frame), sorted."""
    return sorted(set(target.eval_on_selector_all("input[type=radio]", "els => els.map(e => e.name)")))

"""What every workflow verb shares: the target's ledger, the experiment lock and the platform.

The lock is an ``flock`` on ``runs/<experiment>/.lock.<target>``: the kernel drops it when the process
dies (even by SIGKILL), so a crashed run never leaves a stale lock, and a second publish/collect/review/
expire on the same experiment and target is refused with the holder's pid and command.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Iterator

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.ledger import Ledger, ledger_path
from mturk_eval.platforms.crowd_platform import CrowdPlatform


@contextlib.contextmanager
def experiment_lock(cfg: ExperimentConfig, target: str, command: str) -> Iterator[None]:
    """Hold the experiment's lock for ``target`` or refuse at once with a clear message."""
    path = cfg.run_dir / f".lock.{target}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(Path(path).read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            who = f"mturk-eval {holder.get('command', '?')} (pid {holder.get('pid', '?')})"
            raise UserError(f"experiment {cfg.name} ({target}): {who} is already running on it;"
                            f" wait for it to finish, then run {command} again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"command": command, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def open_ledger(cfg: ExperimentConfig, target: str, create: bool = True) -> Ledger:
    """Open the target's ledger and check it belongs to this experiment and target (closed if not).

    With ``create=False`` a missing ledger is refused before anything is created; the verbs open it
    before taking the lock, so that a refusal leaves no lock file either."""
    ledger = Ledger.open(ledger_path(cfg, target), create=create)
    try:
        ledger.bind(cfg.name, target)
    except BaseException:
        ledger.close()
        raise
    return ledger


def select_batches(ledger: Ledger, batches: tuple[str, ...] | list[str] | None) -> list[str]:
    """The batch labels a verb acts on: ``batches`` (each checked to be in the ledger), or every batch
    of the ledger when none is given. An unknown label is refused, before anything is written."""
    known = ledger.batches()
    if not batches:
        return known
    from mturk_eval.tasks.builder import check_batch

    for b in batches:
        check_batch(b)
    unknown = [b for b in dict.fromkeys(batches) if b not in known]
    if unknown:
        raise UserError(f"--batch: {unknown[0]!r} is not a batch of {ledger.path}; known batches:"
                        f" {', '.join(known) or 'none (nothing published yet)'}")
    return [b for b in known if b in set(batches)]


def describe_batches(selected: list[str], all_batches: list[str]) -> str:
    """``batches: main, b2 (all)`` or ``batches: b2 (of main, b2)``, for the verbs' output."""
    shown = ", ".join(selected) or "none"
    if selected == all_batches:
        return f"batches: {shown} (all)"
    return f"batches: {shown} (of {', '.join(all_batches)})"


def batch_scope(cfg: ExperimentConfig, target: str, batches: tuple[str, ...] | list[str] | None) -> str:
    """Check ``batches`` against the target's ledger and describe the selection (``batches: ...``)."""
    with open_ledger(cfg, target, create=False) as ledger:
        return describe_batches(select_batches(ledger, batches), ledger.batches())


def make_platform(target: str, endpoint_url: str | None = None, concurrency: int = 4) -> CrowdPlatform:
    """The MTurk platform for ``target`` (the only platform so far)."""
    from mturk_eval.platforms.mturk.client import make_client
    from mturk_eval.platforms.mturk.mturk_platform import MTurkPlatform

    client = make_client(target, endpoint_url, max_pool_connections=max(10, concurrency + 2))
    return MTurkPlatform(client, target, endpoint_url)

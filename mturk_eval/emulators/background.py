"""The bundled sandbox in the background: start, find and stop the local emulator server of an experiment.

``mturk-eval publish --sandbox`` (no ``--endpoint-url``) needs an MTurk-compatible server: Amazon's
sandbox closed with MTurk on 2026-09-30, so the toolkit starts its own (:mod:`mturk_eval.emulators.server`)
as a separate process on 127.0.0.1 and a free port, with its state in
``runs/<experiment>/sandbox/state.sqlite``. Its URL and pid are recorded in
``runs/<experiment>/sandbox/server.json``; every later verb (``status``, ``collect``, ``review``,
``expire``, ``sandbox simulate``, ``report``) finds it there. A record whose process is gone (a reboot, a
kill) is stale: the server is started again on the same state (on a new port; the ledger names the
instance by its state file, so the new URL is the same instance). ``mturk-eval sandbox stop`` ends it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import requests

import click

from mturk_eval.errors import UserError
from mturk_eval.io import atomic_write_text

START_TIMEOUT_S = 30.0


@dataclass
class SandboxRecord:
    url: str
    pid: int
    state: str
    started_at: float
    log: str


def sandbox_dir(run_dir: str | Path) -> Path:
    """``runs/<experiment>/sandbox``: the bundled sandbox's state, record and log."""
    return Path(run_dir) / "sandbox"


def record_path(run_dir: str | Path) -> Path:
    return sandbox_dir(run_dir) / "server.json"


def state_path(run_dir: str | Path) -> Path:
    return sandbox_dir(run_dir) / "state.sqlite"


def read_record(run_dir: str | Path) -> SandboxRecord | None:
    path = record_path(run_dir)
    if not path.exists():
        return None
    try:
        return SandboxRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a sandbox record ({exc}); remove it, and the sandbox starts afresh on"
                        " its state") from None


def _running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _alive(rec: SandboxRecord) -> bool:
    """The recorded process is running, is our server on this state, and answers."""
    if not _running(rec.pid):
        return False
    try:
        cmdline = Path(f"/proc/{rec.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = None
    if cmdline is not None and os.fsencode(rec.state) not in cmdline:
        return False  # the pid was reused by another process
    try:
        return requests.get(rec.url + "/_sandbox/state", timeout=5).ok
    except requests.RequestException:
        return False


def _start(run_dir: Path) -> SandboxRecord:
    d = sandbox_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    state = str(state_path(run_dir).resolve())
    ready = d / "ready.url"
    ready.unlink(missing_ok=True)
    log = d / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mturk_eval", "sandbox", "serve", "--host", "127.0.0.1", "--port", "0",
             "--state", state, "--quiet", "--ready-file", str(ready)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=os.getcwd())
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text(encoding="utf-8").strip():
            break
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"the bundled sandbox server did not start (exit {proc.returncode}: {tail[0]}); see {log}")
        time.sleep(0.05)
    else:
        proc.terminate()
        raise UserError(f"the bundled sandbox server did not answer within {START_TIMEOUT_S:.0f} s; see {log}")
    rec = SandboxRecord(url=ready.read_text(encoding="utf-8").strip(), pid=proc.pid, state=state,
                        started_at=time.time(), log=str(log.resolve()))
    ready.unlink(missing_ok=True)
    atomic_write_text(record_path(run_dir), json.dumps(asdict(rec), indent=1) + "\n")
    return rec


def ensure_sandbox(run_dir: str | Path, echo: Callable[[str], None] = click.echo, *,
                   start: bool = True) -> SandboxRecord:
    """The experiment's running sandbox (``run_dir`` = runs/<experiment>): the recorded one, restarted on
    its state if its process is gone, or (with ``start``) a new one. Without ``start`` and with nothing
    to restart: a UserError saying to publish first."""
    run_dir = Path(run_dir)
    rec = read_record(run_dir)
    if rec is not None and _alive(rec):
        return rec
    if rec is None and not start:
        raise UserError(f"{record_path(run_dir)}: no bundled sandbox for this experiment yet; run"
                        " `mturk-eval publish --sandbox` first")
    if rec is not None and not Path(rec.state).exists():
        raise UserError(f"{rec.state}: the bundled sandbox's state is gone, and its tasks with it; publish under a"
                        " new experiment name")
    new = _start(run_dir)
    if rec is None:
        echo(f"started the bundled MTurk-compatible sandbox on {new.url} (pid {new.pid}; state {new.state};"
             " `mturk-eval sandbox stop` ends it)")
    else:
        echo(f"restarted the bundled sandbox on {new.url} (pid {new.pid}): the recorded process {rec.pid}"
             " was gone; same state")
    return new


def stop_sandbox(run_dir: str | Path, timeout_s: float = 10.0) -> SandboxRecord | None:
    """End the experiment's recorded sandbox (SIGTERM, then SIGKILL after ``timeout_s``) and remove the
    record; its state stays. None when there was no record."""
    rec = read_record(run_dir)
    if rec is None:
        return None
    if _alive(rec):
        os.kill(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.waitpid(rec.pid, os.WNOHANG)  # reap it when it is our own child (tests)
            except ChildProcessError:
                pass
            if not _running(rec.pid):
                break
            time.sleep(0.05)
        else:
            os.kill(rec.pid, signal.SIGKILL)
    record_path(run_dir).unlink(missing_ok=True)
    return rec

"""The bundled sandbox in the background: start, find and stop the local emulator server of an experiment.

``mturk-eval publish --sandbox`` (no ``--endpoint-url``) needs an MTurk-compatible server: Amazon's
sandbox closed with MTurk on 2026-09-30, so the toolkit starts its own (:mod:`mturk_eval.emulators.server`)
as a separate process on 127.0.0.1 and a free port, with its state in
``runs/<experiment>/sandbox/state.sqlite``. Its URL and pid are recorded in
``runs/<experiment>/sandbox/server.json``; every later verb (``status``, ``collect``, ``review``,
``expire``, ``sandbox simulate``, ``report``) finds it there. A record whose process is gone (a reboot, a
kill) is stale: the server is started again on the same state (on a new port; the ledger names the
instance by its state file, so the new URL is the same instance). ``mturk-eval sandbox stop`` ends it.

The site-hosted platforms (invite links, Prolific, MTurk ExternalQuestions) also need the rating site:
with ``--sandbox`` it runs in the background the same way (:func:`ensure_site`: ``mturk-eval serve`` on
127.0.0.1 and a free port, on the experiment's ``runs/<experiment>/site.sqlite``, recorded in
``runs/<experiment>/sandbox/site.json``). Invite links, studies and HITs carry its URL, so a stale
record restarts it on the same port when that port is free (else on a new one, said in one line).
``mturk-eval sandbox stop`` ends both.
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
from urllib.parse import urlsplit

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


def read_record(run_dir: str | Path, path: Path | None = None) -> SandboxRecord | None:
    path = path or record_path(run_dir)
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


def _alive(rec: SandboxRecord, marker: str | None = None, health: str = "/_sandbox/state") -> bool:
    """The recorded process is running, is our server (its command line names ``marker``, default its
    state), and answers on ``health``."""
    if not _running(rec.pid):
        return False
    try:
        cmdline = Path(f"/proc/{rec.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = None
    if cmdline is not None and os.fsencode(marker or rec.state) not in cmdline:
        return False  # the pid was reused by another process
    try:
        return requests.get(rec.url + health, timeout=5).ok
    except requests.RequestException:
        return False


def _launch(argv: list[str], ready: Path, log: Path, what: str) -> tuple[str, int]:
    """Start ``argv`` (a server writing its URL to ``ready`` once it serves) in its own session; wait for
    the URL. Returns (url, pid)."""
    ready.unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=os.getcwd())
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text(encoding="utf-8").strip():
            break
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"{what} did not start (exit {proc.returncode}: {tail[0]}); see {log}")
        time.sleep(0.05)
    else:
        proc.terminate()
        raise UserError(f"{what} did not answer within {START_TIMEOUT_S:.0f} s; see {log}")
    url = ready.read_text(encoding="utf-8").strip()
    ready.unlink(missing_ok=True)
    return url, proc.pid


def _start(run_dir: Path) -> SandboxRecord:
    d = sandbox_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    state = str(state_path(run_dir).resolve())
    ready, log = d / "ready.url", d / "server.log"
    url, pid = _launch([sys.executable, "-m", "mturk_eval", "sandbox", "serve", "--host", "127.0.0.1", "--port", "0",
                        "--state", state, "--quiet", "--ready-file", str(ready)], ready, log,
                       "the bundled sandbox server")
    rec = SandboxRecord(url=url, pid=pid, state=state, started_at=time.time(), log=str(log.resolve()))
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


def _stop(rec: SandboxRecord, timeout_s: float) -> None:
    """SIGTERM the recorded process (SIGKILL after ``timeout_s``)."""
    try:
        os.kill(rec.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(rec.pid, os.WNOHANG)  # reap it when it is our own child (tests)
        except ChildProcessError:
            pass
        if not _running(rec.pid):
            return
        time.sleep(0.05)
    os.kill(rec.pid, signal.SIGKILL)


def stop_sandbox(run_dir: str | Path, timeout_s: float = 10.0) -> SandboxRecord | None:
    """End the experiment's recorded sandbox (SIGTERM, then SIGKILL after ``timeout_s``) and remove the
    record; its state stays. None when there was no record."""
    rec = read_record(run_dir)
    if rec is None:
        return None
    if _alive(rec):
        _stop(rec, timeout_s)
    record_path(run_dir).unlink(missing_ok=True)
    return rec


# ------------------------------------------------------------------------------------------------
# The rating site in the background (site-hosted platforms with --sandbox)

def site_record_path(run_dir: str | Path) -> Path:
    return sandbox_dir(run_dir) / "site.json"


def _site_ready(run_dir: str | Path) -> Path:
    return (sandbox_dir(run_dir) / "site.ready").resolve()


def site_alive(run_dir: str | Path, rec: SandboxRecord) -> bool:
    return _alive(rec, str(_site_ready(run_dir)), "/healthz")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_site(run_dir: Path, config_path: str, port: int) -> SandboxRecord:
    from mturk_eval.site.store import site_store_path

    d = sandbox_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    ready, log = _site_ready(run_dir), d / "site.log"
    url, pid = _launch([sys.executable, "-m", "mturk_eval", "serve", "--config", str(Path(config_path).resolve()),
                        "--host", "127.0.0.1", "--port", str(port), "--ready-file", str(ready)], ready, log,
                       "the rating site")
    rec = SandboxRecord(url=url, pid=pid, state=str(site_store_path(run_dir).resolve()), started_at=time.time(),
                        log=str(log.resolve()))
    atomic_write_text(site_record_path(run_dir), json.dumps(asdict(rec), indent=1) + "\n")
    return rec


def find_site(run_dir: str | Path, config_path: str | None, echo: Callable[[str], None] = click.echo
              ) -> SandboxRecord | None:
    """The experiment's background rating site if ``--sandbox`` started one (restarted when stale), else None."""
    if read_record(run_dir, site_record_path(run_dir)) is None:
        return None
    return ensure_site(run_dir, config_path, echo, start=False)


def ensure_site(run_dir: str | Path, config_path: str | None, echo: Callable[[str], None] = click.echo, *,
                start: bool = True) -> SandboxRecord:
    """The experiment's rating site in the background (``mturk-eval serve --config config_path`` on
    127.0.0.1): the recorded one, restarted on the same store (and port, when free) if its process is
    gone, or (with ``start``) a new one on a free port. Without ``start`` and with no record: a UserError
    saying to publish with --sandbox first."""
    run_dir = Path(run_dir)
    rec = read_record(run_dir, site_record_path(run_dir))
    if rec is not None and site_alive(run_dir, rec):
        return rec
    if rec is None and not start:
        raise UserError(f"{site_record_path(run_dir)}: no rating site running for this experiment; run"
                        " `mturk-eval publish --sandbox` first (or `mturk-eval serve` and give --endpoint)")
    if not config_path:
        raise UserError("the rating site in the background needs the experiment's config file (--config)")
    old_port = urlsplit(rec.url).port if rec is not None else None
    port = old_port if old_port and _port_free(old_port) else 0
    new = _start_site(run_dir, config_path, port)
    from mturk_eval.site.store import SiteStore

    with SiteStore.open(new.state) as store:
        token = store.secret("requester")
    if rec is None:
        echo(f"started the rating site on {new.url} (pid {new.pid}; store {new.state}; `mturk-eval sandbox stop`"
             " ends it)")
    elif port:
        echo(f"restarted the rating site on {new.url} (pid {new.pid}): the recorded process {rec.pid} was gone;"
             " same store, same port")
    else:
        echo(f"restarted the rating site on {new.url} (pid {new.pid}), same store; its old port {old_port} is taken,"
             f" so links made for {rec.url} no longer reach it")
    echo(f"  progress: {new.url}/requester/progress?token={token}")
    return new


def stop_site(run_dir: str | Path, timeout_s: float = 10.0) -> SandboxRecord | None:
    """End the experiment's background rating site and remove its record (the store stays)."""
    path = site_record_path(run_dir)
    rec = read_record(run_dir, path)
    if rec is None:
        return None
    if site_alive(run_dir, rec):
        _stop(rec, timeout_s)
    path.unlink(missing_ok=True)
    return rec

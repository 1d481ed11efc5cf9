"""The production servers the rating site runs under (``mturk-eval serve --production``, the kill tests and
``benchmarks/bench_site.py``): their names, the defaults, and each one's command line. Kept apart from
:mod:`mturk_eval.site.serving` so that the CLI can offer the choices without importing the site."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from mturk_eval.errors import UserError

# The production servers, for real studies and the benchmark alike (docs/benchmarks.md, rating site).
# granian by default: its HTTP handling is in Rust, and a request costs its Python workers about a third of
# what gunicorn's gthread worker costs (bench_site.py --floor), which a burst of arrivals on a small machine
# needs. gunicorn stays for those who run it elsewhere: gthread workers (kept-alive connections wait in the
# worker's poller) and a listening socket per worker (SO_REUSEPORT: on one shared socket the worker that
# woke first took about three quarters of a burst). Both: a worker per core, few threads each (the threads
# of a worker queue for its GIL: granian with 2 spent less CPU per rater than with 4 and answered a burst
# sooner; with 1 a writer holding the store's write lock no longer waits for its worker's other thread to
# hand back the GIL after each SQLite call, and the writers that every rater queues behind held it about a
# third less; gunicorn's threads also read the requests, and 1-4 were alike, 8 and 16 slower).
SERVERS = ("granian", "gunicorn")
SERVER = "granian"
WORKERS = 2
THREADS = {"granian": 1, "gunicorn": 4}   # per worker, for each server
REUSE_PORT = True     # gunicorn's --reuse-port


def server_threads(server: str | None, threads: int | None = None) -> tuple[str, int]:
    """``(server, threads per worker)``: the server named (default :data:`SERVER`), checked, and ``threads``
    or that server's default (:data:`THREADS`)."""
    server = server or SERVER
    if server not in SERVERS:
        raise UserError(f"--server: expected one of {', '.join(SERVERS)}, got {server!r}")
    return server, threads or THREADS[server]


def production_command(settings_path: str | Path, host: str, port: int, server: str = SERVER,
                       workers: int = WORKERS, threads: int | None = None,
                       reuse_port: bool = REUSE_PORT) -> tuple[list[str], dict[str, str]]:
    """The production server's command line and environment serving the site described by
    ``settings_path``; ``server``: one of :data:`SERVERS`; ``threads`` per worker, by default the server's
    (:data:`THREADS`). Neither writes an access log (URLs carry invite
    tokens and participant ids).

    granian: ``workers`` processes with ``threads`` Python threads each running the WSGI app; a worker
    that dies is started again. gunicorn: gthread workers; ``reuse_port``: each worker listens on its own
    socket (SO_REUSEPORT) and the kernel spreads new connections evenly, where on a shared socket
    whichever worker wakes first takes most of a burst. The price: a worker that dies takes the
    connections still queued on its own socket (not yet accepted) with it."""
    server, threads = server_threads(server, threads)
    if server == "granian":
        cmd = [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host, "--port", str(port),
               "--workers", str(workers), "--blocking-threads", str(threads), "--respawn-failed-workers",
               "--respawn-interval", "0.5", "--workers-kill-timeout", "3", "--no-ws", "--no-access-log",
               "--log-level", "warning", "mturk_eval.site.wsgi:app"]
    elif server == "gunicorn":
        cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads),
               "--worker-class", "gthread", "--bind", f"{host}:{port}", "--graceful-timeout", "5",
               *(["--reuse-port"] if reuse_port else []),
               "--error-logfile", "-", "--log-level", "warning", "mturk_eval.site.wsgi:app"]
    env = {**os.environ, "MTURK_EVAL_SITE_SETTINGS": str(Path(settings_path).resolve())}
    # the worktree's own package (PYTHONPATH) must reach the workers too
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH")]))
    return cmd, env

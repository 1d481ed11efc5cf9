"""``serve``: run the rating site for one experiment (its store ``runs/<exp>/site.sqlite``).

Checks everything before anything starts (config, consent file, the port), prints the site's URL and the
requester token (for ``/requester/progress`` and ``/requester/export.csv``), then serves in the
foreground: the production server (``server``: granian, or gunicorn) with ``workers`` processes for a real
study (``production``), Flask's development server otherwise. Binds 127.0.0.1 unless ``host`` says otherwise; for raters on the internet put it
behind an HTTPS reverse proxy and give that address as ``public_url`` (docs/rating-site.md).
"""
from __future__ import annotations

import signal
import subprocess
from typing import Callable

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.io import atomic_write_text
from mturk_eval.site.servers import WORKERS, production_command, server_threads
from mturk_eval.site.serving import (_bind_check, dev_server, free_port, serve_dev, settings_from_config, stop_process,
                                     wait_healthy, write_settings)
from mturk_eval.site.store import SiteStore

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwinds through serve()'s ``finally``, which stops the production server


def serve(cfg: ExperimentConfig, *, host: str = "127.0.0.1", port: int = 8000, public_url: str | None = None,
          production: bool = False, server: str | None = None, workers: int = WORKERS, threads: int | None = None,
          echo: Callable[[str], None] = print, ready_file: str | None = None) -> None:
    """``server``: the production server (:data:`mturk_eval.site.servers.SERVERS`, default granian; only with
    ``production``). ``port`` 0 picks a free one; ``ready_file`` gets the site's URL once it serves (the background site
    of ``--sandbox``, :func:`mturk_eval.emulators.background.ensure_site`, waits for it)."""
    if workers < 1 or (threads is not None and threads < 1):
        raise UserError("--workers and --threads: expected integers >= 1")
    if server is not None and not production:
        raise UserError("--server: a production server runs only with --production")
    server, threads = server_threads(server, threads)     # checked before anything starts or is written
    if not 0 <= port <= 65535:
        raise UserError(f"--port: expected 0-65535 (0: a free one), got {port}")
    settings = settings_from_config(cfg, public_url)      # refuses a missing or empty consent file
    if production:
        port = port or free_port(host)
        _bind_check(host, port)
        dev = None
    else:
        dev = dev_server(settings, host, port)            # binds now: a taken port fails here, in one line
        port = dev.server_port
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    settings.public_url = settings.public_url or url
    with SiteStore.open(settings.store_path) as store:
        token = store.secret("requester")
        batches = store.batches()
    path = write_settings(settings, cfg.run_dir)
    echo(f"rating site for {cfg.name}: {url} (raters reach it at {settings.public_url})")
    if host not in LOOPBACK:
        echo(f"listening on {host}: reachable from the network; serve raters over HTTPS through a reverse proxy")
    if not batches:
        echo("no tasks on the site yet: run `mturk-eval publish --platform links --raters N` (or Prolific)")
    echo(f"requester token: {token}")
    echo(f"progress: {url}/requester/progress?token={token}")
    if settings.consent_html:
        echo("consent: shown before the first task")
    if dev is not None:
        echo("development server (use --production for a real study)")
        if ready_file:
            atomic_write_text(ready_file, url + "\n")
        serve_dev(dev)
        return
    cmd, env = production_command(path, host, port, server, workers, threads)
    # the server runs in its own session (a Ctrl-C reaches it only through us), so a SIGTERM or SIGHUP to
    # this process (kill, systemd, a closed terminal) must stop it too instead of leaving it serving:
    # the handlers are in place before it starts, and unwind through the ``finally`` below.
    previous = {sig: signal.signal(sig, _exit_on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        wait_healthy(url.replace("0.0.0.0", "127.0.0.1"), proc)
        if ready_file:
            atomic_write_text(ready_file, url + "\n")
        echo(f"{server}: {workers} workers x {threads} threads; Ctrl-C stops")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc is not None:
            stop_process(proc, signal.SIGTERM)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if proc.returncode not in (0, -signal.SIGTERM, None):
        raise UserError(f"{server} exited with status {proc.returncode}")

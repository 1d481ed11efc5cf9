"""Running the rating site: settings from the experiment config, a development server in a thread or the
foreground, and a production server (granian, or gunicorn) as a subprocess.

``settings_from_config(cfg)`` reads ``[site]`` (consent text: Markdown or HTML, refused when missing or
empty), ``write_settings`` keeps them as ``runs/<exp>/site.settings.json`` for the production server's
workers, which build the app from that file (:mod:`mturk_eval.site.wsgi`). ``start_site`` (tests,
simulated raters, benchmarks) serves in a daemon thread on a free loopback port; ``start_production``
starts the production server (``production_command``) and waits for ``/healthz``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from mturk_eval.errors import UserError
from mturk_eval.io import atomic_write_text, read_text
from mturk_eval.site.app import SiteSettings, create_app
from mturk_eval.site.servers import REUSE_PORT, SERVER, WORKERS, production_command
from mturk_eval.site.store import SiteStore, site_store_path

SETTINGS_FILE = "site.settings.json"


def consent_html(path: str | Path) -> str:
    """The consent text as HTML: a ``.md``/``.markdown`` file through markdown-it, anything else as HTML.
    A missing, unreadable or empty file is a UserError (the site must not start without it)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"site.consent_file: {p}: {'not a file' if p.exists() else 'file not found'}")
    text = read_text(p)
    if not text.strip():
        raise UserError(f"site.consent_file: {p}: the file is empty; put the approved consent text in it")
    if p.suffix.lower() in (".md", ".markdown"):
        from markdown_it import MarkdownIt

        return MarkdownIt("commonmark", {"html": True}).render(text)
    return text


def settings_from_config(cfg: Any, public_url: str | None = None) -> SiteSettings:
    """SiteSettings for an experiment (``cfg``: ExperimentConfig)."""
    site = getattr(cfg, "site", None)
    consent = consent_html(site.consent_file) if site is not None and site.consent_file else None
    return SiteSettings(
        store_path=str(site_store_path(cfg.run_dir)), language=cfg.language, template_dir=cfg.hit.template_dir,
        consent_html=consent, onboarding=bool(site and site.onboarding),
        public_url=(public_url or (site.public_url if site else None)), experiment=cfg.name)


def write_settings(settings: SiteSettings, run_dir: str | Path) -> Path:
    d = asdict(settings)
    d.pop("clock", None)
    d["mturk_submit_hosts"] = list(settings.mturk_submit_hosts)
    path = Path(run_dir) / SETTINGS_FILE
    atomic_write_text(path, json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    return path


def read_settings(path: str | Path) -> SiteSettings:
    d = json.loads(read_text(path))
    d["mturk_submit_hosts"] = tuple(d.get("mturk_submit_hosts") or ())
    return SiteSettings(**d)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass


@dataclass
class RunningSite:
    """A site serving in a daemon thread (development server)."""

    url: str
    app: Any
    server: Any
    thread: threading.Thread
    store: SiteStore

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.store.close()

    def __enter__(self) -> "RunningSite":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _bind_check(host: str, port: int) -> None:
    if port:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise UserError(f"--port: {host}:{port} cannot be bound ({exc.strerror})") from None


def start_site(settings: SiteSettings, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
               hooks: dict | None = None) -> RunningSite:
    """Serve the site with werkzeug's threaded server in a daemon thread (0 = a free port)."""
    _bind_check(host, port)
    store = SiteStore.open(settings.store_path)
    app = create_app(settings, store, hooks=hooks)
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler if quiet else None)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name="rating-site")
    thread.start()
    url = f"http://{host}:{server.server_port}"
    if not settings.public_url:
        settings.public_url = url
    return RunningSite(url, app, server, thread, store)


def dev_server(settings: SiteSettings, host: str, port: int) -> Any:
    """werkzeug's threaded server for the site, bound (0 = a free port) but not serving yet."""
    import logging

    _bind_check(host, port)
    app = create_app(settings)
    # no request log: URLs carry invite tokens and participant ids
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    server.daemon_threads = True
    return server


def serve_dev(server: Any) -> None:
    """Serve a :func:`dev_server` in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UserError(f"the rating site's server exited at start (status {proc.returncode})")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise UserError(f"the rating site did not answer on {url} within {timeout:.0f} s")


def start_production(settings_path: str | Path, host: str = "127.0.0.1", port: int = 0, server: str = SERVER,
                     workers: int = WORKERS, threads: int | None = None, log: Any = subprocess.DEVNULL,
                     reuse_port: bool = REUSE_PORT) -> tuple[subprocess.Popen, str]:
    """Start the production server as a subprocess (its own process group) and wait until it answers."""
    port = port or free_port(host)
    cmd, env = production_command(settings_path, host, port, server, workers, threads, reuse_port)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        wait_healthy(url, proc)
    except BaseException:
        stop_process(proc)
        raise
    return proc, url


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """End a server started by :func:`start_production` (and its workers)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

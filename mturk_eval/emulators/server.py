"""The local emulator server: one WSGI app and one process for every emulated service.

It serves the MTurk-compatible service (:mod:`mturk_eval.emulators.mturk`: the requester API on
``POST /`` and the worker site under ``/mturk/``) and the Prolific-compatible one
(:mod:`mturk_eval.emulators.prolific`: the researcher API under ``/api/v1/``, the participant side
under ``/_prolific/`` and the completion redirect ``/submissions/complete``; its state sits beside the
MTurk state, ``<state>.prolific.sqlite``). Each service brings its state (``models.py``), its
operations (``responses.py``) and its routes (``urls.py``, a list of werkzeug rules and their handlers,
moto style); this module mounts them, applies the fault configuration, and serves them on werkzeug's
threaded server, in the foreground (``mturk-eval sandbox serve``) or in a thread (:func:`start_server`).

Emulator-only extensions, all under ``/_sandbox/`` (JSON): ``GET state``, ``POST faults`` (replace the
fault configuration), ``POST clock`` (``{"advance_s": N}`` moves the emulated clock forward).

Written on werkzeug rather than an existing emulator because none covers MTurk (moto has no mturk).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from mturk_eval.emulators.faults import FaultConfig, FaultInjector
from mturk_eval.emulators.mturk import urls as mturk_urls
from mturk_eval.emulators.mturk.models import Store
from mturk_eval.emulators.mturk.responses import error_response, json_response
from mturk_eval.emulators.prolific.models import ProlificBackend
from mturk_eval.emulators.prolific.urls import ProlificEmulator, is_prolific_path

DEFAULT_MAX_BODY = 512 * 1024



def admin_rules() -> list[Rule]:
    return [
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/faults", endpoint="admin_faults", methods=["POST"]),
        Rule("/_sandbox/clock", endpoint="admin_clock", methods=["POST"]),
    ]


class SandboxApp:
    """The WSGI application: every emulated service's routes, plus the ``/_sandbox/`` admin endpoints."""

    def __init__(self, store: Store, faults: FaultInjector | None = None, max_body: int = DEFAULT_MAX_BODY,
                 prolific: ProlificBackend | None = None):
        self.store = store
        self.faults = faults or FaultInjector()
        self.max_body = max_body
        # Prolific's paths go to its emulator, which shares the fault configuration.
        self.prolific = ProlificEmulator(prolific or ProlificBackend(), self.faults, max_body)
        self.calls: dict[str, int] = {}
        self.calls_lock = threading.Lock()
        self.handlers: dict[str, Callable[..., Response]] = {
            **mturk_urls.HANDLERS,
            "admin_state": on_admin_state, "admin_faults": on_admin_faults, "admin_clock": on_admin_clock,
        }
        self.urls = Map([*mturk_urls.url_rules(), *admin_rules()])

    def __call__(self, environ, start_response):
        if is_prolific_path(environ.get("PATH_INFO", "")):
            return self.prolific(environ, start_response)
        request = Request(environ)
        request.max_content_length = self.max_body
        request.max_form_memory_size = self.max_body
        try:
            endpoint, args = self.urls.bind_to_environ(environ).match()
            response = self.handlers[endpoint](self, request, **args)
        except HTTPException as exc:
            if request.method == "POST" and request.path == "/":
                response = error_response(exc.code or 400, type(exc).__name__, exc.description or "")
            else:
                response = exc.get_response(environ)
        return response(environ, start_response)


# --------------------------------------------------------------------------------------------------
# Admin endpoints

def on_admin_state(app: SandboxApp, request: Request) -> Response:
    with app.store.lock:
        counts = app.store.counts()
    return json_response(200, {"counts": counts, "calls": dict(app.calls), "faults": app.faults.config.to_dict(),
                       "fault_counts": dict(app.faults.counts), "now": app.store.now()})


def on_admin_faults(app: SandboxApp, request: Request) -> Response:
    try:
        cfg = FaultConfig.from_dict(json.loads(request.get_data() or b"{}"))
    except (ValueError, TypeError) as exc:
        return error_response(400, "SerializationException", str(exc))
    except Exception as exc:  # UserError from the config checks
        return error_response(400, "ValidationException", str(exc))
    app.faults.configure(cfg)
    return json_response(200, {"faults": cfg.to_dict()})


def on_admin_clock(app: SandboxApp, request: Request) -> Response:
    try:
        seconds = float(json.loads(request.get_data() or b"{}")["advance_s"])
    except (ValueError, KeyError, TypeError) as exc:
        return error_response(400, "SerializationException", f"expected {{\"advance_s\": seconds}}: {exc}")
    app.prolific.backend.advance_clock(seconds)  # one emulated clock for every service
    return json_response(200, {"now": app.store.advance_clock(seconds)})


# --------------------------------------------------------------------------------------------------
# Serving

class _Handler(WSGIRequestHandler):
    quiet = False

    def connection_dropped(self, error, environ=None) -> None:
        # A DropConnection from the app: close the socket without a response, as a lost connection.
        self.close_connection = True
        try:
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_request(self, code="-", size="-") -> None:
        if not self.quiet:
            super().log_request(code, size)


class _QuietHandler(_Handler):
    quiet = True


@dataclass
class RunningServer:
    """A sandbox serving in a background thread (tests, benchmarks, the end-to-end run)."""

    url: str
    app: SandboxApp
    server: Any
    thread: threading.Thread

    @property
    def store(self) -> Store:
        return self.app.store

    def set_faults(self, config: FaultConfig) -> None:
        self.app.faults.configure(config)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.app.store.close()
        self.app.prolific.backend.close()


def _make_server(host: str, port: int, app: SandboxApp, quiet: bool):
    """werkzeug's threaded server; a busy port is an OSError here (werkzeug itself would sys.exit)."""
    import socket

    if port:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # raises OSError when the port is taken
    try:
        server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler if quiet else _Handler)
    except SystemExit:
        raise OSError(f"{host}:{port} is in use or cannot be bound") from None
    server.daemon_threads = True
    return server


def prolific_state(state: str | Path) -> str:
    """Where the Prolific emulator keeps its state: beside the MTurk state (``:memory:`` stays so)."""
    return ":memory:" if str(state) == ":memory:" else str(Path(state).with_suffix("")) + ".prolific.sqlite"


def make_app(state: str | Path = ":memory:", faults: FaultConfig | None = None,
             max_body: int = DEFAULT_MAX_BODY) -> SandboxApp:
    return SandboxApp(Store(state), FaultInjector(faults), max_body=max_body,
                      prolific=ProlificBackend(prolific_state(state)))


def start_server(state: str | Path = ":memory:", host: str = "127.0.0.1", port: int = 0,
                 faults: FaultConfig | None = None, max_body: int = DEFAULT_MAX_BODY,
                 quiet: bool = True) -> RunningServer:
    """Start a sandbox on ``host:port`` (0 = a free port) in a daemon thread; ``.stop()`` ends it."""
    app = make_app(state, faults, max_body)
    server = _make_server(host, port, app, quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="mturk-sandbox",
                              daemon=True)
    thread.start()
    return RunningServer(f"http://{host}:{server.server_port}", app, server, thread)


def serve(state: str | Path, host: str, port: int, faults: FaultConfig | None, max_body: int = DEFAULT_MAX_BODY,
          quiet: bool = False, ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until interrupted (``mturk-eval sandbox serve``)."""
    app = make_app(state, faults, max_body)
    try:
        server = _make_server(host, port, app, quiet)
    except BaseException:
        app.store.close()
        app.prolific.backend.close()
        raise
    if ready:
        ready(f"http://{host}:{server.server_port}")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        app.store.close()
        app.prolific.backend.close()

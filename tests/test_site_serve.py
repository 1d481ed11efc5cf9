"""``mturk-eval serve``: refuses a missing or empty consent file (one line, exit 2, nothing started), and
under each production server (granian, gunicorn: a subprocess) serves a task that a rater submits over
HTTP, and stops with ``serve``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from helpers.site import load_batch, rate
from mturk_eval.cli import main
from mturk_eval.site.servers import SERVERS
from mturk_eval.site.serving import free_port, start_production, stop_process, write_settings
from mturk_eval.site.app import SiteSettings
from mturk_eval.site.store import SiteStore


def _config(tmp_path: Path, site: str = "") -> Path:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f'[experiment]\nname = "sitetest"\nruns_dir = "{tmp_path / "runs"}"\n{site}')
    return cfg


@pytest.mark.parametrize("consent,expect", [("missing.md", "file not found"), ("empty.md", "the file is empty")])
def test_serve_refuses_a_missing_or_empty_consent_file(tmp_path, consent, expect):
    (tmp_path / "empty.md").write_text("  \n")
    cfg = _config(tmp_path, f'[site]\nconsent_file = "{consent}"\n')
    r = CliRunner().invoke(main, ["serve", "--config", str(cfg), "--port", str(free_port())])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "site.consent_file" in lines[0] and expect in lines[0]
    assert not (tmp_path / "runs" / "sitetest" / "site.settings.json").exists()


@pytest.mark.parametrize("server", SERVERS)
def test_serve_production_rates_over_http(tmp_path, server):
    (tmp_path / "consent.md").write_text("# Consent\n\nWe keep your **ratings**.\n")
    cfg = _config(tmp_path, '[site]\nconsent_file = "consent.md"\n')
    with SiteStore.open(tmp_path / "runs" / "sitetest" / "site.sqlite") as st:
        load_batch(st, n_items=2, items_per_task=2, k=1)
        token = st.create_invites(1)[0].token
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "mturk_eval", "serve", "--config", str(cfg), "--port", str(port),
                             "--production", "--server", server, "--workers", "1", "--threads", "2"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            out.append(line)
            if f"{server}:" in line or not line:
                break
        text = "".join(out)
        assert f"{server}: 1 workers x 2 threads" in text, text
        req_token = next(l.split(": ", 1)[1].strip() for l in out if l.startswith("requester token:"))
        base = f"http://127.0.0.1:{port}"
        s = requests.Session()
        page = s.get(f"{base}/i/{token}")
        assert "ratings" in page.text and "<strong>" in page.text           # the Markdown consent text
        from lxml import html
        form = html.fromstring(page.text).get_element_by_id("consent-form")
        fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
        task = s.post(f"{base}/consent", data={**fields, "decision": "agree"})
        sub = rate(s, base, task.url)
        assert sub.status_code == 303
        prog = requests.get(f"{base}/requester/progress?format=json&token={req_token}").json()
        assert prog["batches"][0]["items_complete"] == 2
        # SIGTERM to `mturk-eval serve` alone (as kill or systemd send it) stops the server too.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/healthz", timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


def test_granian_starts_a_worker_again_when_one_dies(tmp_path):
    """serve's default server: a worker killed (out of memory, say) is replaced and the site answers on."""
    store_path = tmp_path / "site.sqlite"
    SiteStore.open(store_path).close()
    proc, url = start_production(write_settings(SiteSettings(store_path=str(store_path)), tmp_path), server="granian")
    try:
        def workers() -> set[int]:
            return {int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(p) == proc.pid}

        deadline = time.monotonic() + 20      # /healthz answered once one worker was up
        while time.monotonic() < deadline and len(workers()) < 2:
            time.sleep(0.05)
        first = workers()
        assert len(first) == 2
        os.kill(min(first), signal.SIGKILL)
        deadline, now = time.monotonic() + 20, workers()
        while time.monotonic() < deadline and (len(now) < 2 or min(first) in now):
            time.sleep(0.1)
            now = workers()
        assert len(now) == 2 and min(first) not in now, (first, now)
        assert all(requests.get(f"{url}/healthz", timeout=5).text == "ok\n" for _ in range(6))
    finally:
        stop_process(proc)
    assert proc.returncode is not None


def _parent(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def test_a_bad_public_url_is_a_one_line_error(tmp_path):
    cfg = _config(tmp_path, '[site]\npublic_url = "ftp://x"\n')
    r = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert r.exit_code == 2 and "site.public_url: expected an http(s):// URL" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_taken_port_is_a_one_line_error(tmp_path):
    import socket
    cfg = _config(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = CliRunner().invoke(main, ["serve", "--config", str(cfg), "--port", str(s.getsockname()[1])])
    assert r.exit_code == 2 and "--port:" in r.output and "cannot be bound" in r.output


def test_a_server_without_production_is_a_one_line_error(tmp_path):
    cfg = _config(tmp_path)
    r = CliRunner().invoke(main, ["serve", "--config", str(cfg), "--server", "gunicorn"])
    assert r.exit_code == 2 and r.output.strip() == "Error: --server: a production server runs only with --production"
    r = CliRunner().invoke(main, ["serve", "--config", str(cfg), "--production", "--server", "uvicorn"])
    assert r.exit_code == 2 and "'uvicorn' is not one of 'granian', 'gunicorn'" in r.output
    assert not (tmp_path / "runs" / "sitetest" / "site.settings.json").exists()

"""Simulated raters stay inside their experiment and inside 127.0.0.0/8: other tools' HITs are left alone,
an ExternalQuestion pointing outside is refused before anything is accepted (no request leaves the
machine), and a HIT whose work fails is given back (no accepted assignment is left behind), with a
one-line error instead of a traceback."""
from __future__ import annotations

import socket

import pytest

from helpers.sandbox import client, hit_params, sandbox  # noqa: F401
from mturk_eval.emulators.mturk.models import ACCEPTED
from mturk_eval.emulators.mturk.responses import EXTERNAL_QUESTION_NS
from mturk_eval.emulators.simulate import AddressRefused, loopback_url, simulate
from mturk_eval.errors import UserError


def external(url: str) -> str:
    return (f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}"><ExternalURL>{url}</ExternalURL>'
            "<FrameHeight>0</FrameHeight></ExternalQuestion>")


@pytest.fixture
def connections(monkeypatch):
    """Every address a socket in this process connects to."""
    seen: list = []
    real = socket.socket.connect

    def connect(self, address):
        seen.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.mark.parametrize("url,ok", [
    ("http://127.0.0.1:5/x", "http://127.0.0.1:5/x"), ("http://127.9.9.9/", "http://127.9.9.9/"),
    ("http://localhost:8/a", "http://127.0.0.1:8/a"), ("http://10.0.0.1/", None), ("https://example.com/t", None),
    ("http://[::1]:5/", None), ("ftp://127.0.0.1/", None), ("http://0.0.0.0:80/", None),
    ("http://127.0.0.1.example.com/", None), ("http://2130706433/", None),
])
def test_only_loopback_addresses_are_visited(url, ok):
    if ok is None:
        with pytest.raises(AddressRefused, match="only visit addresses in 127.0.0.0/8"):
            loopback_url(url)
    else:
        assert loopback_url(url) == ok


def test_simulate_rates_only_its_tasks_and_refuses_outside_addresses(sandbox, connections):  # noqa: F811
    c = client(sandbox.url)
    ours = c.create_hit(**hit_params(MaxAssignments=2))["HIT"]["HITId"]
    theirs = c.create_hit(**hit_params(MaxAssignments=2))["HIT"]["HITId"]
    outside = c.create_hit(**hit_params(MaxAssignments=2, Question=external("https://example.com/rate")))["HIT"]["HITId"]
    res = simulate(sandbox.url, workers=3, seed=1, progress=False, task_ids={ours, outside})
    assert res.submitted == 2 and res.not_ours == 1
    assert len(res.refused) == 1 and res.refused[0].startswith(f"HIT {outside}: https://example.com/rate?")
    assert "127.0.0.0/8" in res.refused[0]
    assert c.get_hit(HITId=theirs)["HIT"]["NumberOfAssignmentsAvailable"] == 2
    assert c.get_hit(HITId=outside)["HIT"]["NumberOfAssignmentsAvailable"] == 2  # never accepted
    with sandbox.store.lock:
        assert sandbox.store.db.execute("SELECT COUNT(*) FROM assignments WHERE status=?", (ACCEPTED,)).fetchone()[0] == 0
    assert connections and all(isinstance(a, tuple) and a[0].startswith("127.") for a in connections), connections


def test_a_network_failure_is_one_line_and_leaves_nothing_accepted(sandbox):  # noqa: F811
    c = client(sandbox.url)
    # loopback, so it is tried: an https page on a port where nothing speaks TLS
    broken = c.create_hit(**hit_params(MaxAssignments=2, Question=external("https://127.0.0.1:9/rate")))["HIT"]["HITId"]
    with pytest.raises(UserError) as err:
        simulate(sandbox.url, workers=1, seed=1, progress=False, task_ids={broken})
    assert err.value.message.startswith(f"{sandbox.url}: cannot reach the sandbox's worker site (")
    assert "\n" not in err.value.message
    with sandbox.store.lock:
        assert sandbox.store.db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == 0
    assert c.get_hit(HITId=broken)["HIT"]["NumberOfAssignmentsAvailable"] == 2


def test_a_form_posting_outside_is_refused_and_its_hit_given_back(sandbox, connections):  # noqa: F811
    from helpers.sandbox import html_question, task_html

    c = client(sandbox.url)
    page = task_html().replace("action='/mturk/externalSubmit'", "action='https://example.com/mturk/externalSubmit'")
    page = page.replace("if(p.get('turkSubmitTo')) f.action=p.get('turkSubmitTo')+'/mturk/externalSubmit';", "")
    bad = c.create_hit(**hit_params(MaxAssignments=1, Question=html_question(body=page)))["HIT"]["HITId"]
    good = c.create_hit(**hit_params(MaxAssignments=1))["HIT"]["HITId"]
    res = simulate(sandbox.url, workers=1, seed=1, progress=False, task_ids={bad, good})
    assert res.submitted == 1 and len(res.refused) == 1 and res.refused[0].startswith(f"HIT {bad}: https://example.com")
    with sandbox.store.lock:
        rows = dict(sandbox.store.db.execute("SELECT hit_id, status FROM assignments").fetchall())
    assert rows == {bad: "Abandoned", good: "Submitted"}  # given back at once, never left accepted
    assert c.get_hit(HITId=bad)["HIT"]["NumberOfAssignmentsAvailable"] == 1
    assert all(a[0].startswith("127.") for a in connections), connections


def test_the_worker_site_takes_a_returned_hit_back(sandbox):  # noqa: F811
    import requests

    c = client(sandbox.url)
    hid = c.create_hit(**hit_params(MaxAssignments=1))["HIT"]["HITId"]
    s = requests.Session()
    s.cookies.set("workerId", "AWORKER1")
    r = s.post(sandbox.url + "/mturk/accept", data={"hitId": hid}, allow_redirects=False, timeout=10)
    aid = r.headers["Location"].split("assignmentId=")[1]
    assert c.get_hit(HITId=hid)["HIT"]["NumberOfAssignmentsAvailable"] == 0
    other = requests.Session()
    other.cookies.set("workerId", "AWORKER2")
    assert other.post(sandbox.url + "/mturk/return", data={"assignmentId": aid}, timeout=10).status_code == 409
    assert s.post(sandbox.url + "/mturk/return", data={"assignmentId": aid}, allow_redirects=False,
                  timeout=10).status_code == 303
    assert c.get_hit(HITId=hid)["HIT"]["NumberOfAssignmentsAvailable"] == 1
    assert s.post(sandbox.url + "/mturk/return", data={"assignmentId": aid}, timeout=10).status_code == 409

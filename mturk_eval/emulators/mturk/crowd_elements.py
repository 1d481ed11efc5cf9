"""Local stand-ins for the scripts MTurk HTMLQuestions load from Amazon, and the rewriting that uses them.

HTMLQuestion templates written for MTurk load Amazon's HIT helper script
(``https://s3.amazonaws.com/mturk-public/externalHIT_v1.js``) or the crowd HTML elements
(``https://assets.crowd.aws/crowd-html-elements.js``) and post to MTurk's ``externalSubmit``. Offline,
none of those addresses answer, so the worker site rewrites these known URLs in the HTML it serves to
the local stand-ins in ``assets/`` (written for mturk-eval: same functions and answer format, see each
file's header) and to the local ``/mturk/externalSubmit``. Nothing else in the page is changed.
"""
from __future__ import annotations

import re
from pathlib import Path

from werkzeug.wrappers import Response

ASSET_DIR = Path(__file__).parent / "assets"
ASSET_PATH = "/mturk/assets/"
ASSETS = {"externalHIT_v1.js": "application/javascript", "crowd-html-elements.js": "application/javascript"}

# (pattern, local replacement); "//host" and http/https forms alike.
_REWRITES = [
    (re.compile(r"(?:https?:)?//s3\.amazonaws\.com/mturk-public/externalHIT_v1\.js"),
     ASSET_PATH + "externalHIT_v1.js"),
    (re.compile(r"(?:https?:)?//assets\.crowd\.aws/crowd-html-elements(?:-without-ce-polyfill)?\.js"),
     ASSET_PATH + "crowd-html-elements.js"),
    (re.compile(r"(?:https?:)?//(?:www|workersandbox)\.mturk\.com/mturk/externalSubmit"), "/mturk/externalSubmit"),
]


def rewrite_known_urls(html: str) -> str:
    """The HIT's HTML with Amazon's helper scripts and submit URLs pointing at the local ones."""
    for pattern, local in _REWRITES:
        html = pattern.sub(local, html)
    return html


def asset_response(name: str) -> Response:
    """One stand-in script (404 for anything else: no path from the URL reaches the file system)."""
    if name not in ASSETS:
        return Response("not found", status=404, content_type="text/plain; charset=utf-8")
    resp = Response((ASSET_DIR / name).read_bytes(), content_type=f"{ASSETS[name]}; charset=utf-8")
    resp.headers["Cache-Control"] = "max-age=3600"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp

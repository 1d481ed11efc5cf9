"""Routing of the local MTurk service: which path and method reach which operation or worker page (moto's
``urls.py``). :mod:`mturk_eval.emulators.server` mounts these rules beside the other emulated services'."""
from __future__ import annotations

from werkzeug.routing import Rule

from mturk_eval.emulators.mturk import responses, worker_site

# endpoint name -> handler(app, request, **url_args) -> Response
HANDLERS = {
    "mturk.api": responses.api,
    "mturk.index": worker_site.index,
    "mturk.preview": worker_site.preview,
    "mturk.accept": worker_site.accept,
    "mturk.work": worker_site.work,
    "mturk.task": worker_site.task,
    "mturk.submit": worker_site.submit,
}


def url_rules() -> list[Rule]:
    """Fresh rules (a werkzeug Rule belongs to one Map, and every app builds its own)."""
    return [
        Rule("/", endpoint="mturk.index", methods=["GET"]),
        Rule("/", endpoint="mturk.api", methods=["POST"]),
        Rule("/mturk/preview", endpoint="mturk.preview", methods=["GET"]),
        Rule("/mturk/accept", endpoint="mturk.accept", methods=["POST"]),
        Rule("/mturk/work", endpoint="mturk.work", methods=["GET"]),
        Rule("/mturk/task", endpoint="mturk.task", methods=["GET"]),
        Rule("/mturk/externalSubmit", endpoint="mturk.submit", methods=["POST"]),
    ]

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
    "mturk.return": worker_site.give_back,
    "mturk.task": worker_site.task,
    "mturk.submit": worker_site.submit,
    "mturk.assets": worker_site.assets,
    "mturk.messages": worker_site.messages,
    "mturk.qualifications": worker_site.qualifications,
    "mturk.request_qualification": worker_site.request_qualification,
    "mturk.qualification_test": worker_site.qualification_test,
    "mturk.admin_workers": worker_site.admin_workers,
    "mturk.admin_batch_results": worker_site.admin_batch_results,
}


def url_rules() -> list[Rule]:
    """Fresh rules (a werkzeug Rule belongs to one Map, and every app builds its own)."""
    return [
        Rule("/", endpoint="mturk.index", methods=["GET"]),
        Rule("/", endpoint="mturk.api", methods=["POST"]),
        Rule("/mturk/preview", endpoint="mturk.preview", methods=["GET"]),
        Rule("/mturk/accept", endpoint="mturk.accept", methods=["POST"]),
        Rule("/mturk/work", endpoint="mturk.work", methods=["GET"]),
        Rule("/mturk/return", endpoint="mturk.return", methods=["POST"]),
        Rule("/mturk/task", endpoint="mturk.task", methods=["GET"]),
        Rule("/mturk/externalSubmit", endpoint="mturk.submit", methods=["POST"]),
        Rule("/mturk/assets/<name>", endpoint="mturk.assets", methods=["GET"]),
        Rule("/mturk/messages", endpoint="mturk.messages", methods=["GET"]),
        Rule("/mturk/qualifications", endpoint="mturk.qualifications", methods=["GET"]),
        Rule("/mturk/qualifications/request", endpoint="mturk.request_qualification", methods=["POST"]),
        Rule("/mturk/qualification-test", endpoint="mturk.qualification_test", methods=["GET", "POST"]),
        Rule("/_sandbox/workers", endpoint="mturk.admin_workers", methods=["GET", "POST"]),
        Rule("/_sandbox/batch-results.csv", endpoint="mturk.admin_batch_results", methods=["GET"]),
    ]

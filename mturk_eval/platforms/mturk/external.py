"""MTurk ExternalQuestion documents pointing at the rating site (``/mturk/<task id>``).

MTurk (or the bundled sandbox) shows the URL in its frame with ``assignmentId``, ``hitId``, ``workerId``
and ``turkSubmitTo`` added; the site reserves the task for that assignment and, after the submit, the
rater's browser posts the answers to ``turkSubmitTo/mturk/externalSubmit`` (mturk_eval.site.handback).
"""
from __future__ import annotations

from xml.sax.saxutils import escape

EXTERNAL_QUESTION_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"


def external_question(site_url: str, task_id: str, frame_height: int = 0) -> str:
    """The ExternalQuestion XML for one site task; ``site_url`` is the site's public URL (https for MTurk)."""
    url = f"{site_url.rstrip('/')}/mturk/{task_id}"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}">'
            f"<ExternalURL>{escape(url)}</ExternalURL><FrameHeight>{int(frame_height)}</FrameHeight>"
            "</ExternalQuestion>")

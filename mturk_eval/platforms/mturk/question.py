"""MTurk's HTMLQuestion: the rating page (mturk_eval.tasks.builder.render_html) wrapped as MTurk wants it,
HTMLContent in CDATA then FrameHeight, refused over MTurk's 65,535-byte limit with what to change."""
from __future__ import annotations

import re
from typing import Any

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.tasks.builder import render_html

HTMLQUESTION_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
MAX_QUESTION_BYTES = 65535


def question_xml(html: str, frame_height: int = 0) -> str:
    """Wrap an HTML document in an HTMLQuestion (HTMLContent in CDATA, then FrameHeight)."""
    # "]]>" cannot appear inside CDATA; split it across two sections (escaped text never contains it).
    # Characters XML 1.0 cannot carry (control bytes a small model may generate) become U+FFFD.
    cdata = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]", "\ufffd", html)
    cdata = cdata.replace("]]>", "]]]]><![CDATA[>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<HTMLQuestion xmlns="{HTMLQUESTION_NS}">'
        f"<HTMLContent><![CDATA[{cdata}]]></HTMLContent>"
        f"<FrameHeight>{int(frame_height)}</FrameHeight></HTMLQuestion>"
    )


def html_question(items: list[dict[str, Any]], cfg: ExperimentConfig, submit_url: str) -> str:
    """The HTMLQuestion for one HIT; refuses one over MTurk's 65,535-byte limit with what to change."""
    xml = question_xml(render_html(items, cfg.language, submit_url, cfg.hit.template_dir))
    size = len(xml.encode("utf-8"))
    if size > MAX_QUESTION_BYTES:
        ids = ", ".join(it["item_id"] for it in items[:3])
        raise UserError(
            f"hit.items_per_hit: the question for items {ids}{'...' if len(items) > 3 else ''} is {size} bytes,"
            f" over MTurk's {MAX_QUESTION_BYTES}-byte limit; lower hit.items_per_hit"
            f" (now {cfg.hit.items_per_hit}) or shorten the texts"
        )
    return xml

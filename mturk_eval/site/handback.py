"""What the rating site does when a rater finishes, declines consent or wants another task, per platform.

The site holds no platform credentials: a platform learns of a finished task from the rater's browser.
Each platform has a :class:`HandBack`:

- ``links``: no hand-back; after a task the rater gets a link to the next one (their invite link);
- ``mturk`` (ExternalQuestion): the rater's browser posts ``assignmentId`` and the answers to
  ``turkSubmitTo/mturk/externalSubmit``, as MTurk requires;
- ``prolific``: a redirect to ``https://app.prolific.com/submissions/complete?cc=CODE`` with the batch's
  ``completion_code`` (its settings in the store, ``SiteStore.update_settings``), its
  ``failed_attention_code`` (the study's FAILED_ATTENTION_CHECK code) when the stored answers fail one of
  the task's attention checks, and ``no_consent_code`` when a participant declines consent. The Prolific platform may replace this
  hook (``register("prolific", ...)`` or ``create_app(..., hooks=...)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from mturk_eval.site.store import Assignment, SiteStore
from mturk_eval.tasks.answers import SIMULATED_FIELD

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete"


@dataclass(frozen=True)
class Back:
    """How to hand a finished task back: a redirect, or a form the rater's browser posts."""

    redirect: str | None = None
    post_url: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    label: str = ""


class HandBack:
    """The default: nothing to hand back, no next task, the polite end page on decline."""

    def after_submit(self, store: SiteStore, a: Assignment) -> Back | None:
        return None

    def next_task_url(self, store: SiteStore, a: Assignment) -> str | None:
        return None

    def declined_url(self, store: SiteStore, rater_id: str, batch_id: str | None) -> str | None:
        return None


class LinksHandBack(HandBack):
    def next_task_url(self, store: SiteStore, a: Assignment) -> str | None:
        inv = store.invite_for(a.rater_id)
        return f"/i/{inv.token}" if inv and inv.revoked_at is None else None


class MTurkHandBack(HandBack):
    def after_submit(self, store: SiteStore, a: Assignment) -> Back | None:
        submit_to = a.extra.get("turkSubmitTo")
        if not submit_to or not a.ref:
            return None
        fields = {"assignmentId": a.ref, **(a.answers or {})}
        if a.simulated:   # the sandbox marks simulated assignments by this field (collect reads it)
            fields[SIMULATED_FIELD] = "1"
        return Back(post_url=submit_to + "/mturk/externalSubmit", fields=fields, label="mturk_back")


def failed_attention(store: SiteStore, a: Assignment) -> bool:
    """Whether the stored answers of ``a`` fail one of its task's attention checks (each check item in the
    store carries its expected bound, ``attention_check.aspects``: the builder's)."""
    from mturk_eval.tasks.answers import attention_passed, validate_scores

    if not a.answers:
        return False
    items = store.task_items(a.task_id)
    scores, _ = validate_scores(a.answers, len(items))
    return attention_passed(scores, items) is False


class ProlificHandBack(HandBack):
    def _code_url(self, store: SiteStore, batch_id: str | None, key: str) -> str | None:
        b = store.batch(batch_id) if batch_id else None
        code = b.settings.get(key) if b else None
        # completion_url: set by publish --platform prolific (the local emulator serves the same path).
        base = (b.settings.get("completion_url") if b else None) or PROLIFIC_COMPLETE
        return f"{base}?{urlencode({'cc': code})}" if code else None

    def after_submit(self, store: SiteStore, a: Assignment) -> Back | None:
        url = None
        if failed_attention(store, a):   # decided from the stored answers, so a reload gets the same code
            url = self._code_url(store, a.batch_id, "failed_attention_code")
        url = url or self._code_url(store, a.batch_id, "completion_code")
        return Back(redirect=url, label="prolific_back") if url else None

    def declined_url(self, store: SiteStore, rater_id: str, batch_id: str | None) -> str | None:
        return self._code_url(store, batch_id, "no_consent_code")


_HOOKS: dict[str, HandBack] = {"links": LinksHandBack(), "mturk": MTurkHandBack(), "prolific": ProlificHandBack()}


def register(platform: str, hook: HandBack) -> None:
    """Replace a platform's hand-back for every app created afterwards."""
    _HOOKS[platform] = hook


def default_hooks() -> dict[str, HandBack]:
    return dict(_HOOKS)

"""``invites``: list an experiment's invite links and revoke one (a link sent to the wrong person, a rater
who withdrew, a link that leaked).

The links live in the rating site's store (``runs/<exp>/site.sqlite``, :class:`~mturk_eval.site.store.SiteStore`);
``publish --platform links --raters N`` made them and wrote ``runs/<exp>/invites.csv``. Revoking goes
through ``SiteStore.revoke_invite``: the token stops working at once (the site answers 410 "This invite
link has been withdrawn by the researchers." and stores nothing), the rater's open reservation is given
back so that its place goes to someone else, and their submitted work stays (review decides on it).
``invites.csv`` is rewritten with the links still active. Revoking cannot be undone: make a new link with
``publish --platform links --raters N``.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.site.store import INVITE_RE, RATER_RE, Invite, SiteStore, site_store_path


@dataclass(frozen=True)
class InviteRow:
    rater_id: str
    url: str
    state: str                  # active | revoked
    created_at: float
    revoked_at: float | None
    submitted: int              # tasks this rater submitted on the site


@dataclass(frozen=True)
class Revoked:
    invite: Invite
    already: bool               # it was revoked before this call
    invites_csv: Path | None    # rewritten with the active links (None: there was none)


def _store(cfg: ExperimentConfig) -> SiteStore:
    path = site_store_path(cfg.run_dir)
    if not path.exists():
        raise UserError(f"{path}: no rating-site store, so no invite links yet: run `mturk-eval publish --platform"
                        " links --raters N` first")
    return SiteStore.open(path, create=False)


def _links(cfg: ExperimentConfig, store: SiteStore):
    from mturk_eval.platforms.links.links_platform import LinksPlatform, LinksSettings

    return LinksPlatform(LinksSettings(run_dir=str(cfg.run_dir), site_public_url=cfg.site.public_url), store=store)


def list_invites(cfg: ExperimentConfig) -> list[InviteRow]:
    """Every invite link of the experiment, active and revoked, in rater order."""
    with _store(cfg) as store:
        links = _links(cfg, store)
        done: dict[str, int] = {}
        for s in store.submissions(platform="links"):
            done[s.rater_id] = done.get(s.rater_id, 0) + 1
        return [InviteRow(i.rater_id, links.invite_url(i.token), "active" if i.revoked_at is None else "revoked",
                          i.created_at, i.revoked_at, done.get(i.rater_id, 0)) for i in store.invites()]


def invite_key(value: str) -> str:
    """The token or rater id in ``value``: a token, a whole invite URL (``.../i/TOKEN``) or ``r0001``."""
    value = (value or "").strip()
    if "/i/" in value:
        value = value.rsplit("/i/", 1)[1].split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if RATER_RE["links"].fullmatch(value) or INVITE_RE.fullmatch(value):
        return value
    raise UserError(f"invites revoke: expected an invite token, an invite URL (.../i/TOKEN) or a rater id like"
                    f" r0001, got {value[:60]!r}; nothing was revoked")


def revoke(cfg: ExperimentConfig, value: str, now: float | None = None) -> Revoked:
    """Revoke one invite link (by token, URL or rater id); revoking a revoked one changes nothing."""
    key = invite_key(value)
    with _store(cfg) as store:
        before = store.invite(key) if INVITE_RE.fullmatch(key) else store.invite_for(key)
        if before is None:
            raise UserError(f"invites revoke: {value[:60]!r} is not an invite of this experiment (`mturk-eval invites"
                            " list` shows them); nothing was revoked")
        inv = store.revoke_invite(before.token, now=time.time() if now is None else now)
        csv_path = None
        links = _links(cfg, store)
        from mturk_eval.platforms.links.links_platform import INVITES_FILE

        if (cfg.run_dir / INVITES_FILE).exists():
            csv_path = links.write_invites([i for i in store.invites() if i.revoked_at is None])
        return Revoked(inv, before.revoked_at is not None, csv_path)


def iso(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

"""The boto3 ``mturk`` client factory: one code path for the sandbox, production and any
MTurk-compatible endpoint (the local emulator), with botocore's standard retry mode.

Credentials come only from boto3's own chain (environment, shared files, profiles, instance roles) and
are never printed or stored; a custom ``--endpoint-url`` always gets dummy credentials so real keys are
never sent to a server that is not Amazon's.
"""
from __future__ import annotations

import boto3
import botocore.config

from mturk_eval.errors import UserError
from mturk_eval.platforms.mturk.retry import NO_CREDENTIALS

REGION = "us-east-1"
ENDPOINTS = {
    "sandbox": "https://mturk-requester-sandbox.us-east-1.amazonaws.com",
    "live": "https://mturk-requester.us-east-1.amazonaws.com",
}
WORKER_SITES = {"sandbox": "https://workersandbox.mturk.com", "live": "https://worker.mturk.com"}
SUBMIT_URLS = {
    "sandbox": "https://workersandbox.mturk.com/mturk/externalSubmit",
    "live": "https://www.mturk.com/mturk/externalSubmit",
}
DUMMY_CREDENTIALS = {"aws_access_key_id": "MTURKEVALLOCAL", "aws_secret_access_key": "mturk-eval-local"}


def resolve_target(live: bool = False, endpoint_url: str | None = None) -> str:
    """``sandbox`` (the default), ``live`` or ``local`` (any ``--endpoint-url``)."""
    if live and endpoint_url:
        raise UserError("--live and --endpoint-url: choose one target (--endpoint-url is for MTurk-compatible servers)")
    if endpoint_url:
        if not endpoint_url.startswith(("http://", "https://")):
            raise UserError(f"--endpoint-url: expected an http:// or https:// URL, got {endpoint_url!r}")
        return "local"
    return "live" if live else "sandbox"


def submit_url_for(target: str, endpoint_url: str | None = None) -> str:
    """Where a HIT form posts when opened without ``turkSubmitTo`` (MTurk always passes it)."""
    if target in SUBMIT_URLS:
        return SUBMIT_URLS[target]
    return f"{(endpoint_url or '').rstrip('/')}/mturk/externalSubmit"


def make_client(target: str, endpoint_url: str | None = None, *, max_attempts: int = 5,
                max_pool_connections: int = 10, session: boto3.session.Session | None = None):
    """A boto3 ``mturk`` client for ``target`` (sandbox | live | local)."""
    session = session or boto3.session.Session()
    config = botocore.config.Config(
        region_name=REGION,
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max_pool_connections,
    )
    if target == "local":
        if not endpoint_url:
            raise UserError("target local needs --endpoint-url")
        return session.client("mturk", region_name=REGION, endpoint_url=endpoint_url, config=config,
                              **DUMMY_CREDENTIALS)
    if target not in ENDPOINTS:
        raise UserError(f"target: expected sandbox, live or local, got {target!r}")
    if session.get_credentials() is None:
        raise UserError(NO_CREDENTIALS)
    return session.client("mturk", region_name=REGION, endpoint_url=ENDPOINTS[target], config=config)

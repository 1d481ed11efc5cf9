"""Calling MTurk with exponential backoff and full jitter for throttling and service faults.

botocore's standard retry mode already retries on the wire; this wrapper adds the application-level
layer the issue asks for: ``ThrottlingException`` ("Rate exceeded", outside the service model) and
``ServiceFault`` (HTTP 500) are retried with ``min(cap, base * 2**n) * random()`` sleeps, and a
permanent ``RequestError`` becomes one clear UserError (unless the caller handles it).
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

from botocore.exceptions import ClientError

from mturk_eval.errors import UserError

RETRYABLE_CODES = frozenset({"ThrottlingException", "Throttling", "ServiceFault", "ServiceUnavailable",
                             "TooManyRequestsException", "RequestLimitExceeded"})


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def turk_error_code(exc: ClientError) -> str:
    """MTurk's ``TurkErrorCode`` (e.g. ``AWS.MechanicalTurk.HitAlreadyExists``), or ''."""
    r = exc.response
    return r.get("TurkErrorCode") or r.get("Error", {}).get("TurkErrorCode", "") or ""


def error_message(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Message", "") or str(exc)


def is_retryable(exc: ClientError) -> bool:
    return error_code(exc) in RETRYABLE_CODES or "rate exceeded" in error_message(exc).lower()


def call(fn: Callable[..., Any], *, attempts: int = 8, base: float = 0.5, cap: float = 30.0,
         sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
         raw_errors: bool = False, **params: Any) -> Any:
    """``fn(**params)``, retrying retryable errors; other ClientErrors become UserErrors unless
    ``raw_errors`` (then they propagate for the caller to inspect)."""
    rng = rng or random.Random()
    for n in range(attempts):
        try:
            return fn(**params)
        except ClientError as exc:
            if is_retryable(exc) and n + 1 < attempts:
                sleep(min(cap, base * (2 ** n)) * rng.random())
                continue
            if raw_errors:
                raise
            raise UserError(describe(exc)) from None
    raise AssertionError("unreachable")


def describe(exc: ClientError) -> str:
    op = exc.operation_name
    code = turk_error_code(exc) or error_code(exc)
    return f"MTurk {op} failed: {code}: {error_message(exc)}"

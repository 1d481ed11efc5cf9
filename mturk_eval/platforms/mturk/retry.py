"""Calling MTurk with exponential backoff and full jitter for throttling and service faults.

botocore's standard retry mode already retries on the wire; this wrapper adds the application-level
layer the issue asks for: ``ThrottlingException`` ("Rate exceeded", outside the service model) and
``ServiceFault`` (HTTP 500) are retried with ``min(cap, base * 2**n) * random()`` sleeps, and a
permanent ``RequestError`` becomes one clear UserError (unless the caller handles it).

Transport failures (nothing listening, DNS, TLS, proxy, connect or read timeouts, a connection closed
before the answer) have already been retried by botocore's standard mode when they get here; they
become one :class:`EndpointUnreachable` line naming the endpoint, for every verb. So do missing or
unusable credentials (``NoCredentialsError`` and the like).
"""
from __future__ import annotations

import random
import re
import time
from typing import Any, Callable

from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, CredentialRetrievalError,
                                 HTTPClientError, NoCredentialsError, PartialCredentialsError, ReadTimeoutError)
from botocore.exceptions import ConnectionError as BotoConnectionError

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


TRANSPORT_ERRORS = (BotoConnectionError, HTTPClientError)
CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)
NO_CREDENTIALS = (
    "no AWS credentials found: give them the way boto3 looks for them (AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, or AWS_PROFILE); mturk-eval never stores them"
)


class EndpointUnreachable(UserError):
    """The MTurk endpoint could not be reached (after botocore's retries). ``reason`` is the short
    form (endpoint and cause) that callers adding their own context use instead of the whole line."""

    def __init__(self, reason: str, hint: str):
        super().__init__(f"{reason}; {hint}")
        self.reason = reason


def call(fn: Callable[..., Any], *, attempts: int = 8, base: float = 0.5, cap: float = 30.0,
         sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
         raw_errors: bool = False, endpoint: str | None = None, **params: Any) -> Any:
    """``fn(**params)``, retrying retryable errors; other ClientErrors become UserErrors unless
    ``raw_errors`` (then they propagate for the caller to inspect). Transport and credential
    failures always become UserErrors (:class:`EndpointUnreachable` for the former): they are
    never retried here, botocore has already retried them."""
    rng = rng or random.Random()
    for n in range(attempts):
        try:
            return fn(**params)
        except TRANSPORT_ERRORS as exc:
            raise unreachable(exc, fn, endpoint) from None
        except CREDENTIAL_ERRORS as exc:
            msg = NO_CREDENTIALS if isinstance(exc, NoCredentialsError) else (
                f"AWS credentials are not usable ({exc}); fix them the way boto3 reads them (environment,"
                " ~/.aws/credentials, AWS_PROFILE)")
            raise UserError(msg) from None
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


def _client_of(fn: Callable[..., Any]):
    return getattr(fn, "__self__", None)


def _op_name(fn: Callable[..., Any]) -> str:
    client = _client_of(fn)
    name = getattr(fn, "__name__", "") or ""
    try:
        return client.meta.method_to_api_mapping.get(name, name)
    except AttributeError:
        return name


_ERRNO = re.compile(r"\[Errno -?\d+\]\s*([^'\")\]]+)")


def _cause(exc: BotoCoreError) -> str:
    """The short cause of a transport error: 'Connection refused', 'read timeout', ..."""
    if isinstance(exc, ReadTimeoutError):
        return "no answer in time (read timeout)"
    if isinstance(exc, ConnectionClosedError):
        return "the connection was closed before an answer came"
    text = str(getattr(exc, "kwargs", {}).get("error", "") or "")
    m = _ERRNO.search(text)
    if m:
        return m.group(1).strip().rstrip(".")
    name = type(exc).__name__
    if "Timeout" in name:
        return "connect timeout"
    if "SSL" in name:
        return f"TLS error: {text or exc}"
    if "Proxy" in name:
        return f"proxy error: {text or exc}"
    return text.split(": ", 1)[-1] if text else str(exc)


def unreachable(exc: BotoCoreError, fn: Callable[..., Any] | None = None,
                endpoint: str | None = None) -> EndpointUnreachable:
    """One line for a transport failure: the endpoint, the cause, which call and how many tries."""
    client = _client_of(fn) if fn is not None else None
    meta = getattr(client, "meta", None)
    endpoint = endpoint or getattr(meta, "endpoint_url", None) or getattr(exc, "kwargs", {}).get("endpoint_url", "")
    tries = ""
    try:
        retries = meta.config.retries
        n = int(retries.get("total_max_attempts") or retries["max_attempts"] + 1)
        tries = f", {n} {'try' if n == 1 else 'tries'}"
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    op = _op_name(fn) if fn is not None else ""
    where = f"; {op}{tries}" if op else tries
    reason = f"{str(endpoint).rstrip('/')}: cannot reach the MTurk endpoint ({_cause(exc)}{where})"
    return EndpointUnreachable(reason, "check that the server is running and that the URL and the network are"
                                       " right, then run the command again")

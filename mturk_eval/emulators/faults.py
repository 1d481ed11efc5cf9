"""Fault injection for the sandbox's requester API: throttling, 5xx errors, dropped connections, latency.

Each API request draws once from a seeded generator, so a given seed and request order give the same
faults. ``drop_rate`` closes the connection before the request runs; ``drop_after_rate`` runs it and then
closes the connection, so the client never learns that it succeeded (the case UniqueRequestToken exists
for). Faults touch only the requester API, never the worker site.
"""
from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from mturk_eval.errors import UserError

ACTIONS = ("throttle", "error", "drop", "drop_after")


@dataclass
class FaultConfig:
    throttle_rate: float = 0.0
    """Share of requests answered with ThrottlingException ("Rate exceeded", HTTP 400)."""
    error_rate: float = 0.0
    """Share answered with ServiceFault (HTTP 500) without running the operation."""
    drop_rate: float = 0.0
    """Share whose connection is closed before the operation runs."""
    drop_after_rate: float = 0.0
    """Share whose operation runs but whose connection is closed instead of answering."""
    latency_s: float = 0.0
    """Added delay before each request (seconds)."""
    latency_jitter_s: float = 0.0
    """Uniform random extra delay on top of latency_s, from 0 to this (seconds)."""
    seed: int = 0
    operations: list[str] = field(default_factory=list)
    """Only these operations get faults (empty: all)."""

    def __post_init__(self) -> None:
        rates = [self.throttle_rate, self.error_rate, self.drop_rate, self.drop_after_rate]
        for name, v in zip(("throttle_rate", "error_rate", "drop_rate", "drop_after_rate"), rates):
            if not 0.0 <= v <= 1.0:
                raise UserError(f"faults: {name}: expected a share from 0 to 1, got {v!r}")
        if sum(rates) > 1.0:
            raise UserError(f"faults: the rates add up to {sum(rates):.3g}; expected at most 1")
        if self.latency_s < 0 or self.latency_jitter_s < 0:
            raise UserError("faults: latency_s and latency_jitter_s: expected seconds >= 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FaultConfig":
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise UserError(f"faults: unknown key '{bad[0]}' (known keys: {', '.join(sorted(known))})")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    action: str | None
    delay_s: float


class FaultInjector:
    """Draws the fault of each request; thread-safe; replaceable at run time (``configure``)."""

    def __init__(self, config: FaultConfig | None = None):
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())
        self.counts = {a: 0 for a in ACTIONS}

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)

    def decide(self, operation: str) -> Decision:
        c = self.config
        if c.operations and operation not in c.operations:
            return Decision(None, 0.0)
        with self._lock:
            u = self._rng.random()
            jitter = self._rng.random() * c.latency_jitter_s if c.latency_jitter_s else 0.0
            action = None
            edge = 0.0
            for name, rate in zip(ACTIONS, (c.throttle_rate, c.error_rate, c.drop_rate, c.drop_after_rate)):
                edge += rate
                if u < edge:
                    action = name
                    self.counts[name] += 1
                    break
        return Decision(action, c.latency_s + jitter)


class DropConnection(ConnectionAbortedError):
    """Raised by a handler to make the server close the connection without answering (a lost connection)."""

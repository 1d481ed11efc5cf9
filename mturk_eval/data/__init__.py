"""Datasets of an experiment: loaders for the corpora, persona grouping, and the built files.

``build.build_datasets(cfg)`` writes ``runs/<exp>/data/``; ``load_built(cfg)`` reads it back for the
generators and the HIT builder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.io import iter_jsonl, read_text


@dataclass
class Persona:
    persona_id: str
    sentences: list[str]
    num_pairs: int
    num_episodes: int
    source: str


@dataclass
class Pair:
    pair_id: str
    persona_id: str | None
    kind: str  # "persona" | "general"
    utterance: str
    response: str
    source: str


class BuiltData:
    """Read access to ``runs/<exp>/data/`` as written by ``build_datasets``."""

    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir)
        if not (self.dir / "manifest.json").exists():
            raise UserError(f"{self.dir}: no built data here; run 'mturk-eval data build --config FILE' first")
        self.manifest = json.loads(read_text(self.dir / "manifest.json"))
        self.personas = [Persona(**p) for p in json.loads(read_text(self.dir / "personas.json"))]

    def persona(self, persona_id: str) -> Persona:
        for p in self.personas:
            if p.persona_id == persona_id:
                return p
        raise UserError(f"{self.dir}: no persona {persona_id!r} (have {', '.join(p.persona_id for p in self.personas)})")

    def _pairs(self, rel: str) -> list[Pair]:
        return [Pair(**row) for _, row in iter_jsonl(self.dir / rel)]

    def train(self, persona_id: str) -> list[Pair]:
        return self._pairs(f"{persona_id}/train.jsonl")

    def persona_eval(self, persona_id: str) -> list[Pair]:
        return self._pairs(f"{persona_id}/persona_eval.jsonl")

    def general_eval(self) -> list[Pair]:
        return self._pairs("general_eval.jsonl")


def load_built(cfg: ExperimentConfig) -> BuiltData:
    return BuiltData(cfg.data_dir)


__all__ = ["BuiltData", "Pair", "Persona", "load_built"]

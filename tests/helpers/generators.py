"""Test helpers for the generators: a float64 tiny model, hand-made pairs, a fake BuiltData, a tiny config.

Another engineer's end-to-end test can use :func:`tiny_config_text` for a config that runs
``mturk-eval generate`` with ``models = ["tiny-random"]`` in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PERSONA = ["i like cats.", "i am a nurse.", "i live in vermont."]
PAIRS = [
    ("hi , how are you ?", "great , i just fed my cats ."),
    ("what do you do ?", "i am a nurse at night ."),
    ("where do you live ?", "in vermont , near the woods ."),
    ("any pets ?", "three cats !"),
    ("do you like your job ?", "yes , nursing is hard but good ."),
    ("what is your favourite food ?", "maple syrup on pancakes ."),
]
GENERAL = [("do you want dinner ?", "sure , where ?"), ("i am so tired .", "get some sleep .")]


def tiny64():
    """tiny-random in float64: greedy ties between cached and uncached paths become impossible in practice."""
    import torch

    from mturk_eval.generators.models import load_model

    return load_model("tiny-random", dtype=torch.float64, device="cpu")


@dataclass
class FakePersona:
    persona_id: str
    sentences: list[str]
    num_pairs: int = 0
    num_episodes: int = 1
    source: str = "test"


@dataclass
class FakePair:
    pair_id: str
    persona_id: str | None
    kind: str
    utterance: str
    response: str
    source: str = "test"


@dataclass
class FakeData:
    """Same interface as mturk_eval.data.BuiltData, from the hand-made pairs above."""

    personas: list[FakePersona] = field(default_factory=lambda: [FakePersona("p1", PERSONA), FakePersona("p2", ["i play the fiddle.", "my dog is biscuit."])])

    def train(self, pid: str) -> list[FakePair]:
        return [FakePair(f"{pid}-{i:04d}", pid, "persona", u, r) for i, (u, r) in enumerate(PAIRS[:4])]

    def persona_eval(self, pid: str) -> list[FakePair]:
        return [FakePair(f"{pid}-{i + 4:04d}", pid, "persona", u, r) for i, (u, r) in enumerate(PAIRS[4:])]

    def general_eval(self) -> list[FakePair]:
        return [FakePair(f"g-{i:05d}", None, "general", u, r) for i, (u, r) in enumerate(GENERAL)]


def tiny_config_text(name: str = "tiny", runs_dir: str = "runs", sample_dir: str | Path | None = None) -> str:
    """A config for the shipped sample data and the tiny-random model: trains and samples in seconds."""
    if sample_dir is None:
        sample_dir = Path(__file__).resolve().parents[2] / "mturk_eval" / "data" / "sample"
    return f"""
[experiment]
name = "{name}"
seed = 3
models = ["tiny-random"]
runs_dir = "{runs_dir}"

[data]
num_personas = 2
general_eval_size = 4

[[data.persona_sources]]
format = "jsonl"
path = "{Path(sample_dir) / 'personas.jsonl'}"

[[data.general_sources]]
format = "jsonl"
path = "{Path(sample_dir) / 'general.jsonl'}"

[training]
num_virtual_tokens = 8
batch_size = 8
max_epochs = 2
patience = 1
dtype = "float32"

[generation]
max_new_tokens = 6
batch_size = 4
dtype = "float32"
"""

"""The one input format for a dialogue pair, used identically in training and in generation.

A training sequence is the concatenation of separately tokenised segments (no special tokens added by
the tokenizer itself)::

    [soft prompt (prompt-tuning only)] [BOS if the model uses one] [persona] [prompt] [response] [EOS]

* ``persona`` (method ``finetune_added`` only): the persona sentences joined by spaces, then ``"\\n"``.
* ``prompt``: the utterance followed by ``"\\n"`` (the turn separator). With ``chat_template = true`` and a
  tokenizer that has one, the prompt is instead the chat template's rendering of one user turn with the
  generation prompt (``<|im_start|>user ... <|im_start|>assistant\\n`` for SmolLM2).
* ``response``: the response text, then the tokenizer's EOS (for instruction models, their end of turn).

Newlines inside utterances and responses are replaced by spaces, so a newline always means "end of turn":
generation stops at EOS or at the first token containing a newline (plain format).

Segments are tokenised separately so that the shared part (soft prompt, BOS, persona) is the same token
sequence for every pair of a persona: its key/value cache can then be computed once and shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = "pair-v1"
SEP = "\n"


@dataclass
class EncodedPair:
    prompt_ids: list[int]  # utterance + separator (after the shared prefix)
    response_ids: list[int]  # response + EOS; empty at generation time


def clean(text: str) -> str:
    """One line of text: newlines and runs of whitespace become single spaces."""
    return " ".join(str(text).split())


class PairFormat:
    """Tokenises pairs the documented way for one tokenizer."""

    def __init__(self, tokenizer: Any, chat_template: bool = False, max_length: int = 128):
        self.tokenizer = tokenizer
        self.chat = bool(chat_template and getattr(tokenizer, "chat_template", None))
        self.max_length = max_length
        self.eos_id: int = tokenizer.eos_token_id
        probe = tokenizer("a").input_ids
        bos = tokenizer.bos_token_id
        self.bos_ids: list[int] = [bos] if bos is not None and probe and probe[0] == bos else []
        stops, blank = self._scan_vocab()
        self.stop_ids: frozenset[int] = frozenset(stops)
        # tokens that decode to no visible text in a response (whitespace, special tokens): generation does
        # not start a response with one, so min_new_tokens >= 1 means at least one visible character
        self.blank_ids: frozenset[int] = frozenset(blank)

    def _scan_vocab(self) -> tuple[set[int], set[int]]:
        stops = {self.eos_id}
        blank = set()
        for tid in range(len(self.tokenizer)):
            if not self.chat and "\n" in self.tokenizer.decode([tid]):
                stops.add(tid)  # any token whose text contains a newline ends the turn
            if not clean(self.tokenizer.decode([tid], skip_special_tokens=True)):
                blank.add(tid)
        return stops, blank

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def prefix_ids(self, persona: list[str] | None) -> list[int]:
        """The shared start of every sequence: BOS, then the persona text when ``persona`` is given."""
        ids = list(self.bos_ids)
        if persona:
            ids += self._ids(clean(" ".join(persona)) + SEP)
        return ids

    def prompt_ids(self, utterance: str) -> list[int]:
        if self.chat:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": clean(utterance)}], add_generation_prompt=True, tokenize=False
            )
            return self._ids(text)
        return self._ids(clean(utterance) + SEP)

    def encode(self, utterance: str, response: str | None = None) -> EncodedPair:
        """Prompt (and response + EOS) ids; the prompt is cut from the left and the response from the
        right so that both fit ``max_length`` tokens (the shared prefix is not counted)."""
        prompt = self.prompt_ids(utterance)
        resp = (self._ids(clean(response)) + [self.eos_id]) if response is not None else []
        if len(prompt) + len(resp) > self.max_length:
            keep_resp = min(len(resp), max(self.max_length // 2, self.max_length - len(prompt)))
            resp = resp[:keep_resp]
            prompt = prompt[-(self.max_length - keep_resp) :] if self.max_length > keep_resp else []
        return EncodedPair(prompt, resp)

    def decode_response(self, ids: list[int]) -> str:
        """Text of generated ids, cut at the first stop token."""
        out = []
        for t in ids:
            if t in self.stop_ids:
                break
            out.append(t)
        return clean(self.tokenizer.decode(out, skip_special_tokens=True))

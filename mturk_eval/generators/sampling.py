"""Batched response generation after a shared prefix (soft prompt and/or persona text).

Greedy decoding (the paper's) by default; ``sample`` (temperature / top-k / top-p) and ``beam`` are
available. What makes greedy and sampling fast on CPU, each measured in benchmarks/bench_generation.py:

* the prefix's key/value cache is computed once per persona and broadcast to every batch;
* prompts are sorted by length before batching, so little padding is computed;
* a sequence that has stopped leaves the batch (its cache rows are dropped), so the last steps of a batch
  do not keep computing finished rows.

Left padding with padding-aware position ids makes a batched response token-for-token identical to the
unbatched one (tests/test_generators_sampling.py checks this against :func:`reference_greedy`, which
recomputes the whole sequence without any cache). Beam search is delegated to transformers' ``generate``
on the full input embeddings (slower: no shared cache) since it is not the paper's setting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from mturk_eval.generators.prefix import backbone, compute_prefix_kv, forward_hidden, left_pad


@dataclass
class DecodeSettings:
    strategy: str = "greedy"  # greedy | sample | beam
    max_new_tokens: int = 40
    # stop tokens are not allowed before this many tokens (no empty responses); 0 allows them
    min_new_tokens: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    batch_size: int = 16
    seed: int = 0
    # ablation switches for the benchmark; both on in normal use
    sort_by_length: bool = True
    drop_finished: bool = True

    def public(self) -> dict[str, Any]:
        """The settings written into responses.jsonl (only those that affect the output)."""
        d: dict[str, Any] = {"strategy": self.strategy, "max_new_tokens": self.max_new_tokens,
                             "min_new_tokens": self.min_new_tokens}
        if self.strategy == "sample":
            d.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, seed=self.seed)
        if self.strategy == "beam":
            d.update(num_beams=self.num_beams)
        return d


def _choose(logits: torch.Tensor, s: DecodeSettings, gen: torch.Generator | None) -> torch.Tensor:
    if s.strategy == "greedy":
        return logits.argmax(-1)
    logits = logits.float() / max(s.temperature, 1e-6)
    if s.top_k and s.top_k > 0:
        kth = torch.topk(logits, min(s.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        cum = probs.cumsum(-1)
        remove = cum - probs > s.top_p  # keep the smallest set whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(-1).to(logits.device)


@torch.inference_mode()
def generate_batch(
    model: Any,
    prefix_kv: list,
    prompts: list[list[int]],
    s: DecodeSettings,
    stop_ids: frozenset[int],
    pad_id: int,
    gen: torch.Generator | None = None,
) -> list[list[int]]:
    """Generate for one batch of prompts; each output stops after its first stop token (kept)."""
    device = model.get_input_embeddings().weight.device
    lm_head = model.get_output_embeddings()
    ids, mask = left_pad(prompts, pad_id, device)
    hidden, cache, full_mask = forward_hidden(model, ids, mask, prefix_kv)
    # the position of token t is its count of real tokens before it (+prefix): the prompt's last + 1
    next_pos = (prefix_kv[0][0].shape[-2] if prefix_kv else 0) + mask.sum(-1, keepdim=True)
    B = len(prompts)
    outs: list[list[int]] = [[] for _ in range(B)]
    rows = torch.arange(B, device=device)  # original row of each live batch row
    logits = lm_head(hidden[:, -1, :])
    stop = torch.tensor(sorted(stop_ids), device=device)
    for step in range(s.max_new_tokens):
        if step < s.min_new_tokens:
            logits = logits.index_fill(-1, stop, float("-inf"))
        tok = _choose(logits, s, gen)
        for r, t in zip(rows.tolist(), tok.tolist()):
            outs[r].append(t)
        done = torch.isin(tok, stop)
        if step == s.max_new_tokens - 1 or bool(done.all()):
            break
        if s.drop_finished and bool(done.any()):
            keep = (~done).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            full_mask, next_pos, tok, rows = full_mask[keep], next_pos[keep], tok[keep], rows[keep]
        elif not s.drop_finished:
            # finished rows keep decoding (discarded later); feed them the pad token
            tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        one = torch.ones(tok.shape[0], 1, dtype=full_mask.dtype, device=device)
        hidden, cache, full_mask = forward_hidden(
            model, tok.unsqueeze(-1), one, prefix_kv, cache=cache, past_mask=full_mask, pos=next_pos
        )
        next_pos = next_pos + 1
        logits = lm_head(hidden[:, -1, :])
    if not s.drop_finished:
        outs = [_cut(o, stop_ids) for o in outs]
    return outs


def _cut(ids: list[int], stop_ids: frozenset[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stop_ids:
            return ids[: i + 1]
    return ids


@torch.inference_mode()
def generate_beam(model: Any, prefix_embeds, prompts, s: DecodeSettings, stop_ids, pad_id) -> list[list[int]]:
    """Beam search through transformers' ``generate`` on the full embeddings (prefix + prompt)."""
    device = model.get_input_embeddings().weight.device
    outs = []
    for p in prompts:
        ids = torch.tensor([p], device=device)
        emb = model.get_input_embeddings()(ids)
        if prefix_embeds is not None:
            emb = torch.cat([prefix_embeds.to(emb.dtype), emb], dim=1)
        mask = torch.ones(emb.shape[:2], dtype=torch.long, device=device)
        out = model.generate(
            inputs_embeds=emb,
            attention_mask=mask,
            max_new_tokens=s.max_new_tokens,
            min_new_tokens=s.min_new_tokens,
            num_beams=s.num_beams,
            do_sample=False,
            eos_token_id=sorted(stop_ids),
            pad_token_id=pad_id,
        )
        outs.append(_cut(out[0].tolist(), stop_ids))
    return outs


def generate(
    model: Any,
    prefix_embeds: torch.Tensor | None,
    prompts: list[list[int]],
    s: DecodeSettings,
    stop_ids: frozenset[int],
    pad_id: int,
    progress: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Responses (token ids, ending with the stop token when one was produced) for all ``prompts``, in order."""
    if s.strategy == "beam":
        out = generate_beam(model, prefix_embeds, prompts, s, stop_ids, pad_id)
        if progress:
            progress(len(prompts))
        return out
    with torch.inference_mode():
        prefix_kv = compute_prefix_kv(model, prefix_embeds.detach() if prefix_embeds is not None else None)
    order = list(range(len(prompts)))
    if s.sort_by_length:
        order.sort(key=lambda i: -len(prompts[i]))
    gen = None
    if s.strategy == "sample":
        gen = torch.Generator().manual_seed(s.seed)
    results: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), s.batch_size):
        idx = order[start : start + s.batch_size]
        outs = generate_batch(model, prefix_kv, [prompts[i] for i in idx], s, stop_ids, pad_id, gen)
        for i, o in zip(idx, outs):
            results[i] = o
        if progress:
            progress(len(idx))
    return results


@torch.inference_mode()
def reference_greedy(
    model: Any,
    prefix_embeds: torch.Tensor | None,
    prompt: list[int],
    max_new_tokens: int,
    stop_ids: frozenset[int],
    min_new_tokens: int = 1,
) -> list[int]:
    """Unbatched greedy decoding that recomputes the whole sequence at every step, without a cache.

    The correctness reference for :func:`generate` (and for PEFT's generate in the benchmark).
    """
    emb_layer = model.get_input_embeddings()
    device = emb_layer.weight.device
    seq = list(prompt)
    out: list[int] = []
    for _ in range(max_new_tokens):
        emb = emb_layer(torch.tensor([seq], device=device))
        if prefix_embeds is not None:
            emb = torch.cat([prefix_embeds.to(emb.dtype), emb], dim=1)
        pos = torch.arange(emb.shape[1], device=device).unsqueeze(0)
        h = backbone(model)(inputs_embeds=emb, position_ids=pos, use_cache=False).last_hidden_state
        logits = model.get_output_embeddings()(h[0, -1, :])
        if len(out) < min_new_tokens:
            logits[sorted(stop_ids)] = float("-inf")
        t = int(logits.argmax(-1))
        out.append(t)
        seq.append(t)
        if t in stop_ids:
            break
    return out

"""Batched response generation after a shared prefix (soft prompt and/or persona text).

Greedy decoding (the paper's) by default; ``sample`` (temperature / top-k / top-p) and ``beam`` are
available. What makes greedy and sampling fast on CPU, each measured in benchmarks/bench_generation.py:

* the prefix's key/value cache is computed once per persona and broadcast to every batch;
* prompts are sorted by length before batching, so little padding is computed;
* a sequence that has stopped leaves the batch (its cache rows are dropped), so the last steps of a batch
  do not keep computing finished rows;
* continuous batching: waiting prompts join the running batch when a quarter of it has finished (their
  prompt is run once, then their cache rows are padded to the batch's length and appended), so the batch
  stays full. On CPU a decoding step costs about the same for 4 rows as for 16 (reading the weights
  dominates), so full batches mean fewer steps per response.

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
    # stop tokens are not allowed before this many tokens, and (when >= 1) the first token must be one
    # with visible text (not in ``blank_ids``), so a response is never empty; 0 allows both
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
    # keep the batch full: when rows finish, waiting prompts join the running batch
    continuous: bool = True
    # the model's dtype (generation.dtype made concrete), recorded with every response; the caller
    # loads the model in it
    dtype: str = "float32"

    def public(self) -> dict[str, Any]:
        """The settings written into responses.jsonl (only those that affect the output)."""
        d: dict[str, Any] = {"strategy": self.strategy, "max_new_tokens": self.max_new_tokens,
                             "min_new_tokens": self.min_new_tokens, "dtype": self.dtype}
        if self.strategy == "sample":
            d.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, seed=self.seed)
        if self.strategy == "beam":
            d.update(num_beams=self.num_beams)
        return d


def _first_block(stop_ids: frozenset[int], blank_ids: frozenset[int], device) -> torch.Tensor:
    """Tokens not allowed as a response's first token when ``min_new_tokens >= 1``: stops, and tokens that
    decode to no visible text (whitespace, special tokens), which would leave the response empty."""
    return torch.tensor(sorted(set(stop_ids) | set(blank_ids)), device=device)


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
    blank_ids: frozenset[int] = frozenset(),
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
    first = _first_block(stop_ids, blank_ids, device)
    for step in range(s.max_new_tokens):
        if step == 0 and s.min_new_tokens >= 1:
            logits = logits.index_fill(-1, first, float("-inf"))
        elif step < s.min_new_tokens:
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


def _pad_kv_middle(cache: Any, at: int, n: int) -> None:
    """Insert ``n`` zero positions at sequence index ``at`` of every layer (masked out by the caller)."""
    if n <= 0:
        return
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            z = t.new_zeros(t.shape[0], t.shape[1], n, t.shape[3])
            setattr(layer, name, torch.cat([t[:, :, :at], z, t[:, :, at:]], dim=2))


def _cat_kv(cache: Any, other: Any) -> None:
    for a, b in zip(cache.layers, other.layers):
        a.keys = torch.cat([a.keys, b.keys], dim=0)
        a.values = torch.cat([a.values, b.values], dim=0)


def _leading_masked(mask: torch.Tensor, P: int) -> int:
    """How many positions right after the prefix are masked in every row (left padding no row needs)."""
    own = mask[:, P:].any(0)
    return int(own.int().argmax()) if bool(own.any()) else 0


@torch.inference_mode()
def generate_continuous(
    model: Any,
    prefix_kv: list,
    prompts: list[list[int]],
    order: list[int],
    s: DecodeSettings,
    stop_ids: frozenset[int],
    pad_id: int,
    gen: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
    blank_ids: frozenset[int] = frozenset(),
) -> list[list[int]]:
    """Continuous batching over ``prompts`` taken in ``order``; outputs as :func:`generate_batch`.

    Where the model supports it (attention.py) the cache is a :class:`SharedPrefixCache`: the prefix
    once, each row's positions in a buffer sized for the longest prompt plus ``max_new_tokens``, left
    padding that no live row needs dropped whenever rows leave or join. Otherwise a ``DynamicCache``.
    """
    from mturk_eval.generators.attention import shared_prefix_cache, supports_shared_prefix

    device = model.get_input_embeddings().weight.device
    lm_head = model.get_output_embeddings()
    P = prefix_kv[0][0].shape[-2] if prefix_kv else 0
    stop = torch.tensor(sorted(stop_ids), device=device)
    first = _first_block(stop_ids, blank_ids, device)
    outs: list[list[int]] = [[] for _ in prompts]
    queue = list(order)
    cache = None
    mask = pos = logits = rows = None
    refill = max(1, s.batch_size // 4)
    split = supports_shared_prefix(model)
    capacity = max(len(p) for p in prompts) + s.max_new_tokens

    def trim() -> None:
        nonlocal mask
        n = _leading_masked(mask, P) if split else 0
        if n:
            for layer in cache.layers:
                layer.select(None, drop_front=n)
            mask = torch.cat([mask[:, :P], mask[:, P + n :]], dim=1)

    def admit(k: int) -> None:
        nonlocal cache, mask, pos, logits, rows
        idx = queue[:k]
        del queue[:k]
        ids, m = left_pad([prompts[i] for i in idx], pad_id, device)
        fresh = shared_prefix_cache(model, prefix_kv, s.batch_size if cache is None else k, capacity) if split else None
        hidden, c, full = forward_hidden(model, ids, m, prefix_kv, cache=fresh)
        new_logits = lm_head(hidden[:, -1, :])
        new_pos = P + m.sum(-1, keepdim=True)
        new_rows = torch.tensor(idx, device=device)
        if cache is None:
            cache, mask, pos, logits, rows = c, full, new_pos, new_logits, new_rows
            trim()
            return
        T_old, T_new = mask.shape[1], full.shape[1]
        if T_new < T_old:
            _shift(c, P, T_old - T_new, split)
            full = torch.cat([full[:, :P], full.new_zeros(full.shape[0], T_old - T_new), full[:, P:]], dim=1)
        elif T_old < T_new:
            _shift(cache, P, T_new - T_old, split)
            mask = torch.cat([mask[:, :P], mask.new_zeros(mask.shape[0], T_new - T_old), mask[:, P:]], dim=1)
        if split:
            for a, b in zip(cache.layers, c.layers):
                a.extend(b)
        else:
            _cat_kv(cache, c)
        mask = torch.cat([mask, full])
        pos = torch.cat([pos, new_pos])
        logits = torch.cat([logits, new_logits])
        rows = torch.cat([rows, new_rows])
        trim()

    admit(min(s.batch_size, len(queue)))
    while rows is not None and len(rows):
        counts = torch.tensor([len(outs[r]) for r in rows.tolist()], device=device)
        early = counts < s.min_new_tokens
        if bool(early.any()):
            blocked = logits.index_fill(-1, stop, float("-inf"))
            logits = torch.where(early.unsqueeze(-1), blocked, logits)
            at_start = counts == 0
            if bool(at_start.any()):
                blocked = logits.index_fill(-1, first, float("-inf"))
                logits = torch.where(at_start.unsqueeze(-1), blocked, logits)
        tok = _choose(logits, s, gen)
        for r, t in zip(rows.tolist(), tok.tolist()):
            outs[r].append(t)
        done = torch.isin(tok, stop) | (counts + 1 >= s.max_new_tokens)
        if bool(done.any()):
            if progress:
                progress(int(done.sum()))
            keep = (~done).nonzero().squeeze(-1)
            mask, pos, tok, rows = mask[keep], pos[keep], tok[keep], rows[keep]
            if split:
                n = _leading_masked(mask, P) if len(rows) else 0
                for layer in cache.layers:
                    layer.select(keep, drop_front=n)
                mask = torch.cat([mask[:, :P], mask[:, P + n :]], dim=1)
            else:
                cache.batch_select_indices(keep)
        if len(rows):
            one = torch.ones(len(rows), 1, dtype=mask.dtype, device=device)
            hidden, cache, mask = forward_hidden(model, tok.unsqueeze(-1), one, prefix_kv, cache=cache, past_mask=mask, pos=pos)
            pos = pos + 1
            logits = lm_head(hidden[:, -1, :])
        free = s.batch_size - len(rows)
        if queue and (free >= refill or len(rows) == 0):
            if len(rows) == 0:
                cache = mask = pos = logits = rows = None
            admit(min(free, len(queue)))
    return outs


def _shift(cache: Any, P: int, n: int, split: bool) -> None:
    """Insert ``n`` masked positions between the prefix and every row's own positions."""
    if split:
        for layer in cache.layers:
            layer.shift(n)
    else:
        _pad_kv_middle(cache, P, n)


def _cut(ids: list[int], stop_ids: frozenset[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stop_ids:
            return ids[: i + 1]
    return ids


@torch.inference_mode()
def generate_beam(model: Any, prefix_embeds, prompts, s: DecodeSettings, stop_ids, pad_id,
                  blank_ids: frozenset[int] = frozenset()) -> list[list[int]]:
    """Beam search through transformers' ``generate`` on the full embeddings (prefix + prompt)."""
    from transformers import LogitsProcessor, LogitsProcessorList

    device = model.get_input_embeddings().weight.device
    first = _first_block(stop_ids, blank_ids, device)

    class FirstVisible(LogitsProcessor):
        """Blocks stops and blank tokens at the first generated position (its first call)."""

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, input_ids, scores):
            self.calls += 1
            return scores.index_fill(-1, first, float("-inf")) if self.calls == 1 else scores

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
            logits_processor=LogitsProcessorList([FirstVisible()] if s.min_new_tokens >= 1 else []),
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
    blank_ids: frozenset[int] = frozenset(),
) -> list[list[int]]:
    """Responses (token ids, ending with the stop token when one was produced) for all ``prompts``, in order.

    ``blank_ids``: tokens that decode to no visible text (PairFormat.blank_ids); with ``min_new_tokens >= 1``
    none of them (and no stop) can be a response's first token, so no response decodes to nothing.
    """
    if not prompts:
        return []
    if s.strategy == "beam":
        out = generate_beam(model, prefix_embeds, prompts, s, stop_ids, pad_id, blank_ids)
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
    if s.continuous and s.drop_finished:
        return generate_continuous(model, prefix_kv, prompts, order, s, stop_ids, pad_id, gen, progress, blank_ids)
    results: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), s.batch_size):
        idx = order[start : start + s.batch_size]
        outs = generate_batch(model, prefix_kv, [prompts[i] for i in idx], s, stop_ids, pad_id, gen, blank_ids)
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
    blank_ids: frozenset[int] = frozenset(),
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
            if not out:
                logits[sorted(blank_ids)] = float("-inf")
        t = int(logits.argmax(-1))
        out.append(t)
        seq.append(t)
        if t in stop_ids:
            break
    return out

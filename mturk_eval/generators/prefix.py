"""Shared-prefix forward passes: the soft prompt's (or persona text's) key/value cache computed once and
reused by every sequence of a batch, with left padding and padding-aware position ids.

Why our own code rather than PEFT's prompt-tuning forward/generate (see ../shared/docs/model-notes.md):

* PEFT recomputes the 200 virtual tokens for every sequence of every batch. They are the same for all
  sequences and, the model being causal, so are their hidden states: computing them once and broadcasting
  their keys/values to the batch cuts training compute and activation memory roughly by the prefix share
  of the sequence, and lets generation reuse one cache per persona.
* PEFT drops position ids for prompt tuning, so left-padded batches give the pad tokens positions and
  batched outputs differ from unbatched ones. Here a token's position is ``prefix_len + (number of real
  tokens before it)``, whatever the padding.
* PEFT 0.21's prompt-tuning ``generate`` misses the cache keyword of newer transformers releases.

PEFT stays the format of the trained soft prompt (see prompt_tuning.py); these functions only need the
prompt embeddings tensor. Gradients flow through the shared prefix cache, so training uses the same code.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

import torch


@functools.lru_cache(maxsize=None)
def _cache_kwarg_for(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"


def backbone(model: Any) -> Any:
    """The decoder stack of a causal LM (``model.model`` for Llama-like models)."""
    return getattr(model, model.base_model_prefix)


def cache_kwarg(model: Any) -> str:
    """The forward keyword for the KV cache: ``past_key_values`` (transformers <= 5.23) or ``cache``."""
    return _cache_kwarg_for(type(backbone(model)))


def embed_ids(model: Any, ids: list[int] | torch.Tensor) -> torch.Tensor:
    emb = model.get_input_embeddings()
    if not isinstance(ids, torch.Tensor):
        ids = torch.tensor(ids, dtype=torch.long, device=emb.weight.device)
    return emb(ids)


def prefix_embeds(model: Any, soft_prompt: torch.Tensor | None, prefix_ids: list[int]) -> torch.Tensor | None:
    """``[soft prompt ; embeddings of prefix_ids]`` as a (1, P, H) tensor, or None when empty."""
    parts = []
    if soft_prompt is not None:
        parts.append(soft_prompt.to(model.get_input_embeddings().weight.dtype))
    if prefix_ids:
        parts.append(embed_ids(model, prefix_ids))
    if not parts:
        return None
    return torch.cat(parts, dim=0).unsqueeze(0)


def new_cache(model: Any, kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None, batch_size: int = 1):
    """A fresh DynamicCache holding ``kv`` broadcast to ``batch_size`` rows (each batch needs its own:
    the cache grows in place)."""
    from transformers import DynamicCache

    if not kv:
        return DynamicCache(config=model.config)
    data = [(k.expand(batch_size, *k.shape[1:]), v.expand(batch_size, *v.shape[1:])) for k, v in kv]
    return DynamicCache(ddp_cache_data=data, config=model.config)


def compute_prefix_kv(model: Any, embeds: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run the (1, P, H) prefix once and return each layer's (key, value); [] for no prefix."""
    if embeds is None:
        return []
    cache = new_cache(model)
    P = embeds.shape[1]
    pos = torch.arange(P, device=embeds.device).unsqueeze(0)
    mask = torch.ones(1, P, dtype=torch.long, device=embeds.device)
    backbone(model)(
        inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True, **{cache_kwarg(model): cache}
    )
    return [(layer.keys, layer.values) for layer in cache.layers]


def left_pad(seqs: list[list[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and their attention mask, both (B, L)."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, L - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, L - len(s) :] = 1
    return ids.to(device), mask.to(device)


def forward_hidden(
    model: Any,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]],
    cache: Any = None,
    past_mask: torch.Tensor | None = None,
    pos: torch.Tensor | None = None,
    use_cache: bool = True,
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Final hidden states (B, L, H) of left-padded ``input_ids`` after the shared prefix.

    Returns ``(hidden, cache, full_mask)``; pass ``cache``, ``full_mask`` (as ``past_mask``) and explicit
    ``pos`` back in to continue decoding. Without ``past_mask`` the call starts fresh sequences after the
    prefix, in ``cache`` when given (an empty :class:`~mturk_eval.generators.attention.SharedPrefixCache`)
    or a new ``DynamicCache``. ``use_cache=False`` (training without a prefix) keeps no cache.
    """
    B = input_ids.shape[0]
    if past_mask is None:
        if cache is None:
            cache = new_cache(model, prefix_kv, B) if (use_cache or prefix_kv) else None
        P = prefix_kv[0][0].shape[-2] if prefix_kv else 0
        past_mask = torch.ones(B, P, dtype=mask.dtype, device=mask.device)
        if pos is None:
            pos = P + (mask.cumsum(-1) - 1).clamp_min(0)
    full_mask = torch.cat([past_mask, mask], dim=1)
    extra = {"shared_prefix": cache} if getattr(cache, "shares_prefix", False) else {}
    out = backbone(model)(
        input_ids=input_ids,
        attention_mask=full_mask,
        position_ids=pos,
        use_cache=cache is not None,
        **{cache_kwarg(model): cache},
        **extra,
    )
    return out.last_hidden_state, cache, full_mask

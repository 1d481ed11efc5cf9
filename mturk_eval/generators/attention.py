"""An attention function for one-token decoding steps on CPU, registered with transformers'
``AttentionInterface`` under the name ``mturk_eval``.

Why: PyTorch's CPU ``scaled_dot_product_attention`` is slow for a single query token, most of all in
bf16 (measured on this project's 2-core AMD EPYC, SmolLM2-135M shapes: batch 16, 9 query heads over 3
key/value heads, 260 cached positions, 2.6 ms per layer in bf16 and 0.3 ms in fp32, against 0.3 ms for
the two plain matmuls below): at 30 layers that was more than half of a bf16 decoding step. For one
query token the attention is two small batched matmuls, done here with grouped-query heads folded into
the query dimension (no copy of the keys/values per head) and the softmax in fp32.

Every other call (prompts and training, several query tokens; GPUs; dropout; position bias) goes to
transformers' own ``sdpa`` function unchanged, and masks are built exactly as for ``sdpa``. Models that
do not use the attention interface keep their own attention (:func:`use_fast_decoding` leaves them alone).
"""
from __future__ import annotations

from typing import Any

import torch

NAME = "mturk_eval"
_registered = False


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     is_causal=None, **kwargs) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    B, H, q, D = query.shape
    if (q != 1 or query.device.type != "cpu" or dropout or kwargs.get("position_bias") is not None
            or kwargs.get("softcap") is not None or H % key.shape[1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    kvh, T = key.shape[1], key.shape[2]
    scale = scaling if scaling is not None else D ** -0.5
    # heads h = kv * g + j share key/value head kv (transformers' repeat_kv order)
    scores = torch.matmul(query.reshape(B, kvh, H // kvh, D), key.transpose(-1, -2))
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32)) * scale  # softmax in fp32 (or fp64)
    if attention_mask is not None:  # (B or 1, 1, 1, T): bool (True = attend) or additive
        m = attention_mask.reshape(attention_mask.shape[0], 1, 1, T)
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.to(scores.dtype)
    probs = scores.softmax(-1).to(value.dtype)
    out = torch.matmul(probs, value)  # (B, kvh, g, D)
    return out.reshape(B, 1, H, D), None


def register() -> None:
    """Register the function and its mask builder (``sdpa``'s) once per process."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    _registered = True


def use_fast_decoding(model: Any) -> bool:
    """Switch a CPU model that uses ``sdpa`` through the attention interface to :func:`decode_attention`;
    returns whether it did. Outputs equal ``sdpa``'s up to rounding."""
    cfg = getattr(model, "config", None)
    if (cfg is None or getattr(cfg, "_attn_implementation", None) != "sdpa"
            or not getattr(model, "_supports_attention_backend", False)):
        return False
    dev = next(model.parameters()).device
    if dev.type != "cpu":
        return False
    register()
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME

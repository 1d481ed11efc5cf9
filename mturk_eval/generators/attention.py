"""CPU decoding: an attention function for few-token steps, registered with transformers'
``AttentionInterface`` under the name ``mturk_eval``, and a key/value cache that keeps the shared prefix
once instead of once per row.

Why (measured on this project's 2-core AMD EPYC with SmolLM2-135M shapes, docs/benchmarks.md):

* PyTorch's CPU ``scaled_dot_product_attention`` is slow for one query token, most of all in bf16:
  batch 16, 9 query heads over 3 key/value heads, 260 cached positions took 2.6 ms per layer in bf16
  and 0.3 ms in fp32, against 0.3 ms for the two plain matmuls used here (grouped-query heads folded
  into the query dimension, no copy of the keys/values per head, softmax in fp32). At 30 layers that
  was more than half of a bf16 decoding step.
* transformers' ``DynamicCache`` holds every row's copy of the 200-token soft prompt and copies the
  whole cache (``torch.cat``) at every step and whenever a row leaves. :class:`SharedPrefixCache` keeps
  the prefix's keys/values once, as a (1, heads, P, dim) tensor read by every row, and each row's own
  positions (prompt and response, about 20-70) in a buffer preallocated for the longest prompt plus
  ``max_new_tokens``; a step writes one column in place, and a finished row is removed by moving the
  live rows up.

With a :class:`SharedPrefixCache` (passed to the model as the ``shared_prefix`` keyword, which
transformers hands on to the attention function) attention is computed here for any number of query
tokens. Without one, calls with several query tokens (prompts without a shared cache, training), on GPUs,
with dropout or with a position bias go to transformers' own ``sdpa`` function unchanged. Masks are built
as for ``sdpa``. Models that do not use the attention interface keep their own attention
(:func:`use_fast_decoding` leaves them alone) and the ``DynamicCache`` path.
"""
from __future__ import annotations

from typing import Any

import torch

NAME = "mturk_eval"
_registered = False
_split_ok: dict[type, bool] = {}


def _softmax_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)  # fp32 for bf16/fp16, fp64 stays fp64


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     is_causal=None, shared_prefix=None, **kwargs) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    B, H, q, D = query.shape
    kvh = key.shape[1]
    plain = dropout or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None or H % kvh
    if shared_prefix is None and (q != 1 or query.device.type != "cpu" or plain):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if plain:
        raise ValueError("shared-prefix attention: dropout, position bias and softcap are not supported")
    g = H // kvh
    scale = scaling if scaling is not None else D ** -0.5
    qg = query.reshape(B, kvh, g * q, D)  # heads h = kv * g + j share key/value head kv (repeat_kv's order)
    scores = torch.matmul(qg, key.transpose(-1, -2))  # (B, kvh, g*q, S)
    pk = pv = None
    if shared_prefix is not None:
        pk, pv = shared_prefix.layers[module.layer_idx].prefix
    if pk is not None:
        # the prefix's keys are one (kvh, P, D) tensor for all rows: one matmul with the rows folded into M
        qp = qg.transpose(0, 1).reshape(kvh, B * g * q, D)
        pre = torch.matmul(qp, pk[0].transpose(-1, -2)).view(kvh, B, g * q, -1).transpose(0, 1)
        scores = torch.cat([pre, scores], dim=-1)
    T = scores.shape[-1]
    scores = scores.to(_softmax_dtype(scores)) * scale
    scores = scores.view(B, kvh, g, q, T)
    # the dtype's minimum rather than -inf: a padding query with every key masked gets finite values
    low = torch.finfo(scores.dtype).min
    if attention_mask is not None:  # (B or 1, 1, q, T): bool (True = attend) or additive
        m = attention_mask[..., -T:].reshape(attention_mask.shape[0], 1, 1, q, T)
        scores = scores.masked_fill(~m, low) if m.dtype == torch.bool else scores + m.to(scores.dtype)
    elif q > 1:  # sdpa_mask leaves out a purely causal mask
        causal = torch.arange(q, device=query.device)[:, None] + (T - q) >= torch.arange(T, device=query.device)
        scores = scores.masked_fill(~causal, low)
    probs = scores.softmax(-1).to(value.dtype).view(B, kvh, g * q, T)
    if pk is None:
        out = torch.matmul(probs, value)
    else:
        P = pk.shape[-2]
        out = torch.matmul(probs[..., P:], value)
        pp = probs[..., :P].transpose(0, 1).reshape(kvh, B * g * q, P)
        out = out + torch.matmul(pp, pv[0]).view(kvh, B, g * q, D).transpose(0, 1)
    out = out.view(B, kvh, g, q, D).reshape(B, H, q, D).transpose(1, 2)
    return out.contiguous(), None


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
    if getattr(cfg, "_attn_implementation", None) == NAME:
        return True
    if (cfg is None or getattr(cfg, "_attn_implementation", None) != "sdpa"
            or not getattr(model, "_supports_attention_backend", False)):
        return False
    if next(model.parameters()).device.type != "cpu":
        return False
    register()
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME


# --------------------------------------------------------------------------------------------------
# The shared-prefix cache

from transformers.cache_utils import Cache, CacheLayerMixin  # noqa: E402  (imported only where models are used)


class SharedPrefixCache(Cache):
    """One :class:`SharedPrefixLayer` per model layer (see the module docstring)."""

    shares_prefix = True


class SharedPrefixLayer(CacheLayerMixin):
    """One layer: the prefix's (1, kvh, P, D) keys/values, shared, and each row's own positions in a
    preallocated (rows, kvh, capacity, D) buffer of which ``[:n, :, :length]`` is live."""

    is_sliding = False

    def __init__(self, prefix: tuple[torch.Tensor, torch.Tensor] | None, rows: int, capacity: int):
        super().__init__()
        self.prefix = prefix if prefix is not None else (None, None)
        self.P = prefix[0].shape[-2] if prefix is not None else 0
        self.rows, self.capacity = rows, capacity
        self.n = self.length = 0

    def lazy_initialization(self, key_states, value_states) -> None:
        shape = (self.rows, key_states.shape[1], self.capacity, key_states.shape[3])
        # zeros: a masked position contributes probability 0 times its value, which must be finite
        self.kbuf = key_states.new_zeros(shape)
        self.vbuf = value_states.new_zeros(shape[:3] + (value_states.shape[3],))
        self.is_initialized = True

    def _grow(self, rows: int, length: int) -> None:
        if rows <= self.kbuf.shape[0] and length <= self.kbuf.shape[2]:
            return
        r, c = max(rows, self.kbuf.shape[0]), max(length, 2 * self.kbuf.shape[2])
        for name in ("kbuf", "vbuf"):
            old = getattr(self, name)
            new = old.new_zeros((r, old.shape[1], c, old.shape[3]))
            new[: self.n, :, : self.length] = old[: self.n, :, : self.length]
            setattr(self, name, new)

    def _live(self):
        return self.kbuf[: self.n, :, : self.length], self.vbuf[: self.n, :, : self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.n = key_states.shape[0]
        q = key_states.shape[-2]
        self._grow(self.n, self.length + q)
        self.kbuf[: self.n, :, self.length : self.length + q] = key_states
        self.vbuf[: self.n, :, self.length : self.length + q] = value_states
        self.length += q
        self.keys, self.values = self._live()
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.P + self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.P + self.length

    def get_max_length(self) -> int:
        return -1

    def select(self, keep: torch.Tensor | None, drop_front: int = 0) -> None:
        """Keep rows ``keep`` (all when None), moved to the top, and drop their first ``drop_front`` own
        positions (masked for every row)."""
        if not self.is_initialized:
            return
        for name in ("kbuf", "vbuf"):
            buf = getattr(self, name)
            live = buf[: self.n, :, drop_front : self.length]
            live = live[keep] if keep is not None else live.clone()
            buf[: live.shape[0], :, : live.shape[2]] = live
        self.n = int(keep.numel()) if keep is not None else self.n
        self.length -= drop_front

    def shift(self, k: int) -> None:
        """Insert ``k`` positions (to be masked) before every row's own positions."""
        if k <= 0 or not self.is_initialized:
            return
        self._grow(self.n, self.length + k)
        for name in ("kbuf", "vbuf"):
            buf = getattr(self, name)
            buf[: self.n, :, k : self.length + k] = buf[: self.n, :, : self.length].clone()
        self.length += k

    def extend(self, other: "SharedPrefixLayer") -> None:
        """Append ``other``'s rows (same own length; :meth:`shift` the shorter one first)."""
        assert other.length == self.length, (other.length, self.length)
        self._grow(self.n + other.n, self.length)
        self.kbuf[self.n : self.n + other.n, :, : self.length] = other.kbuf[: other.n, :, : other.length]
        self.vbuf[self.n : self.n + other.n, :, : self.length] = other.vbuf[: other.n, :, : other.length]
        self.n += other.n
        self.keys, self.values = self._live()


def shared_prefix_cache(model: Any, prefix_kv: list, rows: int, capacity: int):
    """A :class:`SharedPrefixCache` for ``rows`` rows of up to ``capacity`` own positions after ``prefix_kv``."""
    n_layers = model.config.get_text_config().num_hidden_layers
    layers = [SharedPrefixLayer(prefix_kv[i] if prefix_kv else None, rows, capacity) for i in range(n_layers)]
    return SharedPrefixCache(layers=layers)


def supports_shared_prefix(model: Any) -> bool:
    """Whether ``model`` uses :func:`decode_attention` and passes the ``shared_prefix`` keyword down to it:
    checked once per model class by comparing a two-token step with the ``DynamicCache`` path."""
    if getattr(model.config, "_attn_implementation", None) != NAME:
        return False
    cls = type(model)
    if cls not in _split_ok:
        _split_ok[cls] = _probe(model)
    return _split_ok[cls]


@torch.inference_mode()
def _probe(model: Any) -> bool:
    from mturk_eval.generators.prefix import compute_prefix_kv, forward_hidden

    emb = model.get_input_embeddings()
    ids = torch.tensor([[1, 2], [3, 4]], device=emb.weight.device)
    mask = torch.tensor([[0, 1], [1, 1]], device=emb.weight.device)
    kv = compute_prefix_kv(model, emb(torch.tensor([[5, 6]], device=emb.weight.device)))
    try:
        ref, _, _ = forward_hidden(model, ids, mask, kv)
        got, _, _ = forward_hidden(model, ids, mask, kv, cache=shared_prefix_cache(model, kv, 2, 4))
    except Exception:  # noqa: BLE001  (a model whose forward does not take the keyword: not supported)
        return False
    tol = 1e-2 if ref.dtype in (torch.bfloat16, torch.float16) else 1e-4
    return bool(torch.allclose(ref[mask.bool()].float(), got[mask.bool()].float(), atol=tol, rtol=tol))

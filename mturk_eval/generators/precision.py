"""Numeric precision of training and generation: ``[training] dtype`` and ``[generation] dtype``.

``auto`` picks bfloat16 where the hardware computes it natively and float32 elsewhere:

* CPU: bf16 when ``/proc/cpuinfo`` reports ``avx512_bf16`` or AMX (``amx_bf16``); without them bf16
  matmuls are emulated and slower than fp32 (measured in benchmarks/bench_generation.py).
* CUDA: bf16 when ``torch.cuda.is_bf16_supported()`` (Ampere and later), else fp32.
* anything else (MPS, ...): fp32.

What runs in which precision (docs/generators.md): generation keeps the whole model in the dtype.
Prompt-tuning stores the frozen model in the dtype and keeps the soft prompt (what is trained) and Adam's
state in fp32, cast to the dtype in the forward pass. Fine-tuning keeps fp32 master weights and runs the
forward and backward passes under ``torch.autocast`` in the dtype. The loss is always computed and
accumulated in fp32.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``cpuinfo`` (empty where the file is missing)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in CPU_BF16_FLAGS)


def resolve_dtype(name: str, device: Any, flags: frozenset[str] | None = None) -> str:
    """``name`` (one of :data:`DTYPES`) made concrete for ``device``: float32, bfloat16 or float16."""
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {name!r}")
    if name != "auto":
        return name
    import torch

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    if dev.type == "cpu":
        return "bfloat16" if cpu_has_bf16(flags) else "float32"
    return "float32"


def torch_dtype(name: str):
    """The torch dtype of a concrete name (float32, bfloat16, float16)."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def why(name: str, resolved: str, device: Any) -> str:
    """A short phrase saying how ``resolved`` was chosen, for the line ``generate`` prints."""
    if name != "auto":
        return f"{resolved} (as configured)"
    dev = str(device)
    if dev.startswith("cpu"):
        has = sorted(f for f in CPU_BF16_FLAGS if f in cpu_flags())
        return (f"{resolved} (auto: this CPU reports {', '.join(has)})" if has
                else f"{resolved} (auto: this CPU reports neither {' nor '.join(CPU_BF16_FLAGS)})")
    return f"{resolved} (auto on {dev})"

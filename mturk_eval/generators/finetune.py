"""The paper's fine-tuning baselines: all weights trained with Adam (lr 5e-5 by default).

* ``finetune_none``: the model sees only the dialogue pair.
* ``finetune_added``: the persona sentences are prepended to the utterance (see formatting.py).

The loss is on the response tokens only. The persona text, identical for every pair of a persona, is run
once per batch as a shared prefix (see prefix.py); gradients are the same as when it is repeated in every
sequence. Gradient checkpointing (``training.gradient_checkpointing``) trades compute for activation
memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mturk_eval.generators.trainer import Example, PairLoss, TrainLog, train_loop


def train_finetune(
    loaded: Any,
    examples: list[Example],
    tcfg: Any,
    seed: int,
    prefix_ids: list[int] | None = None,
    desc: str = "fine-tuning",
    accelerator: Any = None,
    progress: bool = True,
    max_steps: int | None = None,
    dtype: str = "float32",
    on_estimate: Any = None,
) -> TrainLog:
    """Fine-tune ``loaded.model`` in place on ``examples``, each preceded by ``prefix_ids`` (BOS, and the
    persona text for ``finetune_added``).

    The prefix is the same for every pair of a persona, so it runs once per batch and its keys/values are
    shared (exactly the same gradients as running it per sequence). Gradient checkpointing cannot keep a
    cache (transformers drops it during the recompute), so with it the prefix is put back into each
    sequence instead.

    ``dtype`` (float32, bfloat16, float16; see precision.py) other than float32 runs the forward and
    backward passes under ``torch.autocast`` while the weights and Adam's state stay fp32 (master
    weights): load the model in fp32 to train it.
    """
    torch.manual_seed(seed)
    model = loaded.model
    model.requires_grad_(True)
    model.train()
    prefix = list(prefix_ids or [])
    if tcfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        examples = [Example(prefix + e.prompt_ids, e.response_ids) for e in examples]
        prefix = []
    from mturk_eval.generators.precision import torch_dtype

    module = PairLoss(model, None, prefix, autocast=None if dtype == "float32" else torch_dtype(dtype))
    log = train_loop(
        module,
        [p for p in model.parameters() if p.requires_grad],
        tcfg.finetune_lr,
        examples,
        pad_id=loaded.tokenizer.pad_token_id,
        batch_size=tcfg.batch_size,
        max_epochs=tcfg.max_epochs,
        patience=tcfg.patience,
        min_delta=tcfg.min_delta,
        seed=seed,
        desc=desc,
        accelerator=accelerator,
        progress=progress,
        max_steps=max_steps,
        on_estimate=on_estimate,
    )
    if tcfg.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    model.eval()
    model.requires_grad_(False)
    return log


def save_finetuned(loaded: Any, directory: str | Path) -> None:
    loaded.model.save_pretrained(str(directory))
    loaded.tokenizer.save_pretrained(str(directory))

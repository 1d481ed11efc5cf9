"""The paper's fine-tuning baselines: all weights trained with Adam (lr 5e-5 by default).

* ``finetune_none``: the model sees only the dialogue pair.
* ``finetune_added``: the persona sentences are prepended to the utterance (see formatting.py).

The whole sequence (including the persona text) goes through the model for every pair, as in standard
fine-tuning; the loss is on the response tokens only. Gradient checkpointing (``training.
gradient_checkpointing``) trades compute for activation memory here.
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
    desc: str = "fine-tuning",
    accelerator: Any = None,
    progress: bool = True,
    max_steps: int | None = None,
) -> TrainLog:
    """Fine-tune ``loaded.model`` in place on ``examples`` (each already holding its persona prefix)."""
    torch.manual_seed(seed)
    model = loaded.model
    model.requires_grad_(True)
    model.train()
    if tcfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module = PairLoss(model, None, [])
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
    )
    if tcfg.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    model.eval()
    model.requires_grad_(False)
    return log


def save_finetuned(loaded: Any, directory: str | Path) -> None:
    loaded.model.save_pretrained(str(directory))
    loaded.tokenizer.save_pretrained(str(directory))

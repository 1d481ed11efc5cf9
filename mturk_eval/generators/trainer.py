"""The training loop shared by prompt-tuning and fine-tuning.

Adam on the given parameters, cross-entropy on the response tokens only, one epoch after another until
the epoch's mean training loss stops improving (``patience`` epochs without a ``min_delta`` gain) or
``max_epochs``. Seeded shuffling. Distribution over several GPUs comes from Accelerate: launching the
same command with ``accelerate launch`` wraps the loss module in DDP and shards the batches; nothing here
is specific to one device.

Why a loop instead of transformers' ``Trainer``: prompt-tuning's loss module computes the soft prompt's
cache once per batch (see prefix.py) and only the response positions' logits, which Trainer's
model-calls-itself contract does not express; Accelerate gives the same distribution with a plain loop.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mturk_eval.generators.prefix import compute_prefix_kv, forward_hidden, left_pad, prefix_embeds


@dataclass
class Example:
    """One training sequence after the shared prefix: ``prompt_ids + response_ids`` (response scored)."""

    prompt_ids: list[int]
    response_ids: list[int]


@dataclass
class TrainLog:
    epoch_losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    epochs: int = 0
    converged: bool = False
    seconds: float = 0.0
    pairs: int = 0

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds else 0.0


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ids, mask, and next-token targets (-100 except where the next token is a response token)."""
    seqs = [e.prompt_ids + e.response_ids for e in examples]
    ids, mask = left_pad(seqs, pad_id, "cpu")
    L = ids.shape[1]
    targets = torch.full_like(ids, -100)
    for i, e in enumerate(examples):
        n = len(seqs[i])
        start = L - n  # first real column
        for j, t in enumerate(e.response_ids):
            col = start + len(e.prompt_ids) + j - 1  # hidden state that predicts response token j
            if col >= start:
                targets[i, col] = t
    return {"input_ids": ids, "attention_mask": mask, "targets": targets}


class PairLoss(nn.Module):
    """Mean cross-entropy of the response tokens of a batch after a shared prefix.

    ``soft_prompt`` (N, H) is prompt-tuning's trainable parameter (None for fine-tuning); ``prefix_ids``
    are token ids shared by every sequence after it (BOS). The prefix is run once per batch and its
    keys/values broadcast to the batch; logits are computed only at the scored positions.

    ``autocast`` (a torch dtype, or None) runs the model's forward under ``torch.autocast``: fine-tuning
    in bf16/fp16 with fp32 master weights. Prompt-tuning instead stores the frozen model in the low
    precision; the fp32 soft prompt is cast to it in :func:`prefix_embeds` (its gradient arrives in fp32).
    """

    def __init__(self, model: Any, soft_prompt: nn.Parameter | None, prefix_ids: list[int], autocast: Any = None):
        super().__init__()
        self.model = model
        self.soft_prompt = soft_prompt
        self.prefix_ids = list(prefix_ids)
        self.autocast = autocast

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        device = self.model.get_input_embeddings().weight.device
        with torch.autocast(device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            pe = prefix_embeds(self.model, self.soft_prompt, self.prefix_ids)
            kv = compute_prefix_kv(self.model, pe)
            hidden, _, _ = forward_hidden(self.model, input_ids, attention_mask, kv, use_cache=False)
            sel = targets != -100
            logits = self.model.get_output_embeddings()(hidden[sel])
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the loss in full precision
        return nn.functional.cross_entropy(logits, targets[sel])


def train_loop(
    module: PairLoss,
    params: list[nn.Parameter],
    lr: float,
    examples: list[Example],
    pad_id: int,
    batch_size: int,
    max_epochs: int,
    patience: int,
    min_delta: float,
    seed: int,
    desc: str = "train",
    accelerator: Any = None,
    progress: bool = True,
    max_steps: int | None = None,
    on_estimate: Any = None,
    estimate_after: int = 3,
) -> TrainLog:
    """Train ``params`` of ``module`` on ``examples``; returns the loss history.

    ``on_estimate(seconds_per_step, steps_per_epoch)`` is called once, after ``estimate_after`` steps
    following the first (warm-up) step, so that the caller can say how long training will take.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    if not examples:
        raise ValueError("no training examples")
    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        examples, batch_size=batch_size, shuffle=True, generator=gen, collate_fn=lambda b: collate(b, pad_id)
    )
    opt = torch.optim.Adam(params, lr=lr)
    wrapped, opt, loader = acc.prepare(module, opt, loader)
    # fp16 gradients underflow without loss scaling (bf16 has fp32's exponent range and needs none)
    low = getattr(module, "autocast", None) or next(module.model.parameters()).dtype
    scaler = torch.amp.GradScaler(acc.device.type) if low == torch.float16 else None
    log = TrainLog()
    best, bad = math.inf, 0
    steps_per_epoch = len(loader)
    total = steps_per_epoch * max_epochs if max_steps is None else min(max_steps, steps_per_epoch * max_epochs)
    bar = tqdm(total=total, desc=desc, unit="batch", disable=None if progress and acc.is_main_process else True, leave=False)
    t0 = time.perf_counter()
    t_warm = None
    steps = 0
    for epoch in range(max_epochs):
        tot, n = 0.0, 0
        for batch in loader:
            loss = wrapped(**batch)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                acc.backward(scaler.scale(loss))
                scaler.step(opt)
                scaler.update()
            else:
                acc.backward(loss)
                opt.step()
            value = float(loss.detach())
            log.step_losses.append(value)
            k = int(batch["input_ids"].shape[0])
            tot += value * k
            n += k
            log.pairs += k
            steps += 1
            if steps == 1:
                t_warm = time.perf_counter()
            elif on_estimate is not None and steps == 1 + estimate_after:
                on_estimate((time.perf_counter() - t_warm) / estimate_after, steps_per_epoch)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{value:.3f}")
            if max_steps is not None and steps >= max_steps:
                break
        epoch_loss = tot / max(n, 1)
        log.epoch_losses.append(epoch_loss)
        log.epochs = epoch + 1
        if max_steps is not None and steps >= max_steps:
            break
        if epoch_loss < best - min_delta:
            best, bad = epoch_loss, 0
        else:
            bad += 1
            if bad >= patience:
                log.converged = True
                break
    log.seconds = time.perf_counter() - t0
    bar.close()
    return log

"""Persona prompt-tuning (the paper's method): a frozen causal LM plus N trainable "persona info" tokens.

The soft prompt lives in a PEFT ``PromptTuningConfig`` model, so its initialisation and its saved format
are PEFT's own: ``prompt_tuning_init="TEXT"`` with the persona sentences repeats their token embeddings
until N are filled (exactly the paper's initialisation), and a trained persona loads with PEFT alone::

    from peft import PeftModel
    model = PeftModel.from_pretrained(base_model, "runs/<exp>/models/<model>/<persona>/prompt_tuning")

Training and sampling use our shared-prefix forward (prefix.py) on the PEFT prompt embedding tensor,
because PEFT's own forward recomputes the prompt for every sequence and ignores position ids.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from mturk_eval.generators.trainer import Example, PairLoss, TrainLog, train_loop


def init_soft_prompt(model: Any, model_path: str, persona: list[str], num_virtual_tokens: int):
    """A PEFT prompt-tuning model around ``model`` with its prompt initialised from the persona text.

    Returns ``(peft_model, prompt_parameter)``; the base model's own weights are left frozen and untouched.
    """
    from peft import PromptTuningConfig, get_peft_model

    cfg = PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=num_virtual_tokens,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text=" ".join(persona),
        tokenizer_name_or_path=model_path,
    )
    with warnings.catch_warnings():
        # PEFT 0.21 calls a transformers helper that transformers 5 marks deprecated; harmless
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, cfg)
    param = peft_model.prompt_encoder["default"].embedding.weight
    return peft_model, param


def train_prompt(
    loaded: Any,
    persona: list[str],
    examples: list[Example],
    prefix_ids: list[int],
    tcfg: Any,
    seed: int,
    desc: str = "prompt-tuning",
    accelerator: Any = None,
    progress: bool = True,
    max_steps: int | None = None,
    on_estimate: Any = None,
) -> tuple[Any, TrainLog]:
    """Train a persona's soft prompt on ``examples``; returns ``(peft_model, log)``.

    The frozen model runs in whatever dtype ``loaded.model`` has (``training.dtype``); the soft prompt
    and Adam's state stay fp32 (PEFT's own choice for the prompt), cast to the model's dtype in the
    forward pass, and the loss is computed in fp32.
    """
    torch.manual_seed(seed)
    model = loaded.model
    model.requires_grad_(False)
    model.eval()  # frozen: no dropout; the soft prompt is the only parameter with a gradient
    peft_model, param = init_soft_prompt(model, loaded.path, persona, tcfg.num_virtual_tokens)
    param.requires_grad_(True)
    module = PairLoss(model, param, prefix_ids)
    log = train_loop(
        module,
        [param],
        tcfg.prompt_lr,
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
    param.requires_grad_(False)
    return peft_model, log


def save_prompt(peft_model: Any, directory: str | Path) -> None:
    """PEFT's own format: adapter_config.json + adapter_model.safetensors."""
    peft_model.save_pretrained(str(directory))


def load_prompt(directory: str | Path, device: Any = None) -> torch.Tensor:
    """The trained prompt embeddings (N, H) from a PEFT adapter directory."""
    from peft.utils import load_peft_weights

    weights = load_peft_weights(str(directory), device=str(device) if device is not None else "cpu")
    return weights["prompt_embeddings"]

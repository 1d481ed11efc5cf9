"""Precision: ``training.dtype`` / ``generation.dtype`` resolution, bf16 decoding against the uncached
reference in bf16, and what bf16 training keeps in fp32."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers.generators import PAIRS, PERSONA, tiny_config_text

from mturk_eval.config import TrainingConfig
from mturk_eval.generators.formatting import PairFormat
from mturk_eval.generators.models import load_model
from mturk_eval.generators.precision import cpu_flags, cpu_has_bf16, resolve_dtype
from mturk_eval.generators.prefix import backbone, prefix_embeds
from mturk_eval.generators.sampling import DecodeSettings, generate, reference_greedy
from mturk_eval.generators.trainer import Example


def test_auto_picks_bf16_only_where_the_cpu_has_it(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n")
    flags = cpu_flags(str(info))
    assert "avx512_bf16" in flags and cpu_has_bf16(flags)
    assert resolve_dtype("auto", "cpu", flags) == "bfloat16"
    assert resolve_dtype("auto", "cpu", frozenset({"amx_bf16", "amx_tile"})) == "bfloat16"
    assert resolve_dtype("auto", "cpu", frozenset({"avx2", "avx512f"})) == "float32"
    assert resolve_dtype("auto", "cpu", cpu_flags(str(tmp_path / "missing"))) == "float32"
    assert resolve_dtype("auto", "mps", flags) == "float32"
    assert resolve_dtype("float16", "cpu", frozenset()) == "float16"
    with pytest.raises(ValueError, match="expected one of auto, float32, bfloat16, float16"):
        resolve_dtype("fp8", "cpu")


def _logits_after(model, pe, seq):
    """Logits of the next token after ``seq`` from the uncached full forward (as reference_greedy)."""
    emb = model.get_input_embeddings()(torch.tensor([seq]))
    emb = torch.cat([pe.to(emb.dtype), emb], dim=1)
    pos = torch.arange(emb.shape[1]).unsqueeze(0)
    h = backbone(model)(inputs_embeds=emb, position_ids=pos, use_cache=False).last_hidden_state
    return model.get_output_embeddings()(h[0, -1, :]).float()


@torch.inference_mode()
def test_bf16_decoding_equals_the_bf16_reference_up_to_ties():
    """In bf16 a batched step rounds differently from an unbatched one, so two near-tied tokens can swap:
    every output must equal the uncached unbatched reference in bf16, or first differ from it at a step
    where the reference's own logits rank the two tokens within bf16 rounding. A cache, position or
    padding bug makes outputs differ where the reference is sure."""
    m = load_model("tiny-random", device="cpu", dtype=torch.bfloat16)
    fmt = PairFormat(m.tokenizer, max_length=64)
    torch.manual_seed(2)
    soft = torch.randn(7, m.model.config.hidden_size) * 0.5
    pe = prefix_embeds(m.model, soft, fmt.prefix_ids(PERSONA))
    prompts = [fmt.encode(u).prompt_ids for u, _ in PAIRS] + [fmt.encode("a much longer utterance with padding .").prompt_ids]
    stops = frozenset({m.tokenizer.eos_token_id})
    ref = [reference_greedy(m.model, pe, p, 8, stops) for p in prompts]
    equal = 0
    for bs in (1, 3, 16):
        out = generate(m.model, pe, prompts, DecodeSettings(max_new_tokens=8, batch_size=bs, dtype="bfloat16"), stops,
                       m.tokenizer.pad_token_id)
        for p, o, r in zip(prompts, out, ref):
            if o == r:
                equal += 1
                continue
            i = next(k for k in range(min(len(o), len(r))) if o[k] != r[k])
            logits = _logits_after(m.model, pe, p + r[:i])
            margin = float(logits[r[i]] - logits[o[i]])
            assert 0 <= margin <= 2 ** -6 * float(logits.abs().max()), (bs, p, o, r, margin)
    assert equal >= 0.6 * 3 * len(prompts), equal


def test_bf16_training_keeps_what_is_trained_and_the_loss_in_fp32():
    from mturk_eval.generators.finetune import train_finetune
    from mturk_eval.generators.prompt_tuning import train_prompt

    m = load_model("tiny-random", device="cpu", dtype=torch.bfloat16)
    fmt = PairFormat(m.tokenizer, max_length=64)
    ex = [Example(**vars(fmt.encode(u, r))) for u, r in PAIRS]
    t = TrainingConfig(num_virtual_tokens=6, prompt_lr=0.1, batch_size=3, max_epochs=3, patience=5)
    pm, log = train_prompt(m, PERSONA, ex, [], t, seed=1, progress=False)
    soft = pm.prompt_encoder["default"].embedding.weight
    assert soft.dtype == torch.float32 and next(m.model.parameters()).dtype == torch.bfloat16
    assert log.epoch_losses[-1] < log.epoch_losses[0]

    ft = load_model("tiny-random", device="cpu", dtype=torch.float32, trainable=True)
    w0 = ft.model.get_input_embeddings().weight.detach().clone()
    log = train_finetune(ft, ex, TrainingConfig(finetune_lr=3e-3, batch_size=3, max_epochs=3, patience=5), seed=1,
                         progress=False, dtype="bfloat16")
    w = ft.model.get_input_embeddings().weight
    assert w.dtype == torch.float32 and not torch.equal(w, w0)  # fp32 master weights, trained
    # updates smaller than bf16's resolution still land in the fp32 weights
    assert bool(((w - w0).abs() < w0.abs() * 2 ** -9).logical_and(w != w0).any())
    assert log.epoch_losses[-1] < log.epoch_losses[0]


def test_generate_records_the_dtype_and_estimates(tmp_path):
    from mturk_eval.cli import main
    from mturk_eval.io import read_jsonl

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config_text(runs_dir=str(tmp_path / "runs")))
    r = CliRunner().invoke(main, ["generate", "--config", str(cfg), "--quiet", "--dtype", "bfloat16", "--max-epochs", "1",
                                  "--method", "prompt_tuning"])
    assert r.exit_code == 0, r.output
    assert "precision: training bfloat16 (as configured), generation bfloat16 (as configured)" in r.output
    assert "tiny-random p1 prompt_tuning: estimate from the first steps: " in r.output
    run = tmp_path / "runs" / "tiny"
    info = json.loads((run / "models" / "tiny-random" / "p1" / "prompt_tuning" / "training.json").read_text())
    assert info["dtype"] == "bfloat16" and info["training"]["dtype"] == "bfloat16" and info["epochs"] == 1
    rows = read_jsonl(run / "responses.jsonl")
    assert rows and all(row["generation"]["dtype"] == "bfloat16" for row in rows)

    r = CliRunner().invoke(main, ["generate", "--config", str(cfg), "--estimate", "--method", "finetune_none"])
    assert r.exit_code == 0, r.output
    assert "tiny-random p1 finetune_none: " in r.output and "per epoch" in r.output
    assert "estimate for the whole run (2 systems" in r.output

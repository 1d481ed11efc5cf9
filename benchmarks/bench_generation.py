"""Generation speed: our batched sampler against PEFT's own prompt-tuning ``generate`` (same soft prompt,
same prompts, greedy), at batch sizes 1 and 16, on CPU with the default model, plus an ablation of each
speed-up. Prints responses/second and ratios against PEFT measured in the same run.

    .venv/bin/python benchmarks/bench_generation.py [--prompts 64] [--new-tokens 32] [--adapter DIR]

The soft prompt is a trained PEFT adapter (``--adapter``; default: the demo's p1 prompt if present),
else the persona-text initialisation. Correctness: PEFT's batch-1 outputs must equal ours (PEFT's batched
outputs are shifted by its padding positions, so they are only compared, not required to match).
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mturk_eval.generators.formatting import PairFormat  # noqa: E402
from mturk_eval.generators.models import load_model  # noqa: E402
from mturk_eval.generators.prefix import backbone, prefix_embeds  # noqa: E402
from mturk_eval.generators.prompt_tuning import init_soft_prompt, load_prompt  # noqa: E402
from mturk_eval.generators.sampling import DecodeSettings, generate, reference_greedy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PERSONA = ["i work night shifts as a nurse.", "i collect old comic books.", "i am training for my first marathon.",
           "i have two cats named salt and pepper.", "i can not stand spicy food."]


def utterances(n: int) -> list[str]:
    """``n`` utterances from the shipped sample data (persona and general pairs), cycled."""
    out = []
    for name in ("personas.jsonl", "general.jsonl"):
        for line in (REPO / "mturk_eval" / "data" / "sample" / name).read_text().splitlines():
            out.append(json.loads(line)["utterance"])
    out = list(dict.fromkeys(u for u in out if u.strip()))
    return [out[i % len(out)] for i in range(n)]


def fix_peft_cache_keyword(peft_model) -> bool:
    """Make PEFT 0.21's prompt-tuning generate work where transformers renamed ``past_key_values`` to
    ``cache`` (transformers 5.24; model-notes.md); returns whether a fix was needed.

    PEFT looks for the cache under ``past_key_values`` in what the base model's
    ``prepare_inputs_for_generation`` returns; finding none, it re-inserts the virtual tokens at every
    step. Renaming the returned key lets PEFT see the cache; the model's forward still accepts the old
    name (a deprecated alias for ``cache``).
    """
    base = peft_model.base_model
    params = inspect.signature(type(backbone(base)).forward).parameters
    if "cache" not in params or "past_key_values" in params:
        return False
    orig = base.prepare_inputs_for_generation

    @functools.wraps(orig)
    def prepare(*args, **kwargs):
        out = orig(*args, **kwargs)
        if "cache" in out and "past_key_values" not in out:
            out["past_key_values"] = out.pop("cache")
        return out

    peft_model.base_model_prepare_inputs_for_generation = prepare
    return True


def peft_generate(pm, tok, prompts, batch_size, new_tokens, stops):
    outs = []
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i : i + batch_size]
        L = max(len(p) for p in batch)
        ids = torch.tensor([[tok.pad_token_id] * (L - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in batch])
        with torch.inference_mode():
            g = pm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                            eos_token_id=sorted(stops), pad_token_id=tok.pad_token_id)
        for row in g[:, L:].tolist():
            cut = []
            for t in row:
                cut.append(t)
                if t in stops:
                    break
            outs.append(cut)
    return outs


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--adapter", default=None, help="PEFT prompt-tuning adapter directory")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the batch-16 pair (median)")
    ap.add_argument("--skip-peft-batch1", action="store_true", help="skip the slowest baseline")
    args = ap.parse_args()

    m = load_model(args.model, device="cpu")
    fmt = PairFormat(m.tokenizer)
    stops = fmt.stop_ids
    adapter = args.adapter or REPO / "runs" / "demo" / "models" / m.slug / "p1" / "prompt_tuning"
    pm, param = init_soft_prompt(m.model, m.path, PERSONA, 200)
    source = "persona-text initialisation (untrained)"
    if Path(adapter).is_dir() and (Path(adapter) / "adapter_config.json").is_file():
        w = load_prompt(adapter)
        if w.shape == param.shape:
            with torch.no_grad():
                param.copy_(w)
            source = f"trained adapter {adapter}"
    fixed = fix_peft_cache_keyword(pm)
    soft = param.detach()
    prompts = [fmt.encode(u).prompt_ids for u in utterances(args.prompts)]
    pe = prefix_embeds(m.model, soft, fmt.prefix_ids(None))
    n = len(prompts)
    import transformers, peft  # noqa: E401

    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}, peft {peft.__version__}")
    print(f"model {args.model}, {n} prompts (mean {sum(map(len, prompts)) / n:.1f} tokens), {args.new_tokens} new tokens, "
          f"200 virtual tokens from {source}; PEFT cache-keyword fix needed: {fixed}")

    def ours(bs, **kw):
        s = DecodeSettings(max_new_tokens=args.new_tokens, batch_size=bs, **kw)
        return generate(m.model, pe, prompts, s, stops, m.tokenizer.pad_token_id)

    results = {}
    # warm-up (first-call allocations)
    ours(16)
    # the headline pair, interleaved and repeated (median): the machine is shared, so bursts of other
    # work hit both sides alike
    t_peft, t_ours = [], []
    for _ in range(args.repeats):
        peft16, t = timed(lambda: peft_generate(pm, m.tokenizer, prompts, 16, args.new_tokens, stops))
        t_peft.append(t)
        outs16, t = timed(lambda: ours(16))
        t_ours.append(t)
    results["peft b16"] = statistics.median(t_peft)
    if not args.skip_peft_batch1:
        peft1, t = timed(lambda: peft_generate(pm, m.tokenizer, prompts, 1, args.new_tokens, stops))
        results["peft b1"] = t
    ours1, t = timed(lambda: ours(1))
    results["ours b1"] = t
    abl = [
        ("ours b16: prefix cache only", dict(sort_by_length=False, drop_finished=False, continuous=False)),
        ("ours b16: + length-sorted batches", dict(sort_by_length=True, drop_finished=False, continuous=False)),
        ("ours b16: + finished rows leave", dict(sort_by_length=True, drop_finished=True, continuous=False)),
    ]
    for name, kw in abl:
        _, t = timed(lambda: ours(16, **kw))
        results[name] = t
    results[f"ours b16: + continuous batching (default), median of {args.repeats}"] = statistics.median(t_ours)
    # thread setting: one thread (the other core free) vs the default
    nthreads = torch.get_num_threads()
    if nthreads > 1:
        torch.set_num_threads(1)
        _, t = timed(lambda: ours(16))
        results[f"ours b16, 1 thread (default {nthreads})"] = t
        torch.set_num_threads(nthreads)

    # correctness
    ref = [reference_greedy(m.model, pe, p, args.new_tokens, stops) for p in prompts[:4]]
    print(f"ours b1 == uncached reference (first 4): {ours1[:4] == ref}; ours b16 == ours b1: {outs16 == ours1}")
    if not args.skip_peft_batch1:
        print(f"PEFT b1 == ours b1: {peft1 == ours1} ({sum(a == b for a, b in zip(peft1, ours1))}/{n})")
    print(f"PEFT b16 == ours b1: {sum(a == b for a, b in zip(peft16, ours1))}/{n} equal (PEFT's left padding shifts positions)")
    print()
    print("| run | seconds | responses/s | vs PEFT b16 | vs PEFT b1 |")
    print("|---|---:|---:|---:|---:|")
    for name, t in results.items():
        rps = n / t
        r16 = results["peft b16"] / t
        r1 = f"{results['peft b1'] / t:.2f}x" if "peft b1" in results else "-"
        print(f"| {name} | {t:.1f} | {rps:.2f} | {r16:.2f}x | {r1} |")


if __name__ == "__main__":
    main()

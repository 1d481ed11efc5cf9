"""Training speed and memory: prompt-tuning (ours, shared-prefix forward) against PEFT's own prompt-tuning
forward and both fine-tuning baselines, same model, same pairs, same batch size.

    .venv/bin/python benchmarks/bench_training.py [--batch 8] [--steps 4] [--model smollm2-135m]

Each variant runs in its own process so its peak RSS (``ru_maxrss``) is its own. ``finetune_added`` gets
the persona text repeated to exactly the number of virtual tokens (200), so prompt-tuning and it see
sequences of equal length; it runs the ordinary way (the prefix inside every sequence), and
``finetune_added_shared`` the way ``mturk-eval generate`` trains it (the prefix once per batch). Reports pairs/s over ``--steps`` timed steps after one warm-up step, peak RSS,
and ratios against PEFT and against fine-tuning ``added`` measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = ("peft_prompt_tuning", "prompt_tuning", "finetune_none", "finetune_added", "finetune_added_shared")


def pairs(n: int) -> tuple[list[str], list[tuple[str, str]]]:
    rows = [json.loads(x) for x in (REPO / "mturk_eval" / "data" / "sample" / "personas.jsonl").read_text().splitlines()]
    persona = rows[0]["persona"]
    ps = [(r["utterance"], r["response"]) for r in rows]
    return persona, [ps[i % len(ps)] for i in range(n)]


def run_variant(variant: str, model_name: str, batch: int, steps: int, ntok: int) -> dict:
    import torch

    from mturk_eval.generators.formatting import PairFormat
    from mturk_eval.generators.models import load_model
    from mturk_eval.generators.prompt_tuning import init_soft_prompt
    from mturk_eval.generators.trainer import Example, PairLoss, collate

    torch.manual_seed(0)
    trainable = variant.startswith("finetune")
    m = load_model(model_name, device="cpu", trainable=trainable)
    fmt = PairFormat(m.tokenizer)
    persona, data = pairs(batch * (steps + 1))
    enc = [fmt.encode(u, r) for u, r in data]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shared: list[int] = []
    lead: list[int] = []
    if variant.startswith("finetune_added"):
        ids = fmt.prefix_ids(persona)
        lead = [ids[i % len(ids)] for i in range(ntok)]  # persona text repeated to ntok tokens
        if variant == "finetune_added_shared":  # as `generate` runs it: the prefix once per batch
            shared, lead = lead, []
    exs = [Example(lead + e.prompt_ids, e.response_ids) for e in enc]
    pad = m.tokenizer.pad_token_id
    if variant == "peft_prompt_tuning":
        pm, param = init_soft_prompt(m.model, m.path, persona, ntok)
        params = [param]

        def step_loss(b):
            # PEFT's own forward, right padding (its position ids would be wrong with left padding)
            seqs = [e.prompt_ids + e.response_ids for e in b]
            L = max(map(len, seqs))
            ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
            labels = torch.tensor([[-100] * len(e.prompt_ids) + e.response_ids + [-100] * (L - len(s)) for e, s in zip(b, seqs)])
            return pm(input_ids=ids, attention_mask=mask, labels=labels).loss
    else:
        if variant == "prompt_tuning":
            _, param = init_soft_prompt(m.model, m.path, persona, ntok)
            module, params = PairLoss(m.model, param, []), [param]
        else:
            m.model.train()
            module, params = PairLoss(m.model, None, shared), list(m.model.parameters())

        def step_loss(b):
            return module(**collate(b, pad))

    lr = 5e-5 if trainable else 1e-3
    opt = torch.optim.Adam(params, lr=lr)
    times = []
    for i in range(steps + 1):
        b = exs[i * batch : (i + 1) * batch]
        t = time.perf_counter()
        loss = step_loss(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seq = sum(len(e.prompt_ids) + len(e.response_ids) for e in exs) / len(exs) + (ntok if "prompt" in variant else 0) + len(shared)
    return {"variant": variant, "pairs_per_s": batch * steps / sum(times), "peak_rss_gb": peak / 1024**2,
            "model_rss_gb": base_rss / 1024**2, "mean_seq_tokens": seq, "loss": float(loss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--virtual-tokens", type=int, default=200)
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.model, args.batch, args.steps, args.virtual_tokens)))
        return
    import peft
    import torch
    import transformers

    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}, peft {peft.__version__}")
    print(f"model {args.model}, batch {args.batch}, {args.steps} timed steps after 1 warm-up, {args.virtual_tokens} virtual tokens")
    res = {}
    for v in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--variant", v, "--model", args.model, "--batch", str(args.batch),
             "--steps", str(args.steps), "--virtual-tokens", str(args.virtual_tokens)],
            capture_output=True, text=True, check=True,
        )
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
        r = res[v]
        print(f"  {v}: {r['pairs_per_s']:.2f} pairs/s, peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)
    print()
    print("| method | seq tokens | pairs/s | peak RSS (GB) | pairs/s vs PEFT | peak vs FT added |")
    print("|---|---:|---:|---:|---:|---:|")
    for v, r in res.items():
        print(f"| {v} | {r['mean_seq_tokens']:.0f} | {r['pairs_per_s']:.2f} | {r['peak_rss_gb']:.2f} | "
              f"{r['pairs_per_s'] / res['peft_prompt_tuning']['pairs_per_s']:.2f}x | "
              f"{r['peak_rss_gb'] / res['finetune_added']['peak_rss_gb']:.2f}x |")
    print(f"(model loaded, before training: {res['prompt_tuning']['model_rss_gb']:.2f} GB RSS)")


if __name__ == "__main__":
    main()

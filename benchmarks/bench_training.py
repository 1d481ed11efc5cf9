"""Training speed and memory: prompt-tuning (ours, shared-prefix forward) against PEFT's own prompt-tuning
forward and both fine-tuning baselines, same model, same pairs, same batch size.

    .venv/bin/python benchmarks/bench_training.py [--batch 8] [--steps 4] [--model smollm2-135m]

Each variant runs in its own process so its peak RSS (``ru_maxrss``) is its own. ``finetune_added`` gets
the persona text repeated to exactly the number of virtual tokens (200), so prompt-tuning and it see
sequences of equal length; it runs the ordinary way (the prefix inside every sequence), and
``finetune_added_shared`` the way ``mturk-eval generate`` trains it (the prefix once per batch). Variants with
``:low`` run in the precision ``auto`` picks (bf16 on CPUs with avx512_bf16 or AMX). Reports pairs/s over
``--steps`` timed steps after one warm-up step, peak RSS,
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

# ":low" = in the precision ``auto`` picks for this machine (bf16 where the CPU has it): prompt-tuning with the
# frozen model stored in it (soft prompt fp32), fine-tuning with fp32 master weights under autocast
VARIANTS = ("peft_prompt_tuning", "prompt_tuning", "prompt_tuning:low", "finetune_none", "finetune_none:low",
            "finetune_added", "finetune_added_shared", "finetune_added_shared:low")


def pairs(n: int) -> tuple[list[str], list[tuple[str, str]]]:
    rows = [json.loads(x) for x in (REPO / "mturk_eval" / "data" / "sample" / "personas.jsonl").read_text().splitlines()]
    persona = rows[0]["persona"]
    ps = [(r["utterance"], r["response"]) for r in rows]
    return persona, [ps[i % len(ps)] for i in range(n)]


def run_variant(name: str, model_name: str, batch: int, steps: int, ntok: int, threads: int = 0) -> dict:
    import torch

    from mturk_eval.generators.formatting import PairFormat
    from mturk_eval.generators.models import load_model
    from mturk_eval.generators.precision import resolve_dtype, torch_dtype
    from mturk_eval.generators.prompt_tuning import init_soft_prompt
    from mturk_eval.generators.trainer import Example, PairLoss, collate

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    variant, _, low = name.partition(":")
    dt = resolve_dtype("auto", "cpu") if low else "float32"
    trainable = variant.startswith("finetune")
    # prompt-tuning: the frozen model in the dtype; fine-tuning: fp32 master weights, autocast below
    m = load_model(model_name, device="cpu", trainable=trainable,
                   dtype=torch.float32 if trainable else torch_dtype(dt))
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
            autocast = torch_dtype(dt) if dt != "float32" else None
            module, params = PairLoss(m.model, None, shared, autocast=autocast), list(m.model.parameters())

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
    return {"variant": name, "dtype": dt, "pairs_per_s": batch * steps / sum(times), "peak_rss_gb": peak / 1024**2,
            "model_rss_gb": base_rss / 1024**2, "mean_seq_tokens": seq, "loss": float(loss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--virtual-tokens", type=int, default=200)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs of prompt_tuning and prompt_tuning:low, interleaved (median): the target pair")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own; 1 is steadier on a shared machine)")
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.model, args.batch, args.steps, args.virtual_tokens, args.threads)))
        return
    import statistics

    import peft
    import torch
    import transformers

    from mturk_eval.generators.precision import resolve_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, peft {peft.__version__}; "
          f"low precision here: {resolve_dtype('auto', 'cpu')}")
    print(f"model {args.model}, batch {args.batch}, {args.steps} timed steps after 1 warm-up, {args.virtual_tokens} virtual tokens")
    chosen = [v for v in args.variants.split(",") if v]
    order = []
    pair = [v for v in ("prompt_tuning", "prompt_tuning:low") if v in chosen]
    for _ in range(args.repeats):
        order += pair
    order += [v for v in chosen if v not in pair]
    runs: dict[str, list[dict]] = {}
    for v in order:
        out = subprocess.run(
            [sys.executable, __file__, "--variant", v, "--model", args.model, "--batch", str(args.batch),
             "--steps", str(args.steps), "--virtual-tokens", str(args.virtual_tokens), "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        runs.setdefault(v, []).append(r)
        print(f"  {v} ({r['dtype']}): {r['pairs_per_s']:.2f} pairs/s, peak RSS {r['peak_rss_gb']:.2f} GB "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    res = {v: {**rs[0], "pairs_per_s": statistics.median(r["pairs_per_s"] for r in rs),
               "peak_rss_gb": max(r["peak_rss_gb"] for r in rs), "n": len(rs)} for v, rs in runs.items()}
    base = res.get("peft_prompt_tuning")
    ft_added = res.get("finetune_added")
    print()
    print("| method | dtype | seq tokens | pairs/s | peak RSS (GB) | pairs/s vs PEFT | pairs/s vs fp32 same method | peak vs FT added |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    def ratio(a: float, b: dict | None, key: str) -> str:
        return f"{a / b[key]:.2f}x" if b else "-"

    for v, r in res.items():
        tag = f" (median of {r['n']})" if r["n"] > 1 else ""
        print(f"| {v}{tag} | {r['dtype']} | {r['mean_seq_tokens']:.0f} | {r['pairs_per_s']:.2f} | {r['peak_rss_gb']:.2f} | "
              f"{ratio(r['pairs_per_s'], base, 'pairs_per_s')} | "
              f"{ratio(r['pairs_per_s'], res.get(v.partition(':')[0]), 'pairs_per_s')} | "
              f"{ratio(r['peak_rss_gb'], ft_added, 'peak_rss_gb')} |")
    if "prompt_tuning" in res:
        print(f"(model loaded, before training: {res['prompt_tuning']['model_rss_gb']:.2f} GB RSS)")


if __name__ == "__main__":
    main()
